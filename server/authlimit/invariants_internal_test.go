package authlimit

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// requireConsistent checks that the map and the per-kind lists describe the
// same entries, which eviction relies on.
func requireConsistent(t *testing.T, l *Limiter) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()

	total := 0
	for k, order := range l.byStart {
		total += order.Len()
		for el := order.Front(); el != nil; el = el.Next() {
			e := el.Value.(*entry)
			require.Equal(t, kind(k), e.key.kind)
			require.Same(t, e, l.entries[e.key])
			require.Same(t, el, e.elem)
			require.Positive(t, e.failures)
		}
	}
	require.Equal(t, len(l.entries), total)
	require.LessOrEqual(t, total, l.maxKeys)
}

func TestInvariantsUnderConcurrentUse(t *testing.T) {
	t.Parallel()

	cfg := DefaultConfig()
	cfg.MaxKeys = 50
	l := New(cfg)
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				addr := fmt.Sprintf("addr%d", (g*i)%13)
				account := fmt.Sprintf("User%d", i%17)
				// Goroutines run at different speeds, so times reach the
				// limiter out of order, as they can in production.
				now := start.Add(time.Duration(i*(g+1)) * time.Second)
				l.Failure(addr, account, now)
				l.Check(addr, account, now)
				if i%3 == 0 {
					l.Success(addr, account)
				}
			}
		})
	}
	wg.Wait()
	requireConsistent(t, l)
}
