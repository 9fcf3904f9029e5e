package obsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// write is the transaction of one push or of a group of pushes. Everything that can
// be done before taking the write lock is done before (the records were validated as they
// arrived, and large pushes staged). With the lock it reads the receipts of the pushes and the
// stored heads of their ids, decides each push in turn (a replay gets its receipt's answer,
// an outdated repository generation an error, the others are planned against the state
// the ones before them left, with versions above theirs), and writes all of it in one
// statement before committing. before, when set, runs first in the transaction.
func (s *Service) write(ctx context.Context, ws []pushWrite, before func(*dbgen.Queries) error) ([]pushOutcome, error) {
	var ids, clientIDs, transmissionIDs []string
	textBytes := 0 // of the pushes held in memory
	for _, w := range ws {
		for _, r := range w.records {
			ids = append(ids, r.id)
		}
		if !w.batch.staged {
			textBytes += len(w.batch.text)
		}
		if w.requestHash != nil {
			clientIDs, transmissionIDs = append(clientIDs, w.req.ClientID), append(transmissionIDs, w.req.TransmissionID)
		}
	}
	var written []*Batch
	// The write lock is held from the second statement to the commit: a PipeTx sends BEGIN
	// with the first and COMMIT with the last, so that it is held for two round trips.
	outs, err := db.InPipeTx(ctx, s.pool, writeTx, func(tx *db.PipeTx) ([]pushOutcome, error) {
		q := dbgen.New(tx)
		if before != nil {
			if err := before(q); err != nil {
				return nil, err
			}
		}
		st, err := s.lockForWrite(ctx, q, ids, clientIDs, transmissionIDs)
		if err != nil {
			return nil, err
		}
		cur, receipts, version := st.heads, st.receipts, st.version
		outs := make([]pushOutcome, len(ws))
		var g groupWrite
		g.params.Text = make([]byte, 0, textBytes)
		for i, w := range ws {
			key := receiptKey{w.req.ClientID, w.req.TransmissionID}
			if w.requestHash != nil {
				if r, ok := receipts[key]; ok {
					outs[i] = r.answer(w.requestHash)
					continue
				}
				if err := checkGeneration(w.req.Generation, st.generation, true); err != nil {
					outs[i].err = err
					continue
				}
			}
			p := s.plan(w.records, w.failed, cur, version)
			version = p.version
			outs[i].res = PushResult{
				CurrentVersion:       p.version,
				RepositoryGeneration: st.generation,
				SuccessCount:         len(w.records),
				FailedRecords:        w.failed,
				Warnings:             inPushOrder(w.warnings, p.warnings),
			}
			var response []byte
			if w.requestHash != nil {
				if response, err = json.Marshal(outs[i].res); err != nil {
					return nil, fmt.Errorf("error encoding push result: %w", err)
				}
				// A later push of the group with the same transmission replays this one.
				receipts[key] = receipt{requestHash: w.requestHash, response: response}
			}
			g.add(w, p, w.requestHash, response, st.stored)
			written = append(written, w.batch)
		}
		if len(written) == 0 {
			return outs, nil
		}
		g.params.CurrentVersion, g.params.ClearStaging = version, true
		tx.CommitWithNext()
		err = q.ObservationWriteGroup(ctx, g.params)
		if errors.Is(err, db.ErrUniqueViolation) {
			return nil, errReceiptRace
		}
		if err != nil {
			return nil, fmt.Errorf("error writing observations: %w", err)
		}
		return outs, nil
	})
	if err != nil {
		return nil, err
	}
	for _, b := range written {
		b.cleared = true
	}
	return outs, nil
}

// groupWrite gathers the parameters of ObservationWriteGroup, push by push.
type groupWrite struct {
	params    dbgen.ObservationWriteGroupParams
	lastWrite map[string]int // id -> its "write" row, to turn into history when a later push replaces it
}

