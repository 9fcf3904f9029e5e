package authlimit_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server/authlimit"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newLimiter returns a limiter on a fresh database.
func newLimiter(t *testing.T, cfg authlimit.Config) *authlimit.Limiter {
	t.Helper()
	return authlimit.New(dbtest.NewDB(t), "login", cfg)
}

// pairOnly enables only the (address, account) limit so a test sees one
// counter at a time.
func pairOnly(failures int, period time.Duration) authlimit.Config {
	return authlimit.Config{PerAddrAccount: authlimit.Window{Failures: failures, Period: period}}
}

func fail(t *testing.T, l *authlimit.Limiter, addr, account string, n int, now time.Time) {
	t.Helper()
	for range n {
		failOnce(t, l, addr, account, now)
	}
}

func failOnce(t *testing.T, l *authlimit.Limiter, addr, account string, now time.Time) {
	t.Helper()
	require.NoError(t, l.Failure(t.Context(), addr, account, now))
}

func requireAllowed(t *testing.T, l *authlimit.Limiter, addr, account string, now time.Time) {
	t.Helper()
	retry, limited, err := l.Check(t.Context(), addr, account, now)
	require.NoError(t, err)
	require.False(t, limited, "%s/%s should be allowed", addr, account)
	require.Zero(t, retry)
}

func requireLimited(t *testing.T, l *authlimit.Limiter, addr, account string, now time.Time, retry time.Duration) {
	t.Helper()
	got, limited, err := l.Check(t.Context(), addr, account, now)
	require.NoError(t, err)
	require.True(t, limited, "%s/%s should be limited", addr, account)
	require.Equal(t, retry, got)
}

func TestDefaultConfig(t *testing.T) {
	t.Parallel()

	require.Equal(t, authlimit.Config{
		PerAddrAccount: authlimit.Window{Failures: 10, Period: 5 * time.Minute},
		PerAccount:     authlimit.Window{Failures: 50, Period: 15 * time.Minute},
		HotAccountPace: 5 * time.Second,
		PerAddr:        authlimit.Window{Failures: 100, Period: 15 * time.Minute},
	}, authlimit.DefaultConfig())
}

func TestPerAddrAccount(t *testing.T) {
	t.Parallel()

	t.Run("TripsAfterNFailuresAndResets", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, authlimit.DefaultConfig())

		fail(t, l, "10.0.0.1", "alice", 9, t0)
		requireAllowed(t, l, "10.0.0.1", "alice", t0)

		failOnce(t, l, "10.0.0.1", "alice", t0)
		requireLimited(t, l, "10.0.0.1", "alice", t0, 5*time.Minute)
		requireLimited(t, l, "10.0.0.1", "alice", t0.Add(4*time.Minute+30*time.Second), 30*time.Second)
		requireLimited(t, l, "10.0.0.1", "alice", t0.Add(5*time.Minute-time.Millisecond), time.Second)

		requireAllowed(t, l, "10.0.0.1", "alice", t0.Add(5*time.Minute))
		failOnce(t, l, "10.0.0.1", "alice", t0.Add(5*time.Minute))
		requireAllowed(t, l, "10.0.0.1", "alice", t0.Add(5*time.Minute))
	})

	t.Run("WindowIsFixedFromFirstFailure", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, pairOnly(3, time.Minute))

		failOnce(t, l, "a", "alice", t0)
		failOnce(t, l, "a", "alice", t0.Add(50*time.Second))
		failOnce(t, l, "a", "alice", t0.Add(59*time.Second))
		requireLimited(t, l, "a", "alice", t0.Add(59*time.Second), time.Second)

		// A failure after the window ends opens a new window with count 1.
		failOnce(t, l, "a", "alice", t0.Add(61*time.Second))
		requireAllowed(t, l, "a", "alice", t0.Add(61*time.Second))
	})

	t.Run("RetryAfterRoundsUp", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, pairOnly(1, 10*time.Second))
		failOnce(t, l, "a", "alice", t0)
		requireLimited(t, l, "a", "alice", t0.Add(1500*time.Millisecond), 9*time.Second)
		requireLimited(t, l, "a", "alice", t0.Add(9999*time.Millisecond), time.Second)
	})

	t.Run("OtherAddressUnaffected", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, authlimit.DefaultConfig())
		fail(t, l, "10.0.0.1", "alice", 10, t0)
		requireLimited(t, l, "10.0.0.1", "alice", t0, 5*time.Minute)

		requireAllowed(t, l, "10.0.0.2", "alice", t0)
		requireAllowed(t, l, "10.0.0.1", "bob", t0)
	})

	t.Run("AccountIsCaseFolded", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, pairOnly(2, time.Minute))
		failOnce(t, l, "a", "Admin", t0)
		failOnce(t, l, "a", "admin", t0)
		requireLimited(t, l, "a", "ADMIN", t0, time.Minute)
	})

	t.Run("SuccessClearsPairCounter", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, authlimit.DefaultConfig())
		fail(t, l, "10.0.0.1", "alice", 10, t0)
		requireLimited(t, l, "10.0.0.1", "alice", t0, 5*time.Minute)

		require.NoError(t, l.Success(t.Context(), "10.0.0.1", "ALICE"))
		requireAllowed(t, l, "10.0.0.1", "alice", t0)
		fail(t, l, "10.0.0.1", "alice", 9, t0)
		requireAllowed(t, l, "10.0.0.1", "alice", t0)
	})
}

