package passwords

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/bcrypt"
)

// blockingCompare wraps bcrypt's comparison so a test can see when a call has
// taken its slot and decide when it finishes.
type blockingCompare struct {
	entered chan struct{}
	release chan struct{}
}

func (b *blockingCompare) compare(hash, password []byte) error {
	b.entered <- struct{}{}
	<-b.release
	return bcrypt.CompareHashAndPassword(hash, password)
}

func TestVerifySerializedByOneSlot(t *testing.T) {
	t.Parallel()

	h := NewHasher(bcrypt.MinCost, 1)
	hash, err := h.Hash(context.Background(), "secret")
	require.NoError(t, err)
	block := &blockingCompare{entered: make(chan struct{}), release: make(chan struct{})}
	h.compare = block.compare

	type result struct {
		ok  bool
		err error
	}
	first := make(chan result, 1)
	go func() {
		ok, err := h.Verify(context.Background(), hash, "secret")
		first <- result{ok, err}
	}()
	<-block.entered // the first call now holds the only slot

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	ok, err := h.Verify(ctx, hash, "secret")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.False(t, ok)
	require.ErrorIs(t, h.VerifyUnknownUser(ctx, "secret"), context.DeadlineExceeded)
	_, err = h.Hash(ctx, "secret")
	require.ErrorIs(t, err, context.DeadlineExceeded)

	close(block.release)
	res := <-first
	require.NoError(t, res.err)
	require.True(t, res.ok)

	// The slot was given back, so a later call gets it straight away.
	go func() { <-block.entered }()
	ok, err = h.Verify(context.Background(), hash, "secret")
	require.NoError(t, err)
	require.True(t, ok)
}

func TestConcurrencyBound(t *testing.T) {
	t.Parallel()

	const limit, callers = 3, 12
	h := NewHasher(bcrypt.MinCost, limit)
	hash, err := h.Hash(context.Background(), "secret")
	require.NoError(t, err)

	var inFlight, peak atomic.Int32
	release := make(chan struct{})
	h.compare = func(hash, password []byte) error {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		<-release
		return bcrypt.CompareHashAndPassword(hash, password)
	}

	errs := make(chan error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() {
			if i%2 == 0 {
				_, err := h.Verify(context.Background(), hash, "secret")
				errs <- err
				return
			}
			errs <- h.VerifyUnknownUser(context.Background(), "secret")
		})
	}

	require.Eventually(t, func() bool { return inFlight.Load() == limit }, 5*time.Second, time.Millisecond)
	// Give the waiting callers a chance to slip past the bound if they could.
	time.Sleep(50 * time.Millisecond)
	require.Equal(t, int32(limit), inFlight.Load())

	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	require.Equal(t, int32(limit), peak.Load())
	require.Empty(t, h.slots, "every slot must be released")
}

func TestNewHasherClamps(t *testing.T) {
	t.Parallel()

	h := NewHasher(bcrypt.MinCost, -5)
	require.Equal(t, 1, cap(h.slots))
	require.Equal(t, bcrypt.MinCost, h.cost)

	cost, err := bcrypt.Cost(h.dummyHash)
	require.NoError(t, err)
	require.Equal(t, h.cost, cost, "the dummy hash must cost what real hashes cost")

	require.Equal(t, bcrypt.DefaultCost, NewHasher(bcrypt.MaxCost+1, 1).cost)
}