// add appends a push and its plan. stored holds the ids that have a row (read under the
// write lock); nil when that is unknown (outside the lock), and any id may have one.
func (g *groupWrite) add(w pushWrite, p *writePlan, requestHash, response []byte, stored map[string]bool) {
	pp := &g.params
	seq := int32(len(pp.PushSeqs) + 1)
	pp.PushSeqs = append(pp.PushSeqs, seq)
	pp.PushBatchIds = append(pp.PushBatchIds, w.batch.id)
	pp.PushStaged = append(pp.PushStaged, w.batch.staged)
	base := int32(len(pp.Text)) // where the push's text starts in the group's
	if !w.batch.staged {        // else the write reads the records from push_staging
		pp.Text = append(pp.Text, w.batch.text...)
	}
	pp.PushClientIds = append(pp.PushClientIds, w.req.ClientID)
	pp.PushTransmissionIds = append(pp.PushTransmissionIds, w.req.TransmissionID)
	pp.PushPushedBy = append(pp.PushPushedBy, w.req.Username)
	pp.PushRequestHashes = append(pp.PushRequestHashes, requestHash)
	pp.PushResponses = append(pp.PushResponses, string(response))
	if g.lastWrite == nil {
		g.lastWrite = make(map[string]int)
	}
	for _, d := range p.rows {
		if d.Outcome == "write" {
			if j, ok := g.lastWrite[d.id]; ok {
				// An earlier push of the group wrote this id: that state, with its version,
				// is replaced by this one and goes to the history.
				pp.RecOutcome[j], pp.RecStatus[j] = "history", "superseded"
			}
			g.lastWrite[d.id] = len(pp.RecIdx)
		}
		pp.RecPush = append(pp.RecPush, seq)
		pp.RecIdx = append(pp.RecIdx, int32(d.Idx))
		pp.RecObservationID = append(pp.RecObservationID, d.id)
		pp.RecOutcome = append(pp.RecOutcome, d.Outcome)
		pp.RecStatus = append(pp.RecStatus, d.Status)
		pp.RecVersion = append(pp.RecVersion, d.Version)
		pp.RecConflict = append(pp.RecConflict, d.Conflict)
		pp.RecReportedID = append(pp.RecReportedID, d.ObservationID)
		pp.RecCode = append(pp.RecCode, d.Code)
		pp.RecReason = append(pp.RecReason, d.Reason)
		pp.RecStored = append(pp.RecStored, stored == nil || stored[d.id])
		if w.batch.staged {
			g.addValues(dbgen.PushStagingInsertParams{}, span{})
		} else {
			g.addValues(w.batch.chunk[d.Idx], w.batch.spans[d.Idx].shift(base))
		}
	}
}

// addValues appends a record's values to the @rec_* value arrays: those of r, with its text
// at sp in the group's text, or blanks for a record the write reads from push_staging.
func (g *groupWrite) addValues(r dbgen.PushStagingInsertParams, sp span) {
	pp := &g.params
	nulls := int32(0)
	if r.Author == nil {
		nulls |= 1
	}
	if r.DeviceID == nil {
		nulls |= 2
	}
	pp.RecFormType = append(pp.RecFormType, deref(r.FormType))
	pp.RecFormVersion = append(pp.RecFormVersion, deref(r.FormVersion))
	pp.RecAt, pp.RecBytes = append(pp.RecAt, sp.at), append(pp.RecBytes, sp.n)
	pp.RecDataAt, pp.RecDataLen = append(pp.RecDataAt, sp.dataAt), append(pp.RecDataLen, sp.dataLen)
	pp.RecGeolocationAt, pp.RecGeolocationLen = append(pp.RecGeolocationAt, sp.geoAt), append(pp.RecGeolocationLen, sp.geoLen)
	pp.RecExtra = append(pp.RecExtra, r.Extra)
	pp.RecNulls = append(pp.RecNulls, nulls)
	pp.RecAuthor = append(pp.RecAuthor, deref(r.Author))
	pp.RecDeviceID = append(pp.RecDeviceID, deref(r.DeviceID))
	pp.RecTags = append(pp.RecTags, sp.tags)
	pp.RecCreatedAt = append(pp.RecCreatedAt, deref(r.RecordCreatedAt))
	pp.RecCreatedAtText = append(pp.RecCreatedAtText, deref(r.CreatedAtText))
	pp.RecUpdatedAt = append(pp.RecUpdatedAt, deref(r.RecordUpdatedAt))
	pp.RecUpdatedAtText = append(pp.RecUpdatedAtText, deref(r.UpdatedAtText))
	pp.RecDeleted = append(pp.RecDeleted, deref(r.Deleted))
	pp.RecContentHash = append(pp.RecContentHash, r.ContentHash)
}

