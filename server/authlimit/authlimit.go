// Package authlimit throttles failed logins in memory, per client address and
// per account, so that password guessing is slowed down without letting an
// attacker lock legitimate users out, neither by filling the limiter's table
// nor by failing on purpose: an account over its limit is closed only to the
// addresses that failed on it, and admits the others at a slow, steady pace.
//
// Counters use fixed windows: a window opens at a key's first failure and
// lasts its Period; once it has passed the next failure opens a new one. The
// limiter is per process, so behind a load balancer each server keeps its own
// counts, which at worst multiplies the allowance by the number of servers.
package authlimit

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"sync"
	"time"
)

// maxKeyBytes bounds how much of a caller-supplied address or account name a
// key keeps. Usernames come straight from the request body, so without this an
// attacker could make each of MaxKeys entries arbitrarily large.
const maxKeyBytes = 256

// Window is one fixed-window limit: at most Failures failures per Period. A
// window with Failures < 1 or Period <= 0 is disabled.
type Window struct {
	// Failures is how many failures a key may have within one window; the
	// next attempt after that is limited until the window ends.
	Failures int
	// Period is how long a window lasts from the key's first failure in it.
	Period time.Duration
}

func (w Window) enabled() bool { return w.Failures > 0 && w.Period > 0 }

// Config sets the three limits a Limiter enforces and the size of its table.
type Config struct {
	// PerAddrAccount limits guesses at one account from one address; it is
	// the tightest limit and the one a successful login clears.
	PerAddrAccount Window
	// PerAccount limits guesses at one account from anywhere, against
	// attackers who spread their attempts over many addresses. Once it is
	// reached, addresses that failed on the account wait for the window to
	// end, while the others (the account's owner among them) are admitted one
	// at a time, at most one attempt per HotAccountPace.
	PerAccount Window
	// HotAccountPace is how often an account over its PerAccount limit admits
	// an attempt from an address with no failures on it. Values of zero or
	// less use DefaultConfig's.
	HotAccountPace time.Duration
	// PerAddr limits failures from one address over all accounts, against
	// one client trying a common password on many accounts.
	PerAddr Window
	// MaxKeys caps the number of counters held over all three limits. When
	// the table is full the limiter forgets expired, then oldest, counters
	// rather than refusing new ones. Values below 1 use DefaultConfig's.
	MaxKeys int
}

// DefaultConfig returns limits suited to interactive logins: 10 failures per
// 5 minutes per (address, account), 50 per 15 minutes per account (after which
// fresh addresses get one attempt per 5 seconds), 100 per 15 minutes per
// address, and room for 100,000 counters (well under 100 MB even with maximal
// key lengths).
func DefaultConfig() Config {
	return Config{
		PerAddrAccount: Window{Failures: 10, Period: 5 * time.Minute},
		PerAccount:     Window{Failures: 50, Period: 15 * time.Minute},
		HotAccountPace: 5 * time.Second,
		PerAddr:        Window{Failures: 100, Period: 15 * time.Minute},
		MaxKeys:        100_000,
	}
}

type kind uint8

const (
	kindAddrAccount kind = iota
	kindAccount
	kindAddr
	numKinds
)

type key struct {
	kind    kind
	addr    string
	account string
}

type entry struct {
	key      key
	start    time.Time
	failures int
	elem     *list.Element
	// admitted is when an account over its limit last admitted an attempt
	// from an address with no failures on it.
	admitted time.Time
}

// Limiter counts failed login attempts and says when a client must wait. It
// is safe for concurrent use.
type Limiter struct {
	windows [numKinds]Window
	pace    time.Duration
	maxKeys int

	mu      sync.Mutex
	entries map[key]*entry
	// byStart holds each kind's entries ordered by window start, oldest
	// first. All entries of a kind share one Period, so this is also the
	// order in which they expire: eviction only ever looks at the fronts.
	// The order holds as long as callers pass non-decreasing times; slightly
	// out-of-order times only make eviction slightly less precise.
	byStart [numKinds]*list.List
}

// New returns a Limiter enforcing cfg.
func New(cfg Config) *Limiter {
	if cfg.MaxKeys < 1 {
		cfg.MaxKeys = DefaultConfig().MaxKeys
	}
	if cfg.HotAccountPace <= 0 {
		cfg.HotAccountPace = DefaultConfig().HotAccountPace
	}
	l := &Limiter{
		windows: [numKinds]Window{
			kindAddrAccount: cfg.PerAddrAccount,
			kindAccount:     cfg.PerAccount,
			kindAddr:        cfg.PerAddr,
		},
		pace:    cfg.HotAccountPace,
		maxKeys: cfg.MaxKeys,
		entries: make(map[key]*entry),
	}
	for k := range l.byStart {
		l.byStart[k] = list.New()
	}
	return l
}

