package authlimit_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/authlimit"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// pairOnly enables only the (address, account) limit so a test sees one
// counter at a time.
func pairOnly(failures int, period time.Duration) authlimit.Config {
	return authlimit.Config{PerAddrAccount: authlimit.Window{Failures: failures, Period: period}}
}

func fail(l *authlimit.Limiter, addr, account string, n int, now time.Time) {
	for range n {
		l.Failure(addr, account, now)
	}
}

func requireAllowed(t *testing.T, l *authlimit.Limiter, addr, account string, now time.Time) {
	t.Helper()
	retry, limited := l.Check(addr, account, now)
	require.False(t, limited, "%s/%s should be allowed", addr, account)
	require.Zero(t, retry)
}

func requireLimited(t *testing.T, l *authlimit.Limiter, addr, account string, now time.Time, retry time.Duration) {
	t.Helper()
	got, limited := l.Check(addr, account, now)
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
		MaxKeys:        100_000,
	}, authlimit.DefaultConfig())
}

func TestPerAddrAccount(t *testing.T) {
	t.Parallel()

	t.Run("TripsAfterNFailuresAndResets", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(authlimit.DefaultConfig())

		fail(l, "10.0.0.1", "alice", 9, t0)
		requireAllowed(t, l, "10.0.0.1", "alice", t0)

		l.Failure("10.0.0.1", "alice", t0)
		requireLimited(t, l, "10.0.0.1", "alice", t0, 5*time.Minute)
		requireLimited(t, l, "10.0.0.1", "alice", t0.Add(4*time.Minute+30*time.Second), 30*time.Second)
		requireLimited(t, l, "10.0.0.1", "alice", t0.Add(5*time.Minute-time.Millisecond), time.Second)

		requireAllowed(t, l, "10.0.0.1", "alice", t0.Add(5*time.Minute))
		l.Failure("10.0.0.1", "alice", t0.Add(5*time.Minute))
		requireAllowed(t, l, "10.0.0.1", "alice", t0.Add(5*time.Minute))
	})

	t.Run("WindowIsFixedFromFirstFailure", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(pairOnly(3, time.Minute))

		l.Failure("a", "alice", t0)
		l.Failure("a", "alice", t0.Add(50*time.Second))
		l.Failure("a", "alice", t0.Add(59*time.Second))
		requireLimited(t, l, "a", "alice", t0.Add(59*time.Second), time.Second)

		// A failure after the window ends opens a new window with count 1.
		l.Failure("a", "alice", t0.Add(61*time.Second))
		requireAllowed(t, l, "a", "alice", t0.Add(61*time.Second))
	})

	t.Run("RetryAfterRoundsUp", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(pairOnly(1, 10*time.Second))
		l.Failure("a", "alice", t0)
		requireLimited(t, l, "a", "alice", t0.Add(1500*time.Millisecond), 9*time.Second)
		requireLimited(t, l, "a", "alice", t0.Add(9999*time.Millisecond), time.Second)
	})

	t.Run("OtherAddressUnaffected", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(authlimit.DefaultConfig())
		fail(l, "10.0.0.1", "alice", 10, t0)
		requireLimited(t, l, "10.0.0.1", "alice", t0, 5*time.Minute)

		requireAllowed(t, l, "10.0.0.2", "alice", t0)
		requireAllowed(t, l, "10.0.0.1", "bob", t0)
	})

	t.Run("AccountIsCaseFolded", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(pairOnly(2, time.Minute))
		l.Failure("a", "Admin", t0)
		l.Failure("a", "admin", t0)
		requireLimited(t, l, "a", "ADMIN", t0, time.Minute)
	})

	t.Run("SuccessClearsPairCounter", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(authlimit.DefaultConfig())
		fail(l, "10.0.0.1", "alice", 10, t0)
		requireLimited(t, l, "10.0.0.1", "alice", t0, 5*time.Minute)

		l.Success("10.0.0.1", "ALICE")
		requireAllowed(t, l, "10.0.0.1", "alice", t0)
		fail(l, "10.0.0.1", "alice", 9, t0)
		requireAllowed(t, l, "10.0.0.1", "alice", t0)
	})
}

