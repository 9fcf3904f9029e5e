// Package passwords hashes and checks user passwords with bcrypt, bounding how
// many hashes run at once so that a storm of login attempts queues instead of
// taking every CPU away from sync traffic.
package passwords

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"

	"golang.org/x/crypto/bcrypt"
)

// MaxPasswordBytes is the longest password Validate accepts. Pre-hashing makes
// any length safe for bcrypt; the cap only keeps request bodies and SHA-256
// work small, and matches the limit older clients already live with.
const MaxPasswordBytes = 1024

// ErrEmpty is wrapped by Validate's error for an empty password.
var ErrEmpty = errors.New("password is empty")

// ErrTooLong is wrapped by Validate's error for a password longer than
// MaxPasswordBytes.
var ErrTooLong = errors.New("password is too long")

// dummyPassword is hashed once per Hasher to give VerifyUnknownUser a real
// bcrypt hash to compare against; its value is irrelevant.
const dummyPassword = "synkronus-unknown-user"

// Validate reports whether password may be set as a user's password. It does
// not judge strength; it only rejects what cannot be stored sensibly.
func Validate(password string) error {
	if password == "" {
		return ErrEmpty
	}
	if len(password) > MaxPasswordBytes {
		return fmt.Errorf("%w: %d bytes, at most %d allowed", ErrTooLong, len(password), MaxPasswordBytes)
	}
	return nil
}

// Hasher hashes and verifies passwords with bcrypt at a fixed cost, allowing
// at most a fixed number of bcrypt operations to run at the same time. It is
// safe for concurrent use.
type Hasher struct {
	cost int
	// slots is a counting semaphore: a send takes a slot, a receive frees it.
	slots chan struct{}
	// dummyHash makes a lookup of an unknown user cost one full bcrypt
	// comparison, so response time does not reveal which usernames exist.
	dummyHash []byte
	// compare is bcrypt.CompareHashAndPassword; tests replace it to hold a
	// slot for as long as they need.
	compare func(hash, password []byte) error
}

// NewHasher returns a Hasher using the given bcrypt cost, running at most
// maxConcurrent bcrypt operations at once. A cost outside bcrypt's range falls
// back to bcrypt.DefaultCost and a maxConcurrent below 1 becomes 1.
//
// It computes one bcrypt hash at that cost before returning.
func NewHasher(cost int, maxConcurrent int) *Hasher {
	if cost < bcrypt.MinCost || cost > bcrypt.MaxCost {
		cost = bcrypt.DefaultCost
	}
	maxConcurrent = max(maxConcurrent, 1)

	dummy, err := bcrypt.GenerateFromPassword(prehash(dummyPassword), cost)
	if err != nil {
		// The cost is in range and the input is 44 bytes, so the only possible
		// failure is the system random source, which crypto/rand already
		// treats as fatal.
		panic(fmt.Sprintf("passwords: error generating dummy hash: %v", err))
	}
	return &Hasher{
		cost:      cost,
		slots:     make(chan struct{}, maxConcurrent),
		dummyHash: dummy,
		compare:   bcrypt.CompareHashAndPassword,
	}
}

// Hash returns the bcrypt hash to store for password. It refuses passwords
// that Validate rejects, and returns ctx.Err() if ctx ends while waiting for a
// free slot.
func (h *Hasher) Hash(ctx context.Context, password string) (string, error) {
	if err := Validate(password); err != nil {
		return "", err
	}
	release, err := h.acquire(ctx)
	if err != nil {
		return "", err
	}
	defer release()

	hash, err := bcrypt.GenerateFromPassword(prehash(password), h.cost)
	if err != nil {
		return "", fmt.Errorf("error hashing password: %w", err)
	}
	return string(hash), nil
}

// Verify reports whether password matches hash. A mismatch is (false, nil);
// an error means the check could not be made: ctx ended while waiting for a
// slot (ctx.Err() is returned) or hash is not a bcrypt hash.
func (h *Hasher) Verify(ctx context.Context, hash, password string) (bool, error) {
	// Parse first so a corrupt stored hash neither takes a slot nor is
	// reported as a wrong password.
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return false, fmt.Errorf("error reading password hash: %w", err)
	}
	return h.compareWithSlot(ctx, []byte(hash), password)
}

// VerifyUnknownUser spends the same work as Verify against a fixed dummy hash
// and discards the result. Call it when the username does not exist so that
// failing for an unknown user takes as long as failing for a known one. Its
// only error is ctx.Err() when ctx ends while waiting for a slot.
func (h *Hasher) VerifyUnknownUser(ctx context.Context, password string) error {
	_, err := h.compareWithSlot(ctx, h.dummyHash, password)
	return err
}

func (h *Hasher) compareWithSlot(ctx context.Context, hash []byte, password string) (bool, error) {
	release, err := h.acquire(ctx)
	if err != nil {
		return false, err
	}
	defer release()

	err = h.compare(hash, prehash(password))
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, bcrypt.ErrMismatchedHashAndPassword):
		return false, nil
	default:
		return false, fmt.Errorf("error verifying password: %w", err)
	}
}

// acquire takes a slot, waiting until one is free or ctx ends.
func (h *Hasher) acquire(ctx context.Context) (release func(), err error) {
	// select picks at random among ready cases; checking first means a
	// request that is already gone never starts a bcrypt operation.
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case h.slots <- struct{}{}:
		return func() { <-h.slots }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// prehash condenses a password of any length into 44 bytes for bcrypt.
//
// bcrypt reads at most 72 bytes (and x/crypto refuses longer input), so two
// long passphrases sharing their first 72 bytes would otherwise be the same
// password. SHA-256 keeps every byte significant; base64 then keeps the
// input free of NUL bytes, which some bcrypt implementations treat as the end
// of the password, so the stored hashes stay portable.
//
// These hashes are therefore not interchangeable with bcrypt hashes of the raw
// password.
func prehash(password string) []byte {
	sum := sha256.Sum256([]byte(password))
	out := make([]byte, base64.StdEncoding.EncodedLen(len(sum)))
	base64.StdEncoding.Encode(out, sum[:])
	return out
}
