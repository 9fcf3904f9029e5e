package obsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// widePool is a pool on a fresh database with room for every concurrent worker, so that
// the workers really run side by side instead of queueing for connections.
func widePool(t *testing.T, conns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.NewDBURL(t))
	require.NoError(t, err)
	cfg.MaxConns = conns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}

// seenState is what a puller knows of one observation.
type seenState struct {
	Version   int64
	FormType  string
	Data      string
	UpdatedAt string
	Deleted   bool
}

// puller follows the change stream the way Formulus does: it pulls from its cursor while
// has_more, moving the cursor to change_cutoff, and keeps the newest state of every
// observation. Every broken promise of the pull contract is noted in violations.
type puller struct {
	svc        *obsync.Service
	limit      int
	cursor     int64
	maxSeen    int64
	seen       map[string]seenState
	violations []string
	pages      int
	morePages  int
}

func (p *puller) violate(format string, args ...any) {
	if len(p.violations) < 20 {
		p.violations = append(p.violations, fmt.Sprintf(format, args...))
	}
}

// syncToEnd pulls pages until has_more is false.
func (p *puller) syncToEnd(ctx context.Context) error {
	for {
		since := p.cursor
		page, err := p.svc.Pull(ctx, obsync.PullRequest{Since: since, Limit: p.limit})
		if err != nil {
			return err
		}
		p.pages++
		if len(page.Records) > p.limit {
			p.violate("page after %d has %d records, over the limit %d", since, len(page.Records), p.limit)
		}
		prev := since
		for _, r := range page.Records {
			if r.Version <= prev {
				p.violate("page after %d: version %d (%s) does not follow %d", since, r.Version, r.ObservationID, prev)
			}
			if r.Version <= p.maxSeen {
				p.violate("page after %d: version %d (%s) is not newer than version %d seen before", since, r.Version, r.ObservationID, p.maxSeen)
			}
			if r.Version > page.CurrentVersion {
				p.violate("page after %d: version %d is above the page's current_version %d", since, r.Version, page.CurrentVersion)
			}
			prev = r.Version
			p.maxSeen = max(p.maxSeen, r.Version)
			p.seen[r.ObservationID] = seenState{Version: r.Version, FormType: r.FormType, Data: string(r.Data), UpdatedAt: r.UpdatedAtText, Deleted: r.Deleted}
		}
		if page.HasMore {
			p.morePages++
			if page.ChangeCutoff <= since {
				p.violate("has_more with change_cutoff %d not after since %d", page.ChangeCutoff, since)
				return nil // following such a cursor would never end
			}
			if n := len(page.Records); n == 0 || page.ChangeCutoff != page.Records[n-1].Version {
				p.violate("has_more with change_cutoff %d that is not the last record's version", page.ChangeCutoff)
			}
		} else if page.ChangeCutoff != page.CurrentVersion {
			p.violate("last page's change_cutoff %d is not current_version %d", page.ChangeCutoff, page.CurrentVersion)
		}
		if page.ChangeCutoff < since {
			p.violate("change_cutoff %d went back from %d", page.ChangeCutoff, since)
		}
		p.cursor = page.ChangeCutoff
		if !page.HasMore {
			return nil
		}
	}
}