func TestPerAccount(t *testing.T) {
	t.Parallel()

	t.Run("TripsAcrossAddresses", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, authlimit.DefaultConfig())
		// 50 failures from 50 addresses: no address and no pair is near its
		// own limit, but the account is.
		for i := range 49 {
			failOnce(t, l, fmt.Sprintf("10.0.0.%d", i), "alice", t0)
		}
		requireAllowed(t, l, "10.0.0.1", "alice", t0)
		failOnce(t, l, "10.0.0.49", "Alice", t0)

		// The addresses that guessed wait for the account's window to end.
		requireLimited(t, l, "10.0.0.1", "alice", t0, 15*time.Minute)
		requireLimited(t, l, "10.0.0.49", "alice", t0.Add(time.Minute), 14*time.Minute)
		requireAllowed(t, l, "10.0.0.1", "bob", t0)
		requireAllowed(t, l, "10.0.0.1", "alice", t0.Add(15*time.Minute))
	})

	t.Run("OwnerIsNotLockedOut", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, authlimit.DefaultConfig())
		// 50 wrong passwords from 5 addresses: every one of them is blocked.
		for i := range 5 {
			fail(t, l, fmt.Sprintf("10.0.0.%d", i), "alice", 10, t0)
		}
		for i := range 5 {
			_, limited, err := l.Check(t.Context(), fmt.Sprintf("10.0.0.%d", i), "alice", t0)
			require.NoError(t, err)
			require.True(t, limited)
		}
		// The owner, at an address with no failures, still gets to try.
		requireAllowed(t, l, "192.0.2.7", "alice", t0.Add(time.Second))
		// Fresh addresses are admitted at a pace, not all at once: a botnet
		// gets one guess per pace, and the owner waits seconds at most.
		requireLimited(t, l, "192.0.2.8", "alice", t0.Add(3*time.Second), 3*time.Second)
		requireAllowed(t, l, "192.0.2.8", "alice", t0.Add(6*time.Second))
		// A fresh address that fails joins the blocked ones.
		failOnce(t, l, "192.0.2.8", "alice", t0.Add(6*time.Second))
		requireLimited(t, l, "192.0.2.8", "alice", t0.Add(20*time.Second), 15*time.Minute-20*time.Second)
		// A refused attempt does not use up the pace.
		requireAllowed(t, l, "192.0.2.9", "alice", t0.Add(20*time.Second))
	})

	t.Run("SuccessKeepsAccountCounter", func(t *testing.T) {
		t.Parallel()
		l := newLimiter(t, authlimit.Config{PerAccount: authlimit.Window{Failures: 3, Period: time.Minute}})
		fail(t, l, "a", "alice", 3, t0)
		require.NoError(t, l.Success(t.Context(), "a", "alice"))
		requireAllowed(t, l, "b", "alice", t0)
		requireLimited(t, l, "c", "alice", t0, 5*time.Second)
	})
}

func TestPerAddr(t *testing.T) {
	t.Parallel()

	l := newLimiter(t, authlimit.DefaultConfig())
	for i := range 100 {
		failOnce(t, l, "10.0.0.1", fmt.Sprintf("user%d", i), t0)
	}
	requireLimited(t, l, "10.0.0.1", "someone-new", t0, 15*time.Minute)
	requireAllowed(t, l, "10.0.0.2", "someone-new", t0)
}

func TestLongestBlockingWindowWins(t *testing.T) {
	t.Parallel()

	l := newLimiter(t, authlimit.Config{
		PerAddrAccount: authlimit.Window{Failures: 2, Period: time.Minute},
		PerAccount:     authlimit.Window{Failures: 2, Period: time.Hour},
	})
	fail(t, l, "a", "alice", 2, t0)
	requireLimited(t, l, "a", "alice", t0, time.Hour)
}

func TestDisabledWindows(t *testing.T) {
	t.Parallel()

	l := newLimiter(t, authlimit.Config{
		PerAddrAccount: authlimit.Window{Failures: 0, Period: time.Minute},
		PerAccount:     authlimit.Window{Failures: 1, Period: 0},
	})
	fail(t, l, "a", "alice", 100, t0)
	requireAllowed(t, l, "a", "alice", t0)
}

