// Package authlimit throttles failed logins, per client address and per account, so that
// password guessing is slowed down without letting an attacker lock legitimate users out
// by failing on purpose: an account over its limit is closed only to the addresses that
// failed on it, and admits the others at a slow, steady pace.
//
// Counters use fixed windows: a window opens at a key's first failure and lasts its
// Period; once it has passed the next failure opens a new one. The counters are rows of
// PostgreSQL (table login_failures), so every server process of a database enforces the
// same limits: behind a load balancer a client cannot multiply its allowance by spreading
// its attempts over the processes. The table holds only counters with failures in their
// window (the server's cleanup job removes ended ones); its growth is bounded by the rate
// at which the server can verify passwords.
package authlimit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// Window is one fixed-window limit: at most Failures failures per Period. A window with
// Failures < 1 or Period <= 0 is disabled.
type Window struct {
	// Failures is how many failures a key may have within one window; the next attempt
	// after that is limited until the window ends.
	Failures int
	// Period is how long a window lasts from the key's first failure in it.
	Period time.Duration
}

func (w Window) enabled() bool { return w.Failures > 0 && w.Period > 0 }

// Config sets the three limits a Limiter enforces.
type Config struct {
	// PerAddrAccount limits guesses at one account from one address; it is the tightest
	// limit and the one a successful login clears.
	PerAddrAccount Window
	// PerAccount limits guesses at one account from anywhere, against attackers who
	// spread their attempts over many addresses. Once it is reached, addresses that failed
	// on the account wait for the window to end, while the others (the account's owner
	// among them) are admitted one at a time, at most one attempt per HotAccountPace.
	PerAccount Window
	// HotAccountPace is how often an account over its PerAccount limit admits an attempt
	// from an address with no failures on it. Values of zero or less use DefaultConfig's.
	HotAccountPace time.Duration
	// PerAddr limits failures from one address over all accounts, against one client
	// trying a common password on many accounts.
	PerAddr Window
}

// DefaultConfig returns limits suited to interactive logins: 10 failures per 5 minutes
// per (address, account), 50 per 15 minutes per account (after which fresh addresses get
// one attempt per 5 seconds), and 100 per 15 minutes per address.
func DefaultConfig() Config {
	return Config{
		PerAddrAccount: Window{Failures: 10, Period: 5 * time.Minute},
		PerAccount:     Window{Failures: 50, Period: 15 * time.Minute},
		HotAccountPace: 5 * time.Second,
		PerAddr:        Window{Failures: 100, Period: 15 * time.Minute},
	}
}

type kind uint8

const (
	kindAddrAccount kind = iota
	kindAccount
	kindAddr
	numKinds
)

// Limiter counts failed attempts in PostgreSQL and says when a client must wait. It is
// safe for concurrent use, also by several processes on one database.
type Limiter struct {
	q       *dbgen.Queries
	scope   string
	windows [numKinds]Window
	pace    time.Duration
}

// New returns a Limiter enforcing cfg on the counters of scope: limiters of different
// scopes (logins, token refreshes) count apart, limiters of one scope count together,
// in this process or another.
func New(pool *pgxpool.Pool, scope string, cfg Config) *Limiter {
	if cfg.HotAccountPace <= 0 {
		cfg.HotAccountPace = DefaultConfig().HotAccountPace
	}
	return &Limiter{
		q:     dbgen.New(db.Conn(pool)),
		scope: scope,
		windows: [numKinds]Window{
			kindAddrAccount: cfg.PerAddrAccount,
			kindAccount:     cfg.PerAccount,
			kindAddr:        cfg.PerAddr,
		},
		pace: cfg.HotAccountPace,
	}
}

