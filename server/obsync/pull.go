package obsync

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// Pull page sizes. A limit above MaxPullLimit is capped, not refused.
const (
	DefaultPullLimit = 50
	MaxPullLimit     = 500
	// MaxPullBytes bounds a page by the size of its records as they were pushed, so that
	// neither the server nor a phone holds a huge page: 500 records of 1 MiB would be half
	// a GiB. A page holds at least one record, so it may exceed the bound by one record.
	MaxPullBytes = 2 << 20
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
	Extra         []byte // the members the contract does not name, as a JSON object
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
// change up to it. When HasMore is true (the limit or MaxPullBytes cut the page short),
// ChangeCutoff is the version of the last record, which is greater than the request's Since.
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
		// The sizes of the next changes decide how many fit the page; one more than the
		// limit tells whether more changes wait.
		sizes, err := s.sizesSince(ctx, q, req, limit+1)
		if err != nil {
			return fmt.Errorf("error reading observation sizes: %w", err)
		}
		n := min(fitting(sizes, MaxPullBytes), limit)
		page.HasMore = len(sizes) > n
		if n == 0 {
			page.Records = []PulledRecord{}
			return nil
		}
		if page.Records, err = s.listSince(ctx, q, req, n); err != nil {
			return fmt.Errorf("error reading observations: %w", err)
		}
		return nil
	})
	if err != nil {
		return PullPage{}, err
	}
	page.ChangeCutoff = page.CurrentVersion
	if page.HasMore {
		page.ChangeCutoff = page.Records[len(page.Records)-1].Version
	}
	return page, nil
}

// fitting returns how many of the records, of these sizes, a page of maxBytes holds: those
// that start within it, and always the first.
func fitting(sizes []int32, maxBytes int) int {
	n, total := 0, 0
	for n < len(sizes) && (n == 0 || total < maxBytes) {
		total += int(sizes[n])
		n++
	}
	return n
}

func (s *Service) sizesSince(ctx context.Context, q *dbgen.Queries, req PullRequest, maxRows int) ([]int32, error) {
	if len(req.FormTypes) == 0 {
		return q.ObservationSizesSince(ctx, dbgen.ObservationSizesSinceParams{Since: req.Since, MaxRows: int32(maxRows)})
	}
	return q.ObservationSizesSinceForTypes(ctx, dbgen.ObservationSizesSinceForTypesParams{Since: req.Since, FormTypes: req.FormTypes, MaxRows: int32(maxRows)})
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