func TestLongKeysAreBounded(t *testing.T) {
	t.Parallel()

	l := newLimiter(t, pairOnly(1, time.Minute))
	long := strings.Repeat("x", 10_000)
	failOnce(t, l, "a", long+"1", t0)
	requireLimited(t, l, "a", long+"1", t0, time.Minute)
	requireLimited(t, l, "a", strings.ToUpper(long)+"1", t0, time.Minute)
	requireAllowed(t, l, "a", long+"2", t0)
}

// Server processes of one database share their counters: a client spreading its guesses
// over processes behind a load balancer gets no more than from one.
func TestLimitersOfOneDatabaseCountTogether(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewDB(t)
	a := authlimit.New(pool, "login", pairOnly(4, time.Minute))
	b := authlimit.New(pool, "login", pairOnly(4, time.Minute))
	refresh := authlimit.New(pool, "refresh", pairOnly(4, time.Minute))

	fail(t, a, "10.0.0.1", "alice", 2, t0)
	fail(t, b, "10.0.0.1", "alice", 2, t0)
	requireLimited(t, a, "10.0.0.1", "alice", t0, time.Minute)
	requireLimited(t, b, "10.0.0.1", "alice", t0, time.Minute)
	requireAllowed(t, refresh, "10.0.0.1", "alice", t0) // another scope counts apart

	require.NoError(t, b.Success(t.Context(), "10.0.0.1", "alice"))
	requireAllowed(t, a, "10.0.0.1", "alice", t0)
}

// An account over its limit lets one fresh address through per pace, however many
// processes the fresh addresses reach at once.
func TestHotAccountPaceHoldsAcrossLimiters(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewDB(t)
	cfg := authlimit.Config{PerAccount: authlimit.Window{Failures: 1, Period: time.Hour}, HotAccountPace: time.Minute}
	limiters := []*authlimit.Limiter{authlimit.New(pool, "login", cfg), authlimit.New(pool, "login", cfg), authlimit.New(pool, "login", cfg)}
	fail(t, limiters[0], "10.0.0.1", "alice", 1, t0)

	now := t0.Add(time.Second)
	var admitted sync.WaitGroup
	results := make(chan bool, 30)
	for i := range 30 {
		admitted.Go(func() {
			_, limited, err := limiters[i%3].Check(context.WithoutCancel(t.Context()), fmt.Sprintf("192.0.2.%d", i), "alice", now)
			assert.NoError(t, err) // require may not stop the test from another goroutine
			results <- !limited
		})
	}
	admitted.Wait()
	close(results)
	n := 0
	for ok := range results {
		if ok {
			n++
		}
	}
	require.Equal(t, 1, n, "exactly one fresh address gets through per pace")
}

func TestDeleteExpiredRemovesEndedWindowsOnly(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewDB(t)
	l := authlimit.New(pool, "login", authlimit.Config{
		PerAddrAccount: authlimit.Window{Failures: 1, Period: time.Hour},
		PerAddr:        authlimit.Window{Failures: 1, Period: time.Hour},
	})
	now := time.Now()
	fail(t, l, "ended", "alice", 1, now.Add(-2*time.Hour))
	fail(t, l, "live", "bob", 1, now)
	require.Equal(t, 4, rows(t, pool))

	n, err := authlimit.DeleteExpired(t.Context(), pool)
	require.NoError(t, err)
	require.EqualValues(t, 2, n)
	require.Equal(t, 2, rows(t, pool), "the live counters stay")
	requireLimited(t, l, "live", "bob", now, time.Hour)
	requireAllowed(t, l, "ended", "alice", now)
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()
	l := newLimiter(t, authlimit.DefaultConfig())

	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			ctx := context.WithoutCancel(t.Context())
			for i := range 40 {
				addr := fmt.Sprintf("10.0.%d.%d", g, i%7)
				account := fmt.Sprintf("user%d", i%11)
				now := t0.Add(time.Duration(i) * time.Second)
				_, _, err := l.Check(ctx, addr, account, now)
				assert.NoError(t, err) // require may not stop the test from another goroutine
				assert.NoError(t, l.Failure(ctx, addr, account, now))
				if i%5 == 0 {
					assert.NoError(t, l.Success(ctx, addr, account))
				}
			}
		})
	}
	wg.Wait()

	// The limiter still works after the storm.
	now := t0.Add(time.Hour)
	fail(t, l, "198.51.100.1", "carol", 10, now)
	requireLimited(t, l, "198.51.100.1", "carol", now, 5*time.Minute)
}

func rows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM login_failures").Scan(&n))
	return n
}
