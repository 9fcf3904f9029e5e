package server

import (
	"context"
	"time"

	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/authlimit"
)

// cleanupLoop removes push receipts past their retention, expired refresh tokens, login
// failure counters and portal sessions, push records a dead process left in push_staging
// and the files no attachment refers to any more, every CleanupInterval and whenever
// attachments were deleted. Every process runs it; the deletes are idempotent, and those of
// the tables that grow with the data (receipts, staged records) are bounded per statement.
func (s *Server) cleanupLoop(ctx context.Context) {
	t := time.NewTicker(s.opts.CleanupInterval)
	defer t.Stop()
	for {
		s.cleanup(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.attachments.SweepRequested():
		}
	}
}

func (s *Server) cleanup(ctx context.Context) {
	cutoff := time.Now().Add(-s.opts.ReceiptTTL)
	for ctx.Err() == nil {
		n, err := s.q.PushReceiptDeleteOlderThan(ctx, dbgen.PushReceiptDeleteOlderThanParams{Cutoff: cutoff, BatchSize: 5000})
		if err != nil {
			s.log.WarnContext(ctx, "could not clean push receipts", "error", err)
			break
		}
		if n < 5000 {
			break
		}
	}
	// No push runs for an hour: its body would have timed out long before.
	staleStaging := time.Now().Add(-time.Hour)
	for ctx.Err() == nil {
		n, err := s.q.PushStagingDeleteOlderThan(ctx, dbgen.PushStagingDeleteOlderThanParams{Cutoff: staleStaging, BatchSize: 5000})
		if err != nil {
			s.log.WarnContext(ctx, "could not clean staged push records", "error", err)
			break
		}
		if n < 5000 {
			break
		}
	}
	if _, err := s.q.RefreshTokenDeleteExpired(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "could not clean refresh tokens", "error", err)
	}
	if _, err := authlimit.DeleteExpired(ctx, s.pool); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "could not clean login failure counters", "error", err)
	}
	if _, err := s.portal.Cleanup(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "could not clean portal sessions", "error", err)
	}
	if err := s.attachments.Sweep(ctx); err != nil && ctx.Err() == nil {
		s.log.WarnContext(ctx, "could not remove unused attachment files", "error", err)
	}
}
