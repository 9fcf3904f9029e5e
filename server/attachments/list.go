package attachments

import (
	"context"
	"fmt"

	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// Listing limits.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// ListRequest selects a page of stored attachments. Zero values mean "no filter".
type ListRequest struct {
	// Contains keeps the ids that contain it.
	Contains string
	// ContentTypePrefix keeps the content types that start with it, such as "image/".
	ContentTypePrefix string
	// BeforeVersion continues a listing below this version; 0 starts at the newest.
	BeforeVersion int64
	Limit         int
}

// ListPage is one page of a listing, newest upload first.
type ListPage struct {
	Attachments []dbgen.AttachmentListRow
	// NextBeforeVersion reads the next page; 0 when this page is the last.
	NextBeforeVersion int64
}

// List returns one page of the stored attachments matching req. It reads one row beyond
// the page to tell whether another page follows.
func (s *Service) List(ctx context.Context, req ListRequest) (ListPage, error) {
	limit := req.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	p := dbgen.AttachmentListParams{MaxRows: int32(limit + 1)}
	if req.BeforeVersion > 0 {
		p.BeforeVersion = &req.BeforeVersion
	}
	if req.Contains != "" {
		p.Contains = &req.Contains
	}
	if req.ContentTypePrefix != "" {
		p.ContentType = &req.ContentTypePrefix
	}
	rows, err := s.q.AttachmentList(ctx, p)
	if err != nil {
		return ListPage{}, fmt.Errorf("error listing attachments: %w", err)
	}
	page := ListPage{Attachments: rows}
	if len(rows) > limit {
		page.Attachments = rows[:limit]
		page.NextBeforeVersion = rows[limit-1].Version
	}
	return page, nil
}
