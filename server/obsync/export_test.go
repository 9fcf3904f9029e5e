package obsync

import (
	"context"

	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// QueueLen returns how many pushes of s wait for a group, so that a test can line pushes
// up in a known order.
func QueueLen(s *Service) int {
	s.commits.mu.Lock()
	defer s.commits.mu.Unlock()
	return len(s.commits.queue)
}

// BreakOrdering makes s do what the write lock exists to prevent: each group takes its
// versions in a transaction of its own, which commits at once, then waits for pause before
// it takes the lock and writes them. A group that took lower versions can then commit
// after one that took higher versions, and a pull in between moves its cursor past
// changes not yet visible. The concurrency proof uses it to show that it notices.
func BreakOrdering(s *Service, pause func()) {
	s.lockForWrite = func(ctx context.Context, q *dbgen.Queries, ids, clientIDs, transmissionIDs []string) (writeState, error) {
		const reserve = maxGroupRecords + MaxPushRecords // more versions than any group of the proof mints
		var base int64
		err := s.pool.QueryRow(ctx, `UPDATE sync_state SET current_version = current_version + $1 WHERE id = 1
			RETURNING current_version - $1`, reserve).Scan(&base)
		if err != nil {
			return writeState{}, err
		}
		pause()
		st, err := lockForWrite(ctx, q, ids, clientIDs, transmissionIDs)
		st.version = base
		return st, err
	}
}
