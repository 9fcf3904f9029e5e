package obsync

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// Revisions returns an observation's history (oldest first) and its current state (nil when
// the server never stored one), read from one snapshot.
func (s *Service) Revisions(ctx context.Context, observationID string) ([]dbgen.ObservationRevision, *dbgen.Observation, error) {
	var revs []dbgen.ObservationRevision
	var current *dbgen.Observation
	err := db.InTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		var err error
		if revs, err = q.ObservationRevisionList(ctx, observationID); err != nil {
			return fmt.Errorf("error reading revisions: %w", err)
		}
		o, err := q.ObservationGet(ctx, observationID)
		if errors.Is(err, db.ErrNotFound) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("error reading observation: %w", err)
		}
		current = &o
		return nil
	})
	return revs, current, err
}

// Reset erases every observation, revision, quarantined record, push receipt and
// attachment and starts a new repository generation, in one transaction that holds the
// write lock so no push or attachment upload interleaves. The attachments' files are
// handed to the attachment cleanup (server/attachments), which deletes them after the
// commit.
func (s *Service) Reset(ctx context.Context, by string) (int64, error) {
	var gen int64
	err := db.InTx(ctx, s.pool, writeTx, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		if _, err := q.SyncStateLock(ctx); err != nil {
			return fmt.Errorf("error locking sync state: %w", err)
		}
		for _, del := range []func(context.Context) error{q.ObservationDeleteAll, q.ObservationRevisionDeleteAll,
			q.QuarantinedRecordDeleteAll, q.PushReceiptDeleteAll, q.AttachmentDeleteAll} {
			if err := del(ctx); err != nil {
				return fmt.Errorf("error erasing sync data: %w", err)
			}
		}
		st, err := q.SyncStateReset(ctx, &by)
		gen = st.RepositoryGeneration
		return err
	})
	return gen, err
}
