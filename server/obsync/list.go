package obsync

import (
	"context"
	"fmt"
	"time"

	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// Listing limits: a page holds no form data, so a few hundred rows stay small.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// ListRequest selects a page of observations to browse. Zero values mean "no filter".
type ListRequest struct {
	FormType       string
	Author         string
	CreatedFrom    *time.Time
	CreatedTo      *time.Time
	IncludeDeleted bool
	ConflictsOnly  bool
	// BeforeVersion continues a listing below this version; 0 starts at the newest.
	BeforeVersion int64
	Limit         int
}

// ListPage is one page of a listing, newest version first.
type ListPage struct {
	Observations []dbgen.ObservationListRow
	// NextBeforeVersion reads the next page; 0 when this page is the last.
	NextBeforeVersion int64
}

// List returns one page of the current states matching req. It reads one row beyond the
// page to tell whether another page follows.
func (s *Service) List(ctx context.Context, req ListRequest) (ListPage, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	p := dbgen.ObservationListParams{
		CreatedFrom: req.CreatedFrom, CreatedTo: req.CreatedTo,
		IncludeDeleted: req.IncludeDeleted, ConflictsOnly: req.ConflictsOnly, MaxRows: int32(limit + 1),
	}
	if req.BeforeVersion > 0 {
		p.BeforeVersion = &req.BeforeVersion
	}
	if req.FormType != "" {
		p.FormType = &req.FormType
	}
	if req.Author != "" {
		p.Author = &req.Author
	}
	rows, err := s.q.ObservationList(ctx, p)
	if err != nil {
		return ListPage{}, fmt.Errorf("error listing observations: %w", err)
	}
	page := ListPage{Observations: rows}
	if len(rows) > limit {
		page.Observations = rows[:limit]
		page.NextBeforeVersion = rows[limit-1].Version
	}
	return page, nil
}
