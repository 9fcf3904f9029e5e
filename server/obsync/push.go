package obsync

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// MaxPushRecords bounds the records of one push.
const MaxPushRecords = 10000

// WarningConflict is the warning code of a write that was based on an out-of-date copy.
const WarningConflict = "CONFLICT"

// PushRequest is one push as the handler received it.
type PushRequest struct {
	ClientID       string
	TransmissionID string
	Generation     *int64 // nil when the client sent none
	// Records are the pushed records, each valid JSON (decoding the request body checks
	// that once for the whole body; the records are not scanned for validity again).
	Records  []json.RawMessage
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

// FailedRecord is a record that was refused, with the reason.
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
}

// ErrTransmissionReused reports a transmission_id that this client already used for a
// push with different records.
var ErrTransmissionReused = errors.New("transmission_id was already used for a different push")

// errReceiptRace means a replay of this transmission committed while this push ran.
var errReceiptRace = errors.New("push receipt stored concurrently")

// Push validates and stores a batch of records. Invalid records are reported in
// FailedRecords and the valid ones stored; a replayed transmission returns the stored
// answer and changes nothing.
func (s *Service) Push(ctx context.Context, req PushRequest) (PushResult, error) {
	requestHash := hashRequest(req.Records)
	if res, found, err := s.replay(ctx, req, requestHash); found || err != nil {
		return res, err
	}
	if len(req.Records) == 0 && req.Generation == nil {
		// A client probing with an empty push adopts the server's generation.
		st, err := s.q.SyncStateGet(ctx)
		if err != nil {
			return PushResult{}, fmt.Errorf("error reading sync state: %w", err)
		}
		return PushResult{CurrentVersion: st.CurrentVersion, RepositoryGeneration: st.RepositoryGeneration}, nil
	}

	records, failed := parseAll(req.Records)
	res, err := s.pushWithRetries(ctx, req, records, failed, requestHash)
	if refusesRecord(err) {
		// PostgreSQL refused something validation let through. Find the records it refuses
		// and store the others: one bad record must never cost the rest of the batch.
		var refused []FailedRecord
		records, refused, err = s.isolateRefused(ctx, req, records)
		if err == nil {
			failed = append(failed, refused...)
			slices.SortFunc(failed, func(a, b FailedRecord) int { return a.Index - b.Index })
			res, err = s.pushWithRetries(ctx, req, records, failed, requestHash)
		}
	}
	if errors.Is(err, errReceiptRace) {
		res, _, err = s.replay(ctx, req, requestHash)
	}
	return res, err
}

// pushWithRetries runs the push transaction, again after a deadlock or serialization
// failure (nothing was written then).
func (s *Service) pushWithRetries(ctx context.Context, req PushRequest, records []Record, failed []FailedRecord, requestHash []byte) (PushResult, error) {
	ids := make([]string, len(records))
	for i, r := range records {
		ids[i] = r.ObservationID
	}
	for attempt := 0; ; attempt++ {
		res, err := s.pushTx(ctx, req, records, failed, ids, requestHash)
		if !db.IsRetryable(err) || attempt == 2 {
			return res, err
		}
	}
}

// refusesRecord reports a database error caused by the data of some record: a data
// exception, an integrity constraint (other than a unique key, which the write handles)
// or a program limit.
func refusesRecord(err error) bool {
	var dataErr *db.DataError
	return errors.As(err, &dataErr)
}

// errProbed ends the probing transaction, which must never commit.
var errProbed = errors.New("probe finished")

// isolateRefused writes each record on its own inside savepoints of a transaction that is
// rolled back, and splits the records into those PostgreSQL accepts and those it refuses.
func (s *Service) isolateRefused(ctx context.Context, req PushRequest, records []Record) (kept []Record, refused []FailedRecord, err error) {
	err = db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		for _, rec := range records {
			sp, err := tx.Begin(ctx)
			if err != nil {
				return fmt.Errorf("error creating savepoint: %w", err)
			}
			// Negative versions never collide with real ones; all of it is rolled back.
			p := s.plan([]Record{rec}, nil, math.MinInt64/2)
			_, werr := s.q.WithTx(sp).ObservationWriteBatch(ctx, writeParams(p, req, []byte{0}, []byte("{}")))
			if err := sp.Rollback(ctx); err != nil {
				return fmt.Errorf("error rolling back savepoint: %w", err)
			}
			var dataErr *db.DataError
			switch {
			case werr == nil:
				kept = append(kept, rec)
			case errors.As(werr, &dataErr):
				refused = append(refused, FailedRecord{Index: rec.Index, ObservationID: rec.ObservationID, Code: CodeRefused,
					Error: "the database refused this record: " + dataErr.Message})
			default:
				return fmt.Errorf("error probing record %d: %w", rec.Index, werr)
			}
		}
		return errProbed
	})
	if errors.Is(err, errProbed) {
		err = nil
	}
	return kept, refused, err
}