func TestPerAccount(t *testing.T) {
	t.Parallel()

	t.Run("TripsAcrossAddresses", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(authlimit.DefaultConfig())
		// 50 failures from 50 addresses: no address and no pair is near its
		// own limit, but the account is.
		for i := range 49 {
			l.Failure(fmt.Sprintf("10.0.0.%d", i), "alice", t0)
		}
		requireAllowed(t, l, "10.0.0.1", "alice", t0)
		l.Failure("10.0.0.49", "Alice", t0)

		// The addresses that guessed wait for the account's window to end.
		requireLimited(t, l, "10.0.0.1", "alice", t0, 15*time.Minute)
		requireLimited(t, l, "10.0.0.49", "alice", t0.Add(time.Minute), 14*time.Minute)
		requireAllowed(t, l, "10.0.0.1", "bob", t0)
		requireAllowed(t, l, "10.0.0.1", "alice", t0.Add(15*time.Minute))
	})

	t.Run("OwnerIsNotLockedOut", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(authlimit.DefaultConfig())
		// 50 wrong passwords from 5 addresses: every one of them is blocked.
		for i := range 5 {
			fail(l, fmt.Sprintf("10.0.0.%d", i), "alice", 10, t0)
		}
		for i := range 5 {
			_, limited := l.Check(fmt.Sprintf("10.0.0.%d", i), "alice", t0)
			require.True(t, limited)
		}
		// The owner, at an address with no failures, still gets to try.
		requireAllowed(t, l, "192.0.2.7", "alice", t0.Add(time.Second))
		// Fresh addresses are admitted at a pace, not all at once: a botnet
		// gets one guess per pace, and the owner waits seconds at most.
		requireLimited(t, l, "192.0.2.8", "alice", t0.Add(3*time.Second), 3*time.Second)
		requireAllowed(t, l, "192.0.2.8", "alice", t0.Add(6*time.Second))
		// A fresh address that fails joins the blocked ones.
		l.Failure("192.0.2.8", "alice", t0.Add(6*time.Second))
		requireLimited(t, l, "192.0.2.8", "alice", t0.Add(20*time.Second), 15*time.Minute-20*time.Second)
		// A refused attempt does not use up the pace.
		requireAllowed(t, l, "192.0.2.9", "alice", t0.Add(20*time.Second))
	})

	t.Run("SuccessKeepsAccountCounter", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(authlimit.Config{PerAccount: authlimit.Window{Failures: 3, Period: time.Minute}})
		fail(l, "a", "alice", 3, t0)
		l.Success("a", "alice")
		requireAllowed(t, l, "b", "alice", t0)
		requireLimited(t, l, "c", "alice", t0, 5*time.Second)
	})
}

func TestPerAddr(t *testing.T) {
	t.Parallel()

	l := authlimit.New(authlimit.DefaultConfig())
	for i := range 100 {
		l.Failure("10.0.0.1", fmt.Sprintf("user%d", i), t0)
	}
	requireLimited(t, l, "10.0.0.1", "someone-new", t0, 15*time.Minute)
	requireAllowed(t, l, "10.0.0.2", "someone-new", t0)
}

func TestLongestBlockingWindowWins(t *testing.T) {
	t.Parallel()

	l := authlimit.New(authlimit.Config{
		PerAddrAccount: authlimit.Window{Failures: 2, Period: time.Minute},
		PerAccount:     authlimit.Window{Failures: 2, Period: time.Hour},
	})
	fail(l, "a", "alice", 2, t0)
	requireLimited(t, l, "a", "alice", t0, time.Hour)
}

func TestDisabledWindows(t *testing.T) {
	t.Parallel()

	l := authlimit.New(authlimit.Config{
		PerAddrAccount: authlimit.Window{Failures: 0, Period: time.Minute},
		PerAccount:     authlimit.Window{Failures: 1, Period: 0},
	})
	fail(l, "a", "alice", 100, t0)
	requireAllowed(t, l, "a", "alice", t0)
	require.Zero(t, l.Len())
}