// Check reports whether an attempt from addr on account must be refused as of now, and
// if so how long the client should wait (whole seconds, at least one) before trying
// again. Call it before checking the password so a limited client spends no bcrypt time.
// An attempt it allows from an address with no failures on an account over its limit
// counts against that account's pace.
//
// addr should be a canonical form of whatever identifies the client; account is
// case-folded.
func (l *Limiter) Check(ctx context.Context, addr, account string, now time.Time) (retryAfter time.Duration, limited bool, err error) {
	keys := l.keysFor(addr, account)
	rows, err := l.q.LoginFailureGet(ctx, dbgen.LoginFailureGetParams{Keys: keys[:], Now: now})
	if err != nil {
		return 0, false, fmt.Errorf("error reading login failures: %w", err)
	}
	var live [numKinds]*dbgen.LoginFailure
	for i := range rows {
		for k := range keys {
			if string(rows[i].Key) == string(keys[k]) {
				live[k] = &rows[i]
			}
		}
	}
	var wait time.Duration
	block := func(k kind) {
		limited = true
		wait = max(wait, live[k].ExpiresAt.Sub(now))
	}
	for _, k := range []kind{kindAddrAccount, kindAddr} {
		if live[k] != nil && int(live[k].Failures) >= l.windows[k].Failures {
			block(k)
		}
	}
	if acct := live[kindAccount]; acct != nil && int(acct.Failures) >= l.windows[kindAccount].Failures {
		switch {
		case live[kindAddrAccount] != nil:
			block(kindAccount) // this address guessed at the account before
		case acct.Admitted != nil && now.Before(acct.Admitted.Add(l.pace)):
			limited = true
			wait = max(wait, acct.Admitted.Add(l.pace).Sub(now))
		case !limited:
			// Claim the pace's one attempt; another process may have claimed it since.
			n, err := l.q.LoginFailureAdmit(ctx, dbgen.LoginFailureAdmitParams{Key: keys[kindAccount], Now: now, NotAfter: now.Add(-l.pace)})
			if err != nil {
				return 0, false, fmt.Errorf("error admitting a login attempt: %w", err)
			}
			if n == 0 {
				limited, wait = true, l.pace
			}
		}
	}
	if !limited {
		return 0, false, nil
	}
	return roundUpToSecond(wait), true, nil
}

// Failure records a failed attempt from addr on account in all three counters as of now.
func (l *Limiter) Failure(ctx context.Context, addr, account string, now time.Time) error {
	keys := l.keysFor(addr, account)
	var p dbgen.LoginFailureAddParams
	for k, w := range l.windows {
		if w.enabled() {
			p.Keys = append(p.Keys, keys[k])
			p.Expires = append(p.Expires, now.Add(w.Period))
		}
	}
	if len(p.Keys) == 0 {
		return nil
	}
	p.Now = now
	if err := l.q.LoginFailureAdd(ctx, p); err != nil {
		return fmt.Errorf("error counting a login failure: %w", err)
	}
	return nil
}

// Success clears the (addr, account) counter after a successful login, so a user who
// mistyped a few times starts afresh. The per-account and per-address counters are kept:
// otherwise an attacker who knows one password could interleave successful logins to
// reset the limits on other guesses.
func (l *Limiter) Success(ctx context.Context, addr, account string) error {
	if err := l.q.LoginFailureDelete(ctx, l.keysFor(addr, account)[kindAddrAccount]); err != nil {
		return fmt.Errorf("error clearing login failures: %w", err)
	}
	return nil
}

// DeleteExpired removes the counters whose window has ended, of every scope, and returns
// how many.
func DeleteExpired(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	n, err := dbgen.New(db.Conn(pool)).LoginFailureDeleteExpired(ctx)
	if err != nil {
		return 0, fmt.Errorf("error removing ended login failure counters: %w", err)
	}
	return n, nil
}

// keysFor returns the row keys of the three counters of an attempt: digests, so that a
// key's size is bounded whatever the client sent, and the table keeps no address or
// attempted user name in clear.
func (l *Limiter) keysFor(addr, account string) [numKinds][]byte {
	account = strings.ToLower(account)
	key := func(k kind, addr, account string) []byte {
		h := sha256.New()
		fmt.Fprintf(h, "%s\x00%d\x00%d:%s\x00%s", l.scope, k, len(addr), addr, account)
		return h.Sum(nil)
	}
	return [numKinds][]byte{
		kindAddrAccount: key(kindAddrAccount, addr, account),
		kindAccount:     key(kindAccount, "", account),
		kindAddr:        key(kindAddr, addr, ""),
	}
}

func roundUpToSecond(d time.Duration) time.Duration {
	seconds := (d + time.Second - 1) / time.Second
	return max(seconds, 1) * time.Second
}
