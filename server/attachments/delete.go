package attachments

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// errNothingDeleted ends a deletion transaction that found no stored attachment.
var errNothingDeleted = errors.New("nothing to delete")

// Delete deletes a stored attachment: it records a delete operation, which reaches every
// device through the manifest, and hands the blobs to the cleanup, which it wakes. It
// returns the operation's version.
func (s *Service) Delete(ctx context.Context, id, by string) (int64, error) {
	if err := CheckID(id); err != nil {
		return 0, err
	}
	// Reading first spares a missing id the counter lock.
	if _, err := s.q.AttachmentGet(ctx, id); err != nil {
		if errors.Is(err, db.ErrNotFound) {
			return 0, ErrNotFound
		}
		return 0, fmt.Errorf("error reading attachment: %w", err)
	}
	var version int64
	err := db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		var err error
		if version, err = takeVersion(ctx, q, nil); err != nil {
			return err
		}
		n, err := q.AttachmentDelete(ctx, dbgen.AttachmentDeleteParams{AttachmentID: id, Version: version, DeletedBy: by})
		if err != nil {
			return fmt.Errorf("error deleting attachment: %w", err)
		}
		if n == 0 {
			return errNothingDeleted // deleted concurrently
		}
		return nil
	})
	if errors.Is(err, errNothingDeleted) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, err
	}
	s.RequestSweep()
	return version, nil
}