func TestLongKeysAreBounded(t *testing.T) {
	t.Parallel()

	l := authlimit.New(pairOnly(1, time.Minute))
	long := strings.Repeat("x", 10_000)
	l.Failure("a", long+"1", t0)
	requireLimited(t, l, "a", long+"1", t0, time.Minute)
	requireLimited(t, l, "a", strings.ToUpper(long)+"1", t0, time.Minute)
	requireAllowed(t, l, "a", long+"2", t0)
}

func TestEviction(t *testing.T) {
	t.Parallel()

	t.Run("FullTableStillAdmitsNewKeys", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(authlimit.Config{
			PerAddrAccount: authlimit.Window{Failures: 1, Period: time.Hour},
			MaxKeys:        100,
		})
		for i := range 500 {
			l.Failure("10.0.0.1", fmt.Sprintf("user%d", i), t0.Add(time.Duration(i)*time.Millisecond))
			require.LessOrEqual(t, l.Len(), 100)
		}
		require.Equal(t, 100, l.Len())

		// A newcomer's failure is counted even though the table is full of
		// live counters; the oldest counters made way for the newest.
		now := t0.Add(time.Second)
		l.Failure("192.0.2.7", "victim", now)
		requireLimited(t, l, "192.0.2.7", "victim", now, time.Hour)
		requireLimited(t, l, "10.0.0.1", "user499", now, time.Hour)
		requireAllowed(t, l, "10.0.0.1", "user0", now)
		require.Equal(t, 100, l.Len())
	})

	t.Run("ExpiredBeforeOldest", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(authlimit.Config{
			PerAddrAccount: authlimit.Window{Failures: 1, Period: time.Hour},
			PerAccount:     authlimit.Window{Failures: 1, Period: time.Minute},
			MaxKeys:        4,
		})
		// Two live pair counters and one short-lived account counter, all
		// started at t0.
		l.Failure("a", "", t0)
		l.Failure("b", "", t0)
		require.Equal(t, 3, l.Len()) // two pairs, one account "" counter

		later := t0.Add(2 * time.Minute)
		// The table is full when the counter for account "x" arrives: the
		// expired account counter makes way, not the live pairs that are
		// just as old.
		l.Failure("c", "x", later)
		require.Equal(t, 4, l.Len())
		requireLimited(t, l, "a", "", later, time.Hour-2*time.Minute)
		requireLimited(t, l, "b", "", later, time.Hour-2*time.Minute)
		requireLimited(t, l, "c", "x", later, time.Hour)
	})

	t.Run("ZeroMaxKeysUsesDefault", func(t *testing.T) {
		t.Parallel()
		l := authlimit.New(pairOnly(1, time.Hour))
		for i := range 1000 {
			l.Failure("a", fmt.Sprint(i), t0)
		}
		require.Equal(t, 1000, l.Len())
	})
}

func TestConcurrentUse(t *testing.T) {
	t.Parallel()

	const maxKeys = 64
	cfg := authlimit.DefaultConfig()
	cfg.MaxKeys = maxKeys
	l := authlimit.New(cfg)

	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 500 {
				addr := fmt.Sprintf("10.0.%d.%d", g, i%7)
				account := fmt.Sprintf("user%d", i%11)
				now := t0.Add(time.Duration(i) * time.Second)
				l.Check(addr, account, now)
				l.Failure(addr, account, now)
				if i%5 == 0 {
					l.Success(addr, account)
				}
				_ = l.Len()
			}
		})
	}
	wg.Wait()
	require.LessOrEqual(t, l.Len(), maxKeys)

	// The limiter still works after the storm.
	now := t0.Add(time.Hour)
	fail(l, "198.51.100.1", "carol", 10, now)
	requireLimited(t, l, "198.51.100.1", "carol", now, 5*time.Minute)
}