// deref is *p, or the zero value for nil.
func deref[T any](p *T) T {
	var v T
	if p != nil {
		v = *p
	}
	return v
}

// writePlan is what one push writes.
type writePlan struct {
	rows     []decisionRow
	version  int64 // current_version after the push
	warnings []Warning
}

// decisionRow is the decision on one record.
type decisionRow struct {
	Idx      int
	id       string
	Outcome  string // write, history or quarantine
	Status   string // of a history row: superseded or rejected
	Version  int64  // of a write row; 0 for none
	Conflict bool
	// ObservationID, Code and Reason report a quarantined record.
	ObservationID string
	Code          string
	Reason        string
}

// writeState is what a write decides on, read under the write lock.
type writeState struct {
	version, generation int64                  // the counter
	heads               map[string]*head       // of the stored observations the pushes name
	stored              map[string]bool        // their ids (heads also gets the group's as it is planned)
	receipts            map[receiptKey]receipt // of the pushes, when they were stored before
}

// lockForWrite takes the write lock and reads the state a write decides on, in one round
// trip, or in two when another writer committed while this one waited for the lock
// (SyncStateLockForWrite).
func lockForWrite(ctx context.Context, q *dbgen.Queries, ids, clientIDs, transmissionIDs []string) (writeState, error) {
	for attempt := 0; ; attempt++ {
		rows, err := q.SyncStateLockForWrite(ctx, dbgen.SyncStateLockForWriteParams{
			ObservationIds: ids, ClientIds: clientIDs, TransmissionIds: transmissionIDs})
		if err != nil {
			return writeState{}, fmt.Errorf("error locking sync state: %w", err)
		}
		st := writeState{heads: make(map[string]*head, len(ids)), stored: make(map[string]bool, len(ids)), receipts: make(map[receiptKey]receipt)}
		stale := false
		for _, r := range rows {
			switch r.Kind {
			case "state":
				st.version, st.generation, stale = r.Version, r.RepositoryGeneration, r.Stale
			case "head":
				h := &head{Version: r.Version, UpdatedAtText: r.UpdatedAtText}
				h.UpdatedAt, _ = parseTime("updated_at", r.UpdatedAtText) // stored, so it parsed before
				copy(h.Hash[:], r.ContentHash)
				st.heads[r.ObservationID], st.stored[r.ObservationID] = h, true
			case "receipt":
				st.receipts[receiptKey{r.ClientID, r.TransmissionID}] = receipt{requestHash: r.RequestHash, response: r.Response}
			}
		}
		switch {
		case !stale:
			return st, nil
		case attempt > 0: // the lock is held: nobody else can have written since
			return writeState{}, errors.New("sync state changed under the write lock")
		}
	}
}

// plan decides every record in push order, minting versions above version. A record is
// compared with the state before it: cur's (the stored row, or what an earlier push of
// the same group left), or the winner among earlier records of the same push. Only the
// last winner of each id is written as its state; earlier winners go to the history. The
// failed records are quarantined. cur is left holding the state after the push.
func (s *Service) plan(records []candidate, failed []FailedRecord, cur map[string]*head, version int64) *writePlan {
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
			rows = append(rows, decisionRow{Idx: rec.index, id: rec.id, Outcome: "write", Conflict: conflict})
			cur[rec.id] = &head{UpdatedAt: rec.updatedAt, UpdatedAtText: rec.updatedAtText, Hash: rec.hash}
		case decideReject:
			rows = append(rows, decisionRow{Idx: rec.index, id: rec.id, Outcome: "history", Status: "rejected", Conflict: true})
		}
	}
	for i := range rows {
		if rows[i].Outcome == "write" {
			version++
			rows[i].Version = version
		}
	}
	for id, j := range final {
		cur[id].Version = rows[j].Version
	}
	for _, f := range failed {
		rows = append(rows, decisionRow{Idx: f.Index, Outcome: "quarantine", ObservationID: f.ObservationID, Code: f.Code, Reason: f.Error})
	}
	p.rows, p.version = rows, version
	return p
}

// inPushOrder merges warnings into the order of their records in the push.
func inPushOrder(lists ...[]Warning) []Warning {
	all := slices.SortedStableFunc(slices.Values(slices.Concat(lists...)), func(a, b Warning) int { return a.index - b.index })
	for i := range all {
		all[i].index = 0 // the answer is compared with its stored copy, which has none
	}
	return all
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
