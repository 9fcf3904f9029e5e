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
// versions in a transaction of its own, which commits at once, then waits for pause and
// writes them. A group that took lower versions can then commit after one that took
// higher versions, and a pull in between moves its cursor past changes not yet visible.
// The concurrency proof uses it to show that it notices.
func BreakOrdering(s *Service, pause func()) {
	s.lockState = func(ctx context.Context, _ *dbgen.Queries) (dbgen.SyncStateLockRow, error) {
		// More versions than any group of the proof mints.
		const reserve = maxGroupRecords + MaxPushRecords
		var st dbgen.SyncStateLockRow
		err := s.pool.QueryRow(ctx, `UPDATE sync_state SET current_version = current_version + $1 WHERE id = 1
			RETURNING current_version - $1, repository_generation`, reserve).Scan(&st.CurrentVersion, &st.RepositoryGeneration)
		pause()
		return st, err
	}
}
