package obsync

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

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

// errReceiptRace means a replay of this transmission committed while this push ran.
var errReceiptRace = errors.New("push receipt stored concurrently")

// Push validates and stores a batch of records. Records that cannot be stored are reported
// in FailedRecords and quarantined, the others stored; a replayed transmission returns the
// stored answer and changes nothing.
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
	if res, found, err := s.replay(ctx, req, requestHash); found || err != nil {
		return res, err
	}
	if b.n == 0 && req.Generation == nil {
		// A client probing with an empty push adopts the server's generation.
		st, err := s.q.SyncStateGet(ctx)
		if err != nil {
			return PushResult{}, fmt.Errorf("error reading sync state: %w", err)
		}
		return PushResult{CurrentVersion: st.CurrentVersion, RepositoryGeneration: st.RepositoryGeneration}, nil
	}

	w := pushWrite{req: req, batch: b, records: b.records, failed: b.failed, warnings: b.warnings, requestHash: requestHash}
	res, err := s.pushWithRetries(ctx, w, nil)
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
			res, err = s.pushWithRetries(ctx, w, nil)
		}
	}
	if errors.Is(err, errReceiptRace) {
		res, _, err = s.replay(ctx, req, requestHash)
	}
	return res, err
}

// pushWrite is what one push transaction writes.
type pushWrite struct {
	req      PushRequest
	batch    *Batch
	records  []candidate // the records that can be stored
	failed   []FailedRecord
	warnings []Warning // on records that can be stored
	// requestHash identifies the push for its receipt; nil for an admin's retry of a
	// quarantined record, which stores no receipt and is not checked against the
	// client's repository generation.
	requestHash []byte
}