// Check reports whether an attempt from addr on account must be refused as of
// now, and if so how long the client should wait (whole seconds, at least one)
// before trying again. Call it before checking the password so a limited
// client spends no bcrypt time. An attempt it allows from an address with no
// failures on an account over its limit counts against that account's pace.
//
// addr should be a canonical form of whatever identifies the client (for
// IPv6, consider its /64 prefix); account is case-folded.
func (l *Limiter) Check(addr, account string, now time.Time) (retryAfter time.Duration, limited bool) {
	keys := keysFor(addr, account)

	l.mu.Lock()
	defer l.mu.Unlock()

	var live [numKinds]*entry
	for k, w := range l.windows {
		e := l.entries[keys[k]]
		if e == nil {
			continue
		}
		if !now.Before(e.start.Add(w.Period)) {
			l.remove(e)
			continue
		}
		live[k] = e
	}
	var wait time.Duration
	block := func(k kind) {
		limited = true
		wait = max(wait, live[k].start.Add(l.windows[k].Period).Sub(now))
	}
	for _, k := range []kind{kindAddrAccount, kindAddr} {
		if live[k] != nil && live[k].failures >= l.windows[k].Failures {
			block(k)
		}
	}
	if acct := live[kindAccount]; acct != nil && acct.failures >= l.windows[kindAccount].Failures {
		switch next := acct.admitted.Add(l.pace); {
		case live[kindAddrAccount] != nil:
			block(kindAccount) // this address guessed at the account before
		case now.Before(next):
			limited = true
			wait = max(wait, next.Sub(now))
		case !limited:
			acct.admitted = now
		}
	}
	if !limited {
		return 0, false
	}
	return roundUpToSecond(wait), true
}

// Failure records a failed attempt from addr on account in all three
// counters as of now.
func (l *Limiter) Failure(addr, account string, now time.Time) {
	keys := keysFor(addr, account)

	l.mu.Lock()
	defer l.mu.Unlock()

	for k, w := range l.windows {
		if !w.enabled() {
			continue
		}
		e := l.entries[keys[k]]
		switch {
		case e == nil:
			l.makeRoom(now)
			e = &entry{key: keys[k], start: now}
			e.elem = l.byStart[k].PushBack(e)
			l.entries[e.key] = e
		case !now.Before(e.start.Add(w.Period)):
			e.start, e.failures = now, 0
			l.byStart[k].MoveToBack(e.elem)
		}
		e.failures++
	}
}

// Success clears the (addr, account) counter after a successful login, so a
// user who mistyped a few times starts afresh. The per-account and
// per-address counters are kept: otherwise an attacker who knows one password
// could interleave successful logins to reset the limits on other guesses.
func (l *Limiter) Success(addr, account string) {
	k := keysFor(addr, account)[kindAddrAccount]

	l.mu.Lock()
	defer l.mu.Unlock()

	if e := l.entries[k]; e != nil {
		l.remove(e)
	}
}

// Len returns how many counters the limiter holds, expired ones included until
// they are looked at or evicted; it is meant for metrics and tests.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.entries)
}

// makeRoom frees a slot when the table is full. New keys are always admitted:
// refusing them would let an attacker who fills the table lock everyone out.
// Expired counters go first; after that the oldest windows, whose counts
// matter least because they are closest to ending anyway.
func (l *Limiter) makeRoom(now time.Time) {
	if len(l.entries) < l.maxKeys {
		return
	}
	for k, w := range l.windows {
		for front := l.byStart[k].Front(); front != nil; front = l.byStart[k].Front() {
			e := front.Value.(*entry)
			if now.Before(e.start.Add(w.Period)) {
				break
			}
			l.remove(e)
		}
	}
	for len(l.entries) >= l.maxKeys {
		l.remove(l.oldest())
	}
}

// oldest returns the entry whose window started first; the table must not be
// empty.
func (l *Limiter) oldest() *entry {
	var oldest *entry
	for _, order := range l.byStart {
		if front := order.Front(); front != nil {
			e := front.Value.(*entry)
			if oldest == nil || e.start.Before(oldest.start) {
				oldest = e
			}
		}
	}
	return oldest
}

func (l *Limiter) remove(e *entry) {
	l.byStart[e.key.kind].Remove(e.elem)
	delete(l.entries, e.key)
}

func keysFor(addr, account string) [numKinds]key {
	addr = boundKey(addr)
	account = boundKey(strings.ToLower(account))
	return [numKinds]key{
		kindAddrAccount: {kind: kindAddrAccount, addr: addr, account: account},
		kindAccount:     {kind: kindAccount, account: account},
		kindAddr:        {kind: kindAddr, addr: addr},
	}
}

// boundKey replaces an over-long key part by its digest, which keeps memory
// bounded without letting two different long names share a counter.
func boundKey(s string) string {
	if len(s) <= maxKeyBytes {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

func roundUpToSecond(d time.Duration) time.Duration {
	seconds := (d + time.Second - 1) / time.Second
	return max(seconds, 1) * time.Second
}
