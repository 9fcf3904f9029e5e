package obsync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// MaxPushRecords bounds the records of one push.
const MaxPushRecords = 10000

// writeTx is how every transaction that writes observations runs: READ COMMITTED, stated
// rather than taken from the server's default. The push reads the stored state after
// taking the write lock and must see what the previous holder committed; under REPEATABLE
// READ or SERIALIZABLE its snapshot would predate that and the push would fail.
var writeTx = pgx.TxOptions{IsoLevel: pgx.ReadCommitted, AccessMode: pgx.ReadWrite}

// PushRequest is one push.
type PushRequest struct {
	ClientID       string
	TransmissionID string
	Generation     *int64 // nil when the client sent none
	// Records are the records of a push held in memory, each valid JSON. A push read from
	// a request as it arrives has staged them in Batch instead.
	Records  []json.RawMessage
	Batch    *Batch
	Username string
}

// PushResult is the answer to a push. It is stored as the push receipt and returned again,
// unchanged, when the same transmission is replayed.
type PushResult struct {
	CurrentVersion       int64          `json:"current_version"`
	RepositoryGeneration int64          `json:"repository_generation"`
	SuccessCount         int            `json:"success_count"`
	FailedRecords        []FailedRecord `json:"failed_records,omitempty"`
	Warnings             []Warning      `json:"warnings,omitempty"`
}

// FailedRecord is a record that could not be stored, with the reason; it is quarantined.
type FailedRecord struct {
	Index         int    `json:"index"`
	ObservationID string `json:"observation_id"`
	Code          string `json:"code"`
	Error         string `json:"error"`
}

// Warning is something the client should know about a stored record.
type Warning struct {
	ID      string `json:"id"`
	Code    string `json:"code"`
	Message string `json:"message"`
	index   int    // of the record in its push, to answer in push order
}

// ErrTransmissionReused reports a transmission_id that this client already used for a
// push with different records.
var ErrTransmissionReused = errors.New("transmission_id was already used for a different push")

// errReceiptRace means a push with the same receipt committed while this write ran (its
// receipt collided). The receipts are read under the write lock, which every writer of a
// receipt holds, so it cannot happen; should it all the same, the write runs again and
// then finds the receipt.
var errReceiptRace = errors.New("push receipt stored concurrently")

// Push validates and stores a batch of records. Records that cannot be stored are reported
// in FailedRecords and quarantined, the others stored; a replayed transmission returns the
// stored answer and changes nothing. Concurrent pushes share a transaction (see commit.go).
func (s *Service) Push(ctx context.Context, req PushRequest) (PushResult, error) {
	b := req.Batch
	if b == nil {
		b = s.NewBatch()
		defer func() { _ = b.Close(ctx) }() // should it fail, the cleanup job removes the rows
		for _, raw := range req.Records {
			if err := b.Add(ctx, raw); err != nil {
				return PushResult{}, err
			}
		}
	}
	requestHash := b.hash.Sum(nil)
	if b.n == 0 && req.Generation == nil {
		// A client probing with an empty push adopts the server's generation.
		if res, found, err := s.replay(ctx, req, requestHash); found || err != nil {
			return res, err
		}
		st, err := s.q.SyncStateGet(ctx)
		if err != nil {
			return PushResult{}, fmt.Errorf("error reading sync state: %w", err)
		}
		return PushResult{CurrentVersion: st.CurrentVersion, RepositoryGeneration: st.RepositoryGeneration}, nil
	}

	if err := b.finish(ctx); err != nil {
		return PushResult{}, err
	}
	w := pushWrite{req: req, batch: b, records: b.records, failed: b.failed, warnings: b.warnings, requestHash: requestHash}
	res, err := s.pushGrouped(ctx, w)
	if errors.Is(err, errWriteAlone) {
		res, err = s.pushAlone(ctx, w, nil)
	}
	if refusesRecord(err) {
		// PostgreSQL refused something validation let through. Find the records it refuses,
		// quarantine them and store the others: one bad record must never cost the rest.
		var refused []FailedRecord
		w.records, refused, err = s.isolateRefused(ctx, w)
		if err == nil {
			w.failed = slices.SortedFunc(slices.Values(slices.Concat(w.failed, refused)), func(a, b FailedRecord) int { return a.Index - b.Index })
			w.warnings = slices.DeleteFunc(slices.Clone(w.warnings), func(wn Warning) bool {
				return slices.ContainsFunc(refused, func(f FailedRecord) bool { return f.Index == wn.index })
			})
			res, err = s.pushAlone(ctx, w, nil)
		}
	}
	return res, err
}

// pushWrite is what one push writes.
type pushWrite struct {
	req      PushRequest
	batch    *Batch      // all of its records were added and the batch finished
	records  []candidate // the records that can be stored
	failed   []FailedRecord
	warnings []Warning // on records that can be stored
	// requestHash identifies the push for its receipt; nil for an admin's retry of a
	// quarantined record, which stores no receipt and is not checked against the
	// client's repository generation.
	requestHash []byte
}

