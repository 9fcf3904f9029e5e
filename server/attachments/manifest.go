package attachments

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// ManifestRequest asks for the attachment operations after a version.
type ManifestRequest struct {
	Since int64
	// Generation is the client's repository generation; nil when it sent none.
	Generation *int64
}

// Operation is the latest operation on one attachment.
type Operation struct {
	ID      string
	Version int64
	// Deleted tells a delete operation from a download one.
	Deleted bool
	// Size and ContentType describe the copy served by default (download operations only).
	Size        int64
	ContentType string
}

// Manifest is one page of attachment operations, read from one snapshot. When HasMore is
// false, CurrentVersion is the server's current version and the client has every operation
// up to it. When HasMore is true, CurrentVersion is the version of the last operation, so a
// client that continues from it misses nothing.
type Manifest struct {
	Operations           []Operation
	CurrentVersion       int64
	RepositoryGeneration int64
	HasMore              bool
}

// Manifest returns the latest operation of each attachment changed after req.Since, in
// version order, at most Options.ManifestPageSize of them.
func (s *Service) Manifest(ctx context.Context, req ManifestRequest) (Manifest, error) {
	limit := s.opts.ManifestPageSize
	var m Manifest
	var rows []dbgen.AttachmentListSinceRow
	err := db.InTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		st, err := q.SyncStateGet(ctx)
		if err != nil {
			return fmt.Errorf("error reading sync state: %w", err)
		}
		if err := checkGeneration(req.Generation, st.RepositoryGeneration); err != nil {
			return err
		}
		m.CurrentVersion, m.RepositoryGeneration = st.CurrentVersion, st.RepositoryGeneration
		rows, err = q.AttachmentListSince(ctx, dbgen.AttachmentListSinceParams{Since: req.Since, MaxRows: int32(limit + 1)})
		if err != nil {
			return fmt.Errorf("error reading attachment operations: %w", err)
		}
		return nil
	})
	if err != nil {
		return Manifest{}, err
	}
	if len(rows) > limit {
		rows = rows[:limit]
		m.HasMore = true
		m.CurrentVersion = rows[limit-1].Version
	}
	m.Operations = make([]Operation, len(rows))
	for i, r := range rows {
		op := Operation{ID: r.AttachmentID, Version: r.Version, Deleted: r.Deleted}
		if !r.Deleted {
			op.Size, op.ContentType = *r.Size, *r.ContentType
		}
		m.Operations[i] = op
	}
	return m, nil
}