// pushWithRetries runs the push transaction, again after a deadlock or serialization
// failure (nothing was written then).
func (s *Service) pushWithRetries(ctx context.Context, w pushWrite, before func(*dbgen.Queries) error) (PushResult, error) {
	for attempt := 0; ; attempt++ {
		res, err := s.pushTx(ctx, w, before)
		if !db.IsRetryable(err) || attempt == 2 {
			return res, err
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
// It stages every record first, so that a probe carries none of them.
func (s *Service) isolateRefused(ctx context.Context, w pushWrite) (kept []candidate, refused []FailedRecord, err error) {
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
			p, err := s.plan([]candidate{rec}, nil, nil, math.MinInt64/2)
			if err != nil {
				return err
			}
			params := writeParams(p, w, []byte{0}, []byte("{}"))
			params.ClearStaging = false // the real write still needs them
			_, werr := s.q.WithTx(sp).ObservationWriteBatch(ctx, params)
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
	if !bytes.Equal(row.RequestHash, requestHash) {
		return PushResult{}, true, ErrTransmissionReused
	}
	var res PushResult
	if err := json.Unmarshal(row.Response, &res); err != nil {
		return PushResult{}, true, fmt.Errorf("error decoding push receipt: %w", err)
	}
	return res, true, nil
}

// pushTx is the push transaction. Everything that can be done before taking the write
// lock is done before (the records were validated and staged as they arrived); under the
// lock it reads the stored heads of the pushed ids, decides each record, and writes
// everything in one statement before committing. before, when set, runs first in the
// transaction (an admin's retry removes the record from the quarantine there).
func (s *Service) pushTx(ctx context.Context, w pushWrite, before func(*dbgen.Queries) error) (PushResult, error) {
	ids := make([]string, len(w.records))
	for i, r := range w.records {
		ids[i] = r.id
	}
	var res PushResult
	err := db.InTx(ctx, s.pool, writeTx, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		if before != nil {
			if err := before(q); err != nil {
				return err
			}
		}
		st, err := q.SyncStateLock(ctx)
		if err != nil {
			return fmt.Errorf("error locking sync state: %w", err)
		}
		if w.requestHash != nil {
			if err := checkGeneration(w.req.Generation, st.RepositoryGeneration, true); err != nil {
				return err
			}
		}
		heads, err := q.ObservationHeadsByIDs(ctx, ids)
		if err != nil {
			return fmt.Errorf("error reading stored observations: %w", err)
		}
		p, err := s.plan(w.records, w.failed, heads, st.CurrentVersion)
		if err != nil {
			return err
		}
		res = PushResult{
			CurrentVersion:       p.version,
			RepositoryGeneration: st.RepositoryGeneration,
			SuccessCount:         len(w.records),
			FailedRecords:        w.failed,
			Warnings:             inPushOrder(w.warnings, p.warnings),
		}
		var response []byte
		if w.requestHash != nil {
			if response, err = json.Marshal(res); err != nil {
				return fmt.Errorf("error encoding push result: %w", err)
			}
		}
		stored, err := q.ObservationWriteBatch(ctx, writeParams(p, w, w.requestHash, response))
		if err != nil {
			return fmt.Errorf("error writing observations: %w", err)
		}
		if !stored {
			return errReceiptRace
		}
		return nil
	})
	if err == nil {
		w.batch.cleared = true
	}
	return res, err
}

// inPushOrder merges warnings into the order of their records in the push.
func inPushOrder(lists ...[]Warning) []Warning {
	all := slices.SortedStableFunc(slices.Values(slices.Concat(lists...)), func(a, b Warning) int { return a.index - b.index })
	for i := range all {
		all[i].index = 0 // the answer is compared with its stored copy, which has none
	}
	return all
}

func writeParams(p *writePlan, w pushWrite, requestHash, response []byte) dbgen.ObservationWriteBatchParams {
	idxs, raws, metas, extras := w.batch.inline()
	return dbgen.ObservationWriteBatchParams{
		BatchID:        w.batch.id,
		Idxs:           idxs,
		Raws:           raws,
		Metas:          metas,
		Extras:         extras,
		Decisions:      p.decisions,
		PushedBy:       w.req.Username,
		ClientID:       w.req.ClientID,
		TransmissionID: w.req.TransmissionID,
		CurrentVersion: p.version,
		RequestHash:    requestHash,
		Response:       response,
		ClearStaging:   true,
	}
}

// writePlan is what one push writes.
type writePlan struct {
	decisions []byte // JSON array for ObservationWriteBatch
	version   int64  // current_version after the push
	warnings  []Warning
}

// decisionRow is one element of ObservationWriteBatch's @decisions.
type decisionRow struct {
	Idx           int    `json:"idx"`
	Outcome       string `json:"outcome"` // write, history or quarantine
	Status        string `json:"status,omitempty"`
	Version       int64  `json:"version,omitempty"`
	Conflict      bool   `json:"conflict"`
	ObservationID string `json:"observation_id,omitempty"`
	Code          string `json:"code,omitempty"`
	Reason        string `json:"reason,omitempty"`
}

// plan decides every record in push order. A record is compared with the state before
// it: the stored row, or the winner among earlier records of the same push. Only the last
// winner of each id is written as its state; earlier winners go to the history. The
// failed records are quarantined.
func (s *Service) plan(records []candidate, failed []FailedRecord, heads []dbgen.ObservationHeadsByIDsRow, version int64) (*writePlan, error) {
	cur := make(map[string]*head, len(records))
	for _, h := range heads {
		c := &head{Version: h.Version, UpdatedAtText: h.UpdatedAtText}
		c.UpdatedAt, _ = parseTime("updated_at", h.UpdatedAtText) // stored, so it parsed before
		copy(c.Hash[:], h.ContentHash)
		cur[h.ObservationID] = c
	}
	rows := make([]decisionRow, 0, len(records)+len(failed))
	final := make(map[string]int) // id -> index in rows of its pending write
	p := &writePlan{}
	for i := range records {
		rec := &records[i]
		h := cur[rec.id]
		d, conflict := s.policy.decide(rec, h)
		if conflict {
			p.warnings = append(p.warnings, conflictWarning(rec, h, d))
		}
		switch d {
		case decideWrite:
			if j, ok := final[rec.id]; ok {
				rows[j].Outcome, rows[j].Status = "history", "superseded"
			}
			final[rec.id] = len(rows)
			rows = append(rows, decisionRow{Idx: rec.index, Outcome: "write", Conflict: conflict})
			cur[rec.id] = &head{UpdatedAt: rec.updatedAt, UpdatedAtText: rec.updatedAtText, Hash: rec.hash}
		case decideReject:
			rows = append(rows, decisionRow{Idx: rec.index, Outcome: "history", Status: "rejected", Conflict: true})
		}
	}
	for i := range rows {
		if rows[i].Outcome == "write" {
			version++
			rows[i].Version = version
		}
	}
	for _, f := range failed {
		rows = append(rows, decisionRow{Idx: f.Index, Outcome: "quarantine", ObservationID: f.ObservationID, Code: f.Code, Reason: f.Error})
	}
	var err error
	if p.decisions, err = json.Marshal(rows); err != nil {
		return nil, fmt.Errorf("error encoding push decisions: %w", err)
	}
	p.version = version
	return p, nil
}

func conflictWarning(rec *candidate, h *head, d decision) Warning {
	kept := "the stored copy was kept"
	if d == decideWrite {
		kept = "this copy replaced the stored one"
	}
	stored := "an earlier record of this push"
	if h.Version > 0 {
		stored = "stored version " + strconv.FormatInt(h.Version, 10)
	}
	return Warning{
		ID:   rec.id,
		Code: WarningConflict,
		Message: fmt.Sprintf("observation %s was changed elsewhere: this copy (updated_at %s) conflicts with %s (updated_at %s); %s, and the other revision is kept in the history",
			rec.id, rec.updatedAtText, stored, h.UpdatedAtText, kept),
		index: rec.index,
	}
}
