package obsync

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// Service runs pushes and pulls against the database. Its concurrent pushes are written
// in groups, one transaction per group (see commit.go); the write lock orders the groups
// of every Service on the same database, in this process or another.
type Service struct {
	pool    *pgxpool.Pool
	q       *dbgen.Queries
	policy  Policy
	commits committer
	// lockForWrite takes the write lock and reads what a write decides on. The
	// concurrency proof replaces it to hand out versions outside the lock on purpose, and
	// checks that pulls then miss changes.
	lockForWrite func(ctx context.Context, q *dbgen.Queries, ids, clientIDs, transmissionIDs []string) (writeState, error)
}

// NewService returns a Service resolving conflicts with the given policy.
func NewService(pool *pgxpool.Pool, policy Policy) *Service {
	return &Service{pool: pool, q: dbgen.New(db.Conn(pool)), policy: policy, lockForWrite: lockForWrite}
}

// GenerationMismatchError reports a client whose repository generation is not the
// server's: the repository was reset since the client last synced.
type GenerationMismatchError struct {
	Server int64
	Client int64
}

func (e *GenerationMismatchError) Error() string {
	return "repository generation mismatch"
}

// checkGeneration applies the epoch rule: a client that sent a generation must match the
// server; one that sent none adopts the server's unless unsentIsOne says the caller treats
// a missing value as 1 (a push carrying records, as upstream does).
func checkGeneration(sent *int64, server int64, unsentIsOne bool) error {
	client := int64(1)
	switch {
	case sent != nil:
		client = *sent
	case !unsentIsOne:
		return nil
	}
	if client != server {
		return &GenerationMismatchError{Server: server, Client: client}
	}
	return nil
}
