package attachments

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
)

// sweepBatch is how many unclaimed blobs one cleanup transaction deletes.
const sweepBatch = 100

// RequestSweep asks the cleanup to run soon: blobs became due for deletion. It never
// blocks; requests made while one is pending are merged.
func (s *Service) RequestSweep() {
	select {
	case s.sweepRequested <- struct{}{}:
	default:
	}
}

// SweepRequested is signalled by RequestSweep.
func (s *Service) SweepRequested() <-chan struct{} { return s.sweepRequested }

// Sweep deletes the blobs no attachment refers to whose time is up: those of deleted and
// reset attachments, and of uploads that failed, were abandoned or outlived the grace
// period. Several processes may sweep at once; each takes its own rows.
func (s *Service) Sweep(ctx context.Context) error {
	for {
		n, err := s.sweepOnce(ctx)
		if err != nil || n < sweepBatch {
			return err
		}
	}
}

// sweepOnce deletes one batch. The rows stay locked while their blobs are deleted, and go
// only after, so a crash midway leaves rows to retry rather than files nobody knows of.
func (s *Service) sweepOnce(ctx context.Context) (int, error) {
	var n int
	err := db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		keys, err := q.AttachmentUnclaimedBlobListDue(ctx, sweepBatch)
		if err != nil {
			return fmt.Errorf("error listing unclaimed blobs: %w", err)
		}
		for _, k := range keys {
			if err := s.blobs.DeletePrefix(ctx, k); err != nil {
				return fmt.Errorf("error deleting blob %s: %w", k, err)
			}
		}
		if _, err := q.AttachmentUnclaimedBlobDelete(ctx, keys); err != nil {
			return fmt.Errorf("error removing swept blobs: %w", err)
		}
		n = len(keys)
		return nil
	})
	return n, err
}