// parseAll validates every record: the valid ones are returned in push order, the others
// reported by their index.
func parseAll(raws []json.RawMessage) ([]Record, []FailedRecord) {
	records := make([]Record, 0, len(raws))
	var failed []FailedRecord
	for i, raw := range raws {
		rec, rerr := parseValidJSON(raw)
		if rerr != nil {
			failed = append(failed, FailedRecord{Index: i, ObservationID: PeekID(raw), Code: rerr.Code, Error: rerr.Message})
			continue
		}
		rec.Index = i
		records = append(records, rec)
	}
	return records, failed
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
// lock is done before; under the lock it reads the stored heads of the pushed ids, decides
// each record, and writes everything in one statement before committing.
func (s *Service) pushTx(ctx context.Context, req PushRequest, records []Record, failed []FailedRecord, ids []string, requestHash []byte) (PushResult, error) {
	var res PushResult
	err := db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		st, err := q.SyncStateLock(ctx)
		if err != nil {
			return fmt.Errorf("error locking sync state: %w", err)
		}
		if err := checkGeneration(req.Generation, st.RepositoryGeneration, true); err != nil {
			return err
		}
		heads, err := q.ObservationHeadsByIDs(ctx, ids)
		if err != nil {
			return fmt.Errorf("error reading stored observations: %w", err)
		}
		p := s.plan(records, heads, st.CurrentVersion)
		res = PushResult{
			CurrentVersion:       p.version,
			RepositoryGeneration: st.RepositoryGeneration,
			SuccessCount:         len(records),
			FailedRecords:        failed,
			Warnings:             p.warnings,
		}
		response, err := json.Marshal(res)
		if err != nil {
			return fmt.Errorf("error encoding push result: %w", err)
		}
		stored, err := q.ObservationWriteBatch(ctx, writeParams(p, req, requestHash, response))
		if err != nil {
			return fmt.Errorf("error writing observations: %w", err)
		}
		if !stored {
			return errReceiptRace
		}
		return nil
	})
	return res, err
}

func writeParams(p *writePlan, req PushRequest, requestHash, response []byte) dbgen.ObservationWriteBatchParams {
	return dbgen.ObservationWriteBatchParams{
		Rows:           p.rows.Bytes(),
		Data:           p.data,
		Geolocations:   p.geolocations,
		PushedBy:       req.Username,
		ClientID:       req.ClientID,
		TransmissionID: req.TransmissionID,
		CurrentVersion: p.version,
		RequestHash:    requestHash,
		Response:       response,
	}
}

// writePlan is what one push writes.
type writePlan struct {
	rows         bytes.Buffer // JSON array for ObservationWriteBatch
	data         [][]byte
	geolocations [][]byte
	version      int64 // current_version after the push
	warnings     []Warning
}

