package obsync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/opendataensemble/synkronus/db"

	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// Quarantine page sizes. A limit above MaxQuarantineLimit is capped, not refused.
const (
	DefaultQuarantineLimit = 50
	MaxQuarantineLimit     = 200
)

// ErrNotQuarantined reports a quarantine id that names no quarantined record (any more).
var ErrNotQuarantined = errors.New("no quarantined record with this id")

// QuarantineFilter selects quarantined records: those after an id, optionally only those of
// a client, a push, an observation or a reason code.
type QuarantineFilter struct {
	After          int64
	Limit          int
	ClientID       *string
	TransmissionID *string
	ObservationID  *string
	Code           *string
}

// ListQuarantine returns one page of quarantined records, oldest first, and whether more match.
func (s *Service) ListQuarantine(ctx context.Context, f QuarantineFilter) ([]dbgen.QuarantinedRecordListRow, bool, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = DefaultQuarantineLimit
	}
	limit = min(limit, MaxQuarantineLimit)
	rows, err := s.q.QuarantinedRecordList(ctx, dbgen.QuarantinedRecordListParams{
		After: f.After, ClientID: f.ClientID, TransmissionID: f.TransmissionID, ObservationID: f.ObservationID,
		Code: f.Code, MaxRows: int32(limit + 1),
	})
	if err != nil {
		return nil, false, fmt.Errorf("error listing quarantined records: %w", err)
	}
	if len(rows) > limit {
		return rows[:limit], true, nil
	}
	return rows, false, nil
}

// Quarantined returns one quarantined record, its bytes exactly as they were pushed.
func (s *Service) Quarantined(ctx context.Context, id int64) (dbgen.QuarantinedRecord, error) {
	row, err := s.q.QuarantinedRecordGet(ctx, id)
	if errors.Is(err, db.ErrNotFound) {
		return row, ErrNotQuarantined
	}
	if err != nil {
		return row, fmt.Errorf("error reading quarantined record: %w", err)
	}
	return row, nil
}

// DiscardQuarantined removes a quarantined record for good.
func (s *Service) DiscardQuarantined(ctx context.Context, id int64) error {
	_, err := s.q.QuarantinedRecordDelete(ctx, id)
	if errors.Is(err, db.ErrNotFound) {
		return ErrNotQuarantined
	}
	if err != nil {
		return fmt.Errorf("error discarding quarantined record: %w", err)
	}
	return nil
}

// RetryResult is the outcome of a retry that stored its record.
type RetryResult struct {
	ObservationID        string
	CurrentVersion       int64
	RepositoryGeneration int64
	Warnings             []Warning
}

// RetryQuarantined stores a quarantined record, or corrected (a JSON value) in its place
// when it is not nil, through the rules of a push: versions, conflicts and the revision
// history, on behalf of the client and transmission that sent it and recorded as pushed by
// username. In the same transaction the record leaves the quarantine. A record that still
// cannot be stored is answered with its *RecordError, and the quarantine is left as it was.
func (s *Service) RetryQuarantined(ctx context.Context, id int64, corrected json.RawMessage, username string) (RetryResult, error) {
	row, err := s.Quarantined(ctx, id)
	if err != nil {
		return RetryResult{}, err
	}
	raw := row.Raw
	if corrected != nil {
		raw = corrected
	}
	b := s.NewBatch()
	defer func() { _ = b.Close(ctx) }() // should it fail, the cleanup job removes the rows
	if err := b.Add(ctx, raw); err != nil {
		return RetryResult{}, err
	}
	if len(b.failed) > 0 {
		return RetryResult{}, &RecordError{Code: b.failed[0].Code, Message: b.failed[0].Error}
	}
	if err := b.finish(ctx); err != nil {
		return RetryResult{}, err
	}
	w := pushWrite{req: PushRequest{ClientID: row.ClientID, TransmissionID: row.TransmissionID, Username: username},
		batch: b, records: b.records, warnings: b.warnings}
	res, err := s.pushAlone(ctx, w, func(q *dbgen.Queries) error {
		// Taken first: of a retry and a discard of the same record, exactly one goes ahead.
		if _, err := q.QuarantinedRecordDelete(ctx, id); errors.Is(err, db.ErrNotFound) {
			return ErrNotQuarantined
		} else if err != nil {
			return fmt.Errorf("error removing quarantined record: %w", err)
		}
		return nil
	})
	if why, ok := refusal(err); ok {
		return RetryResult{}, why
	}
	if err != nil {
		return RetryResult{}, err
	}
	return RetryResult{ObservationID: b.records[0].id, CurrentVersion: res.CurrentVersion,
		RepositoryGeneration: res.RepositoryGeneration, Warnings: res.Warnings}, nil
}