// TestConcurrentPushesNeverHideFromPulls proves that no pull misses a committed change
// while pushes commit concurrently: pushers write new and overlapping observations in
// many small batches while pullers follow the stream with a small page size; at the end
// every puller holds exactly the stored state of every observation.
func TestConcurrentPushesNeverHideFromPulls(t *testing.T) {
	t.Parallel()
	const (
		pushers       = 4
		pushesEach    = 75
		pullers       = 3
		pageLimit     = 3
		sharedIDs     = 40
		maxBatchSize  = 5
		deleteOneInto = 10
	)
	ctx := context.Background()
	pool := widePool(t, pushers+pullers+2)
	svc := obsync.NewService(pool, obsync.PolicyNewest)

	// updated_at comes from one clock shared by the pushers, so that later writes usually
	// win; a pusher that stamped before another but commits after it loses a conflict,
	// which must not disturb pulls either.
	base := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	var pushWG sync.WaitGroup
	pushErrs := make(chan error, pushers)
	var accepted, answered atomic.Int64
	for p := range pushers {
		pushWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 42))
			for i := range pushesEach {
				n := 1 + rng.IntN(maxBatchSize)
				records := make([]json.RawMessage, n)
				for k := range records {
					id := fmt.Sprintf("obs_%d%03d%d_%d", p, i, k, rng.IntN(10000)) // new, written once
					if rng.IntN(3) > 0 {
						id = fmt.Sprintf("obs_shared_%d", rng.IntN(sharedIDs)) // overlapping between pushers
					}
					ts := base.Add(time.Duration(clock.Add(1)) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
					records[k] = json.RawMessage(fmt.Sprintf(
						`{"observation_id":%q,"form_type":"form_%d","form_version":"1","data":{"pusher": %d, "push": %d, "k": %d},`+
							`"created_at":"2025-06-01T08:00:00.000Z","updated_at":%q,"deleted":%t}`,
						id, k%2, p, i, k, ts, rng.IntN(deleteOneInto) == 0))
				}
				res, err := svc.Push(ctx, obsync.PushRequest{
					ClientID: fmt.Sprintf("pusher-%d", p), TransmissionID: fmt.Sprintf("%016d", i), Records: records, Username: "u",
				})
				if err != nil {
					pushErrs <- fmt.Errorf("pusher %d push %d: %w", p, i, err)
					return
				}
				if len(res.FailedRecords) > 0 {
					pushErrs <- fmt.Errorf("pusher %d push %d: refused records %+v", p, i, res.FailedRecords)
					return
				}
				accepted.Add(int64(res.SuccessCount))
				answered.Add(1)
			}
		})
	}

	var pushersDone atomic.Bool
	go func() { pushWG.Wait(); pushersDone.Store(true) }()
	ps := make([]*puller, pullers)
	pullErrs := make(chan error, pullers)
	var pullWG sync.WaitGroup
	for i := range ps {
		ps[i] = &puller{svc: svc, limit: pageLimit, seen: make(map[string]seenState)}
		pullWG.Go(func() {
			for {
				last := pushersDone.Load() // a pass that starts after the pushers finished sees everything
				if err := ps[i].syncToEnd(ctx); err != nil {
					pullErrs <- err
					return
				}
				if last || len(ps[i].violations) > 0 {
					return
				}
			}
		})
	}
	pushWG.Wait()
	pullWG.Wait()
	close(pushErrs)
	close(pullErrs)
	for err := range pushErrs {
		require.NoError(t, err)
	}
	for err := range pullErrs {
		require.NoError(t, err)
	}
	require.Equal(t, int64(pushers*pushesEach), answered.Load())
	require.Positive(t, accepted.Load())

	rows, err := pool.Query(ctx, `SELECT observation_id, version, form_type, data::text, updated_at_text, deleted FROM observations`)
	require.NoError(t, err)
	stored := make(map[string]seenState)
	var maxVersion int64
	for rows.Next() {
		var id string
		var s seenState
		require.NoError(t, rows.Scan(&id, &s.Version, &s.FormType, &s.Data, &s.UpdatedAt, &s.Deleted))
		stored[id] = s
		maxVersion = max(maxVersion, s.Version)
	}
	require.NoError(t, rows.Err())
	require.NotEmpty(t, stored)

	for i, p := range ps {
		require.NoError(t, p.syncToEnd(ctx), "final pull of puller %d", i)
		require.Empty(t, p.violations, "puller %d", i)
		require.Equal(t, maxVersion, p.cursor, "puller %d ends at the newest version", i)
		require.Positive(t, p.morePages, "puller %d never saw a page with has_more", i)
		var missed, stale, unknown []string
		for id, want := range stored {
			got, ok := p.seen[id]
			switch {
			case !ok:
				missed = append(missed, id)
			case got != want:
				stale = append(stale, fmt.Sprintf("%s: saw %+v, stored %+v", id, got, want))
			}
		}
		for id := range p.seen {
			if _, ok := stored[id]; !ok {
				unknown = append(unknown, id)
			}
		}
		require.Empty(t, sample(missed), "puller %d missed %d observations", i, len(missed))
		require.Empty(t, sample(stale), "puller %d holds %d stale observations", i, len(stale))
		require.Empty(t, sample(unknown), "puller %d holds %d observations that are not stored", i, len(unknown))
		t.Logf("puller %d: %d pages (%d with has_more), %d observations, cursor %d", i, p.pages, p.morePages, len(p.seen), p.cursor)
	}
}

// sample keeps failure output readable: a few sorted entries of a long list.
func sample(list []string) []string {
	slices.Sort(list)
	return list[:min(len(list), 5)]
}