// pushOutcome is the answer to one push of a write transaction: its result, or why it was
// not written (ErrTransmissionReused, *GenerationMismatchError). A replay's result is the
// stored answer.
type pushOutcome struct {
	res PushResult
	err error
}

// pushAlone writes one push in a transaction of its own. before, when set, runs first in
// the transaction (an admin's retry removes the record from the quarantine there).
func (s *Service) pushAlone(ctx context.Context, w pushWrite, before func(*dbgen.Queries) error) (PushResult, error) {
	outs, err := s.writeWithRetries(ctx, []pushWrite{w}, before)
	if err != nil {
		return PushResult{}, err
	}
	return outs[0].res, outs[0].err
}

// writeWithRetries runs the write transaction, again after a deadlock, a serialization
// failure or a receipt stored meanwhile (nothing was written then).
func (s *Service) writeWithRetries(ctx context.Context, ws []pushWrite, before func(*dbgen.Queries) error) ([]pushOutcome, error) {
	for attempt := 0; ; attempt++ {
		outs, err := s.write(ctx, ws, before)
		if !(db.IsRetryable(err) || errors.Is(err, errReceiptRace)) || attempt == 2 {
			return outs, err
		}
	}
}

// refusesRecord reports a database error caused by the data of some record: a data
// exception, an integrity constraint (other than a unique key, which the write handles)
// or a program limit.
func refusesRecord(err error) bool {
	_, ok := refusal(err)
	return ok
}

// refusal returns the reason a record was refused when err is refusesRecord's kind.
func refusal(err error) (*RecordError, bool) {
	var dataErr *db.DataError
	if !errors.As(err, &dataErr) {
		return nil, false
	}
	return &RecordError{Code: CodeRefused, Message: "the database refused this record: " + dataErr.Message}, true
}

// errProbed ends the probing transaction, which must never commit.
var errProbed = errors.New("probe finished")

// isolateRefused writes each record on its own inside savepoints of a transaction that is
// rolled back, and splits the records into those PostgreSQL accepts and those it refuses.
func (s *Service) isolateRefused(ctx context.Context, w pushWrite) (kept []candidate, refused []FailedRecord, err error) {
	// A push held in memory is staged first, so that each probe carries only its record
	// rather than the whole push; the write that follows reads the records from there.
	if err := w.batch.flush(ctx); err != nil {
		return nil, nil, err
	}
	err = db.InTx(ctx, s.pool, writeTx, func(tx pgx.Tx) error {
		for _, rec := range w.records {
			sp, err := tx.Begin(ctx)
			if err != nil {
				return fmt.Errorf("error creating savepoint: %w", err)
			}
			// Negative versions never collide with real ones; all of it is rolled back.
			var g groupWrite
			g.add(w, s.plan([]candidate{rec}, nil, map[string]*head{}, math.MinInt64/2), []byte{0}, []byte("{}"), nil)
			g.params.ClearStaging = false // the real write still needs them
			werr := s.q.WithTx(sp).ObservationWriteGroup(ctx, g.params)
			if err := sp.Rollback(ctx); err != nil {
				return fmt.Errorf("error rolling back savepoint: %w", err)
			}
			if werr == nil {
				kept = append(kept, rec)
				continue
			}
			why, ok := refusal(werr)
			if !ok {
				return fmt.Errorf("error probing record %d: %w", rec.index, werr)
			}
			refused = append(refused, FailedRecord{Index: rec.index, ObservationID: rec.id, Code: why.Code, Error: why.Message})
		}
		return errProbed
	})
	if errors.Is(err, errProbed) {
		err = nil
	}
	return kept, refused, err
}

// replay returns the stored answer of an earlier push with the same transmission.
func (s *Service) replay(ctx context.Context, req PushRequest, requestHash []byte) (PushResult, bool, error) {
	row, err := s.q.PushReceiptGet(ctx, dbgen.PushReceiptGetParams{ClientID: req.ClientID, TransmissionID: req.TransmissionID})
	if errors.Is(err, db.ErrNotFound) {
		return PushResult{}, false, nil
	}
	if err != nil {
		return PushResult{}, false, fmt.Errorf("error reading push receipt: %w", err)
	}
	out := receipt{requestHash: row.RequestHash, response: row.Response}.answer(requestHash)
	return out.res, true, out.err
}

// receiptKey names a push for its receipt.
type receiptKey struct{ clientID, transmissionID string }

// receipt is a stored answer: to a push that committed, or to one earlier in the same group.
type receipt struct {
	requestHash []byte
	response    []byte // the PushResult as JSON
}

// answer is the receipt's answer to a push with this request hash: the stored result when
// it is a replay of the same push, ErrTransmissionReused when the records differ.
func (r receipt) answer(requestHash []byte) pushOutcome {
	if !bytes.Equal(r.requestHash, requestHash) {
		return pushOutcome{err: ErrTransmissionReused}
	}
	var res PushResult
	if err := json.Unmarshal(r.response, &res); err != nil {
		return pushOutcome{err: fmt.Errorf("error decoding push receipt: %w", err)}
	}
	return pushOutcome{res: res}
}