// plan decides every record in push order. A record is compared with the state before
// it: the stored row, or the winner among earlier records of the same push. Only the last
// winner of each id is written as its state; earlier winners go to the history.
func (s *Service) plan(records []Record, heads []dbgen.ObservationHeadsByIDsRow, version int64) *writePlan {
	cur := make(map[string]*head, len(records))
	for _, h := range heads {
		c := &head{Version: h.Version, UpdatedAt: h.UpdatedAt}
		copy(c.Hash[:], h.ContentHash)
		cur[h.ObservationID] = c
	}
	type entry struct {
		rec      *Record
		outcome  string
		status   string
		conflict bool
	}
	var entries []entry
	final := make(map[string]int) // id -> index in entries of its pending write
	p := &writePlan{}
	for i := range records {
		rec := &records[i]
		h := cur[rec.ObservationID]
		d, conflict := s.policy.decide(rec, h)
		if conflict {
			p.warnings = append(p.warnings, conflictWarning(rec, h, d))
		}
		switch d {
		case decideWrite:
			if j, ok := final[rec.ObservationID]; ok {
				entries[j].outcome, entries[j].status = "history", "superseded"
			}
			final[rec.ObservationID] = len(entries)
			entries = append(entries, entry{rec: rec, outcome: "write", conflict: conflict})
			cur[rec.ObservationID] = &head{UpdatedAt: rec.UpdatedAt, Hash: rec.Hash}
		case decideReject:
			entries = append(entries, entry{rec: rec, outcome: "history", status: "rejected", conflict: true})
		}
	}
	p.rows.WriteByte('[')
	p.data = make([][]byte, 0, len(entries))
	p.geolocations = make([][]byte, 0, len(entries))
	for i, e := range entries {
		var v int64
		if e.outcome == "write" {
			version++
			v = version
		}
		if i > 0 {
			p.rows.WriteByte(',')
		}
		writeRow(&p.rows, e.outcome, e.status, v, e.conflict, e.rec)
		p.data = append(p.data, e.rec.Data)
		p.geolocations = append(p.geolocations, e.rec.Geolocation)
	}
	p.rows.WriteByte(']')
	p.version = version
	return p
}

func conflictWarning(rec *Record, h *head, d decision) Warning {
	kept := "the stored copy was kept"
	if d == decideWrite {
		kept = "this copy replaced the stored one"
	}
	stored := "an earlier record of this push"
	if h.Version > 0 {
		stored = "stored version " + strconv.FormatInt(h.Version, 10)
	}
	return Warning{
		ID:   rec.ObservationID,
		Code: WarningConflict,
		Message: fmt.Sprintf("observation %s was changed elsewhere: this copy (updated_at %s) conflicts with %s (updated_at %s); %s, and the other revision is kept in the history",
			rec.ObservationID, rec.UpdatedAtText, stored, h.UpdatedAt.UTC().Format(time.RFC3339Nano), kept),
	}
}

// writeRow appends one element of ObservationWriteBatch's @rows. Strings go through
// encoding/json; data and geolocation travel separately.
func writeRow(b *bytes.Buffer, outcome, status string, version int64, conflict bool, r *Record) {
	enc := func(v any) {
		out, _ := json.Marshal(v) // strings, numbers and bools always encode
		b.Write(out)
	}
	fmt.Fprintf(b, `{"outcome":%q,"status":%q,"version":%d,"conflict":%t,"observation_id":`, outcome, status, version, conflict)
	enc(r.ObservationID)
	b.WriteString(`,"form_type":`)
	enc(r.FormType)
	b.WriteString(`,"form_version":`)
	enc(r.FormVersion)
	b.WriteString(`,"author":`)
	enc(r.Author)
	b.WriteString(`,"device_id":`)
	enc(r.DeviceID)
	b.WriteString(`,"tags":`)
	if r.HasTags {
		if r.Tags == nil {
			b.WriteString("[]")
		} else {
			enc(r.Tags)
		}
	} else {
		b.WriteString("null")
	}
	b.WriteString(`,"created_at":`)
	enc(r.CreatedAt.UTC().Format(time.RFC3339Nano))
	b.WriteString(`,"created_at_text":`)
	enc(r.CreatedAtText)
	b.WriteString(`,"updated_at":`)
	enc(r.UpdatedAt.UTC().Format(time.RFC3339Nano))
	b.WriteString(`,"updated_at_text":`)
	enc(r.UpdatedAtText)
	fmt.Fprintf(b, `,"deleted":%t,"content_hash":"%s"}`, r.Deleted, hex.EncodeToString(r.Hash[:]))
}

// hashRequest identifies a push's records, so that a replayed transmission_id can be told
// from a reused one.
func hashRequest(records []json.RawMessage) []byte {
	h := sha256.New()
	var n [8]byte
	for _, r := range records {
		binary.BigEndian.PutUint64(n[:], uint64(len(r)))
		h.Write(n[:])
		h.Write(r)
	}
	return h.Sum(nil)
}