func TestOneBadRecordCostsNoOther(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := obsync.NewService(dbtest.NewDB(t), obsync.PolicyNewest)
	good := func(id, data string) json.RawMessage {
		return rec(id, "2025-12-01T10:11:12.345Z", data)
	}
	longID := "obs_" + strings.Repeat("9", 252)
	records := []json.RawMessage{
		good("good-1", `{"a":1}`),
		json.RawMessage(`{"observation_id":"bad-nodata","form_type":"f","form_version":"1","created_at":"2025-12-01T10:11:12.345Z","updated_at":"2025-12-01T10:11:12.345Z","deleted":false}`),
		good("bad-array", `[1,2,3]`),
		good("good-nul", `{"note":"a\u0000b"}`), // the json type stores \u0000 escapes: not a bad record
		rec("bad-time", "2025-12-01 10:11", `{}`),
		rec("bad-year0", "0000-01-01T00:00:00.000Z", `{}`),
		rec("bad-lat", "2025-12-01T10:11:12.345Z", `{}`, `"geolocation":{"latitude":"91","longitude":0}`),
		json.RawMessage(`{"observation_id":"bad-nul-type","form_type":"house\u0000hold","form_version":"1","data":{},"created_at":"2025-12-01T10:11:12.345Z","updated_at":"2025-12-01T10:11:12.345Z","deleted":false}`),
		good(longID, `{}`),
		json.RawMessage(`"not a record"`),
		good("good-2", `{"b":[true,null]}`),
		json.RawMessage(`{"form_type":"f","form_version":"1","data":{},"created_at":"2025-12-01T10:11:12.345Z","updated_at":"2025-12-01T10:11:12.345Z","deleted":false}`),
		json.RawMessage(`{"observation_id":"bad\u0000id","form_type":"f","form_version":"1","data":{},"created_at":"2025-12-01T10:11:12.345Z","updated_at":"2025-12-01T10:11:12.345Z","deleted":false}`),
	}

	res, err := s.Push(ctx, obsync.PushRequest{ClientID: "c", TransmissionID: "abcdefghij012345", Records: records, Username: "u"})
	require.NoError(t, err)
	require.Equal(t, 3, res.SuccessCount)
	require.Equal(t, int64(3), res.CurrentVersion)

	want := []struct {
		index int
		id    string
		code  string
	}{
		{1, "bad-nodata", obsync.CodeMissingField},
		{2, "bad-array", obsync.CodeInvalidField},
		{4, "bad-time", obsync.CodeInvalidField},
		{5, "bad-year0", obsync.CodeInvalidField},
		{6, "bad-lat", obsync.CodeInvalidField},
		{7, "bad-nul-type", obsync.CodeInvalidField},
		{8, longID, obsync.CodeTooLarge},
		{9, "", obsync.CodeInvalidRecord},
		{11, "", obsync.CodeMissingField},
		{12, "bad\uFFFDid", obsync.CodeInvalidField}, // reported recognisably, but without the NUL
	}
	require.Len(t, res.FailedRecords, len(want), "%+v", res.FailedRecords)
	for i, w := range want {
		f := res.FailedRecords[i]
		require.Equal(t, w.index, f.Index)
		require.Equal(t, w.id, f.ObservationID, "index %d", w.index)
		require.Equal(t, w.code, f.Code, "index %d: %s", w.index, f.Error)
		require.NotEmpty(t, f.Error)
	}

	page, err := s.Pull(ctx, obsync.PullRequest{})
	require.NoError(t, err)
	require.False(t, page.HasMore)
	got := map[string]string{}
	for _, r := range page.Records {
		got[r.ObservationID] = string(r.Data)
	}
	require.Equal(t, map[string]string{
		"good-1":   `{"a":1}`,
		"good-nul": `{"note":"a\u0000b"}`,
		"good-2":   `{"b":[true,null]}`,
	}, got)
	for _, w := range want {
		if w.id == "" {
			continue
		}
		revs, cur, err := s.Revisions(ctx, w.id)
		require.NoError(t, err)
		require.Empty(t, revs, "a refused record leaves no history")
		require.Nil(t, cur)
	}
}

// TestConcurrentReplaysOfOneTransmission sends the same push from several goroutines at
// once, as a client retrying on a slow network does: every answer is the same and the
// records are stored once.
func TestConcurrentReplaysOfOneTransmission(t *testing.T) {
	t.Parallel()
	const senders = 6
	ctx := context.Background()
	s := obsync.NewService(widePool(t, senders+1), obsync.PolicyNewest)
	records := []json.RawMessage{
		rec("obs_1712345678901_1", "2025-12-01T10:00:00.000Z", `{"a":1}`),
		rec("obs_1712345678901_2", "2025-12-01T10:00:00.000Z", `{"b":2}`),
		json.RawMessage(`{"observation_id":"obs_bad"}`),
	}
	results := make([]obsync.PushResult, senders)
	errs := make([]error, senders)
	var wg sync.WaitGroup
	for i := range senders {
		wg.Go(func() {
			results[i], errs[i] = s.Push(ctx, obsync.PushRequest{ClientID: "formulus-1", TransmissionID: "q8w7e6r5t4y3u2i1", Records: records, Username: "u"})
		})
	}
	wg.Wait()
	for i := range senders {
		require.NoError(t, errs[i])
		require.Equal(t, results[0], results[i])
	}
	require.Equal(t, int64(2), results[0].CurrentVersion)
	require.Equal(t, 2, results[0].SuccessCount)
	require.Len(t, results[0].FailedRecords, 1)

	page, err := s.Pull(ctx, obsync.PullRequest{})
	require.NoError(t, err)
	require.Equal(t, int64(2), page.CurrentVersion)
	require.Len(t, page.Records, 2)
	revs, _, err := s.Revisions(ctx, "obs_1712345678901_1")
	require.NoError(t, err)
	require.Empty(t, revs)

	_, err = s.Push(ctx, obsync.PushRequest{ClientID: "formulus-1", TransmissionID: "q8w7e6r5t4y3u2i1", Records: records[:1], Username: "u"})
	require.ErrorIs(t, err, obsync.ErrTransmissionReused)
}
