package obsync

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
)

// Group commit. A push must hold the write lock (sync_state's row) from the moment it
// stamps versions until its commit is visible, and a commit waits for its WAL flush: one
// push at a time, each paying its own flush, is all one lock allows. So the pushes of a
// Service do not take the lock each on their own: once a push has read and validated its
// records (held in memory, or staged when large; see Batch) it queues, and one writer at a
// time takes every push waiting (up to the bounds below) and writes them in one
// transaction, under one lock, with one commit, while the next group gathers. Each push in
// a group is decided against the state the ones before it left, in arrival order, and
// keeps its own answer, receipt, failed records, quarantine rows and warnings, exactly as
// if the pushes had committed one after another.
// The lock still orders the groups of every process on the database, and the pushes that
// write outside a group (an admin's retry, a push whose group the database refused).

// A group is closed once adding the next push would carry it past either bound (a group
// always takes at least one push, however large). They bound the group's transaction, and
// so how long the pushes in it and the next group wait. A waiting push holds at most one
// chunk of its records in memory (stageChunkBytes); the rest wait in push_staging.
const (
	maxGroupRecords = 2000
	maxGroupBytes   = 8 << 20
)

// errWriteAlone answers the pushes of a group that the database refused as a whole
// because of some record: each is then written on its own, so that the refused record
// costs only its own push (which quarantines it) and never the others of the group.
var errWriteAlone = errors.New("the group was refused: write this push alone")

// committer is the queue of a Service's pushes waiting to be written.
type committer struct {
	mu      sync.Mutex
	queue   []*queuedPush
	writing bool // a writer goroutine is running; it ends when the queue is empty
}

// queuedPush is a push waiting for its group's commit.
type queuedPush struct {
	ctx  context.Context
	w    pushWrite
	done chan struct{} // closed once res and err are set
	res  PushResult
	err  error
}

// pushGrouped queues a push for the next group and waits for its answer. A push whose
// context ends before its group is taken leaves the queue and is not written (the client
// sends it again, as after any error). Once its group is taken it is written with the
// others although its client went away, and the receipt keeps its answer for the retry;
// only when every client of the group has gone is the group's transaction abandoned.
func (s *Service) pushGrouped(ctx context.Context, w pushWrite) (PushResult, error) {
	c := &s.commits
	p := &queuedPush{ctx: ctx, w: w, done: make(chan struct{})}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	start := !c.writing
	c.writing = true
	c.mu.Unlock()
	if start {
		go s.writeGroups()
	}
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
	}
	c.mu.Lock()
	if i := slices.Index(c.queue, p); i >= 0 {
		c.queue = slices.Delete(c.queue, i, i+1)
		c.mu.Unlock()
		return PushResult{}, ctx.Err()
	}
	c.mu.Unlock()
	<-p.done
	return p.res, p.err
}

// writeGroups writes groups until no push waits.
func (s *Service) writeGroups() {
	for {
		group := s.commits.next()
		if len(group) == 0 {
			return
		}
		s.writeGroup(group)
	}
}

// next takes the next group from the queue, in arrival order, or, when no push waits,
// ends the writer. Pushes whose context already ended are answered with its error.
func (c *committer) next() []*queuedPush {
	c.mu.Lock()
	defer c.mu.Unlock()
	var group []*queuedPush
	records, bytes, n := 0, 0, 0
	for ; n < len(c.queue); n++ {
		p := c.queue[n]
		if err := p.ctx.Err(); err != nil {
			p.err = err
			close(p.done)
			continue
		}
		b := p.w.batch
		if len(group) > 0 && (records+b.n > maxGroupRecords || bytes+b.bytes > maxGroupBytes) {
			break
		}
		records, bytes = records+b.n, bytes+b.bytes
		group = append(group, p)
	}
	c.queue = slices.Delete(c.queue, 0, n)
	if len(group) == 0 {
		c.writing = false
	}
	return group
}

// writeGroup writes a group in one transaction and answers its pushes. A panic while
// writing fails the group's pushes, as the HTTP layer's recovery would fail one, rather
// than the process.
func (s *Service) writeGroup(group []*queuedPush) {
	ws := make([]pushWrite, len(group))
	for i, p := range group {
		ws[i] = p.w
	}
	var outs []pushOutcome
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("panic writing a group of pushes: %v\n%s", r, debug.Stack())
			}
		}()
		ctx, cancel := groupContext(group)
		defer cancel()
		outs, err = s.writeWithRetries(ctx, ws, nil)
	}()
	for i, p := range group {
		switch {
		case err == nil:
			p.res, p.err = outs[i].res, outs[i].err
		case refusesRecord(err) && len(group) > 1:
			p.err = errWriteAlone
		default:
			p.err = err
		}
		close(p.done)
	}
}

// groupContext is the context of a group's transaction. It carries the values of the
// first push's context (for logging), and ends only once every push of the group has lost
// its client: a client that goes away must not cost the others their write.
func groupContext(group []*queuedPush) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.WithoutCancel(group[0].ctx))
	var waiting atomic.Int32
	waiting.Store(int32(len(group)))
	stops := make([]func() bool, len(group))
	for i, p := range group {
		stops[i] = context.AfterFunc(p.ctx, func() {
			if waiting.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
