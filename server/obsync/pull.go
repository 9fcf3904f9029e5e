package obsync

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// Pull page sizes.
const (
	DefaultPullLimit = 50
	MaxPullLimit     = 500
)

// PullRequest asks for the changes after a version.
type PullRequest struct {
	Since      int64
	FormTypes  []string
	Limit      int
	Generation *int64 // nil when the client sent none
}

// PulledRecord is one observation as it goes back to clients.
type PulledRecord struct {
	ObservationID string
	Version       int64
	FormType      string
	FormVersion   string
	Data          []byte
	Geolocation   []byte
	Author        *string
	DeviceID      *string
	Tags          []string
	CreatedAtText string
	UpdatedAtText string
	Deleted       bool
	SyncedAt      time.Time
}

// PullPage is one page of changes. Records, CurrentVersion and the generation come from
// one snapshot. When HasMore is false, ChangeCutoff is CurrentVersion: the client has every
// change up to it. When HasMore is true, ChangeCutoff is the version of the last record,
// which is greater than the request's Since.
type PullPage struct {
	Records              []PulledRecord
	CurrentVersion       int64
	RepositoryGeneration int64
	ChangeCutoff         int64
	HasMore              bool
}

// Pull returns the next page of changes after req.Since, in version order.
func (s *Service) Pull(ctx context.Context, req PullRequest) (PullPage, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultPullLimit
	}
	limit = min(limit, MaxPullLimit)
	var page PullPage
	err := db.InTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		st, err := q.SyncStateGet(ctx)
		if err != nil {
			return fmt.Errorf("error reading sync state: %w", err)
		}
		if err := checkGeneration(req.Generation, st.RepositoryGeneration, false); err != nil {
			return err
		}
		page = PullPage{CurrentVersion: st.CurrentVersion, RepositoryGeneration: st.RepositoryGeneration}
		page.Records, err = s.listSince(ctx, q, req, limit+1)
		if err != nil {
			return fmt.Errorf("error reading observations: %w", err)
		}
		return nil
	})
	if err != nil {
		return PullPage{}, err
	}
	page.ChangeCutoff = page.CurrentVersion
	if len(page.Records) > limit {
		page.Records = page.Records[:limit]
		page.HasMore = true
		page.ChangeCutoff = page.Records[limit-1].Version
	}
	return page, nil
}

func (s *Service) listSince(ctx context.Context, q *dbgen.Queries, req PullRequest, maxRows int) ([]PulledRecord, error) {
	if len(req.FormTypes) == 0 {
		rows, err := q.ObservationListSince(ctx, dbgen.ObservationListSinceParams{Since: req.Since, MaxRows: int32(maxRows)})
		out := make([]PulledRecord, len(rows))
		for i, r := range rows {
			out[i] = PulledRecord(r)
		}
		return out, err
	}
	rows, err := q.ObservationListSinceForTypes(ctx, dbgen.ObservationListSinceForTypesParams{Since: req.Since, FormTypes: req.FormTypes, MaxRows: int32(maxRows)})
	out := make([]PulledRecord, len(rows))
	for i, r := range rows {
		out[i] = PulledRecord(r)
	}
	return out, err
}
