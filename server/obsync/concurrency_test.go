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
func widePool(t testing.TB, conns int32) *pgxpool.Pool {
	t.Helper()
	return poolOn(t, dbtest.NewDBURL(t), conns)
}

// poolOn is a pool of conns connections on the database at url: each is what one server
// process would have.
func poolOn(t testing.TB, url string, conns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
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

// proof is one run of the concurrency proof: several server processes' worth of pushers
// (each process an obsync.Service on a pool of its own, its pushes written in groups),
// an admin retrying quarantined records through another process meanwhile, and pullers
// following the change stream with a small page size. At the end every puller is compared
// with what is stored.
type proof struct {
	processes     int
	pushersEach   int
	pushesEach    int
	pullerCount   int
	breakOrdering bool // hand out versions outside the write lock (obsync.BreakOrdering)

	pushErrs, pullErrs []error
	pullers            []*puller
	stored             map[string]seenState
	maxVersion         int64
	currentVersion     int64
	retried            int
	pushes, commits    int // pushes answered, and the transactions that stored their receipts
	missed, stale      int // observations, over all pullers
	unknown            int
	summaries          []string // of what each puller got wrong
}

func (pr *proof) run(t *testing.T) {
	const (
		pageLimit     = 3
		sharedIDs     = 40
		maxBatchSize  = 5
		deleteOneInto = 10
		badOneInto    = 15 // records without data, quarantined, then retried by the admin
	)
	ctx := context.Background()
	url := dbtest.NewDBURL(t)
	procs := make([]*obsync.Service, pr.processes)
	for i := range procs {
		procs[i] = obsync.NewService(poolOn(t, url, int32(pr.pushersEach)+2), obsync.PolicyNewest)
		if pr.breakOrdering {
			rng := rand.New(rand.NewPCG(uint64(i), 7))
			var mu sync.Mutex
			obsync.BreakOrdering(procs[i], func() {
				mu.Lock()
				d := time.Duration(rng.IntN(4000)) * time.Microsecond
				mu.Unlock()
				time.Sleep(d)
			})
		}
	}
	pullPool := poolOn(t, url, int32(pr.pullerCount)+2)
	readers := obsync.NewService(pullPool, obsync.PolicyNewest)

	// updated_at comes from one clock shared by the pushers, so that later writes usually
	// win; a pusher that stamped before another but commits after it loses a conflict,
	// which must not disturb pulls either.
	base := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	var clock atomic.Int64
	var pushWG sync.WaitGroup
	var errMu sync.Mutex
	fail := func(list *[]error, err error) {
		errMu.Lock()
		defer errMu.Unlock()
		*list = append(*list, err)
	}
	var answered atomic.Int64
	for p := range pr.processes * pr.pushersEach {
		svc := procs[p%pr.processes]
		pushWG.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(p), 42))
			for i := range pr.pushesEach {
				n := 1 + rng.IntN(maxBatchSize)
				records := make([]json.RawMessage, n)
				bad := 0
				for k := range records {
					id := fmt.Sprintf("obs_%d%03d%d_%d", p, i, k, rng.IntN(10000)) // new, written once
					if rng.IntN(3) > 0 {
						id = fmt.Sprintf("obs_shared_%d", rng.IntN(sharedIDs)) // overlapping between pushers
					}
					ts := base.Add(time.Duration(clock.Add(1)) * time.Millisecond).Format("2006-01-02T15:04:05.000Z")
					data := fmt.Sprintf(`"data":{"pusher": %d, "push": %d, "k": %d},`, p, i, k)
					if rng.IntN(badOneInto) == 0 {
						data = "" // quarantined: the admin adds the data back
						bad++
					}
					records[k] = json.RawMessage(fmt.Sprintf(
						`{"observation_id":%q,"form_type":"form_%d","form_version":"1",%s`+
							`"created_at":"2025-06-01T08:00:00.000Z","updated_at":%q,"deleted":%t}`,
						id, k%2, data, ts, rng.IntN(deleteOneInto) == 0))
				}
				res, err := svc.Push(ctx, obsync.PushRequest{
					ClientID: fmt.Sprintf("pusher-%d", p), TransmissionID: fmt.Sprintf("%016d", i), Records: records, Username: "u",
				})
				if err != nil {
					fail(&pr.pushErrs, fmt.Errorf("pusher %d push %d: %w", p, i, err))
					return
				}
				if len(res.FailedRecords) != bad || res.SuccessCount != n-bad {
					fail(&pr.pushErrs, fmt.Errorf("pusher %d push %d: %d bad records, answer %+v", p, i, bad, res))
					return
				}
				answered.Add(1)
			}
		})
	}

	// The admin retries quarantined records, with the data added back, through the normal
	// write path of another process (a transaction of its own under the same lock).
	var pushersDone atomic.Bool
	admin := procs[len(procs)-1]
	retryAll := func() error {
		rows, _, err := admin.ListQuarantine(ctx, obsync.QuarantineFilter{Limit: obsync.MaxQuarantineLimit})
		if err != nil {
			return err
		}
		for _, row := range rows {
			q, err := admin.Quarantined(ctx, row.ID)
			if err != nil {
				return err
			}
			fixed := strings.Replace(string(q.Raw), `"form_version":"1",`, `"form_version":"1","data":{"retried":true},`, 1)
			if _, err := admin.RetryQuarantined(ctx, row.ID, json.RawMessage(fixed), "admin"); err != nil {
				return fmt.Errorf("retrying quarantined record %d: %w", row.ID, err)
			}
			pr.retried++
		}
		return nil
	}
	adminDone := make(chan error, 1)
	go func() {
		for !pushersDone.Load() {
			if err := retryAll(); err != nil {
				adminDone <- err
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		adminDone <- retryAll() // what the last pushes quarantined
	}()

	var allDone atomic.Bool
	ps := make([]*puller, pr.pullerCount)
	var pullWG sync.WaitGroup
	for i := range ps {
		ps[i] = &puller{svc: readers, limit: pageLimit, seen: make(map[string]seenState)}
		pullWG.Go(func() {
			for {
				last := allDone.Load() // a pass that starts after all writes ended sees everything
				if err := ps[i].syncToEnd(ctx); err != nil {
					fail(&pr.pullErrs, err)
					return
				}
				if last || len(ps[i].violations) > 0 {
					return
				}
			}
		})
	}
	pushWG.Wait()
	pushersDone.Store(true)
	if err := <-adminDone; err != nil {
		fail(&pr.pushErrs, err)
	}
	allDone.Store(true)
	pullWG.Wait()
	pr.pushes = int(answered.Load())
	pr.pullers = ps

	rows, err := pullPool.Query(ctx, `SELECT observation_id, version, form_type, data::text, updated_at_text, deleted FROM observations`)
	require.NoError(t, err)
	pr.stored = make(map[string]seenState)
	for rows.Next() {
		var id string
		var s seenState
		require.NoError(t, rows.Scan(&id, &s.Version, &s.FormType, &s.Data, &s.UpdatedAt, &s.Deleted))
		pr.stored[id] = s
		pr.maxVersion = max(pr.maxVersion, s.Version)
	}
	require.NoError(t, rows.Err())
	require.NoError(t, pullPool.QueryRow(ctx, `SELECT current_version FROM sync_state`).Scan(&pr.currentVersion))
	require.NoError(t, pullPool.QueryRow(ctx, `SELECT count(*), count(DISTINCT xmin::text) FROM push_receipts`).Scan(new(int), &pr.commits))

	for i, p := range ps {
		require.NoError(t, p.syncToEnd(ctx), "final pull of puller %d", i)
		var missed, stale, unknown []string
		for id, want := range pr.stored {
			got, ok := p.seen[id]
			switch {
			case !ok:
				missed = append(missed, id)
			case got != want:
				stale = append(stale, fmt.Sprintf("%s: saw %+v, stored %+v", id, got, want))
			}
		}
		for id := range p.seen {
			if _, ok := pr.stored[id]; !ok {
				unknown = append(unknown, id)
			}
		}
		pr.missed, pr.stale, pr.unknown = pr.missed+len(missed), pr.stale+len(stale), pr.unknown+len(unknown)
		pr.summaries = append(pr.summaries, fmt.Sprintf("puller %d: missed %v, stale %v, unknown %v, violations %v",
			i, sample(missed), sample(stale), sample(unknown), p.violations))
		t.Logf("puller %d: %d pages (%d with has_more), %d observations, cursor %d, missed %d, stale %d",
			i, p.pages, p.morePages, len(p.seen), p.cursor, len(missed), len(stale))
	}
	t.Logf("%d pushes written in %d transactions by %d processes; %d quarantined records retried", pr.pushes, pr.commits, pr.processes, pr.retried)
}

// TestConcurrentPushesNeverHideFromPulls proves that no pull misses a committed change
// while several processes write concurrently: their pushers write new and overlapping
// observations in many small batches, grouped per process, an admin stores quarantined
// records in between, and pullers follow the stream with a small page size; at the end
// every puller holds exactly the stored state of every observation.
func TestConcurrentPushesNeverHideFromPulls(t *testing.T) {
	t.Parallel()
	pr := &proof{processes: 3, pushersEach: 3, pushesEach: 35, pullerCount: 3}
	pr.run(t)
	require.Empty(t, pr.pushErrs)
	require.Empty(t, pr.pullErrs)
	require.Equal(t, pr.processes*pr.pushersEach*pr.pushesEach, pr.pushes)
	require.NotEmpty(t, pr.stored)
	require.Positive(t, pr.retried, "the admin retried records while the pushers ran")
	require.Less(t, pr.commits, pr.pushes, "pushes shared commits")
	for i, p := range pr.pullers {
		require.Empty(t, p.violations, "puller %d", i)
		require.Equal(t, pr.currentVersion, p.cursor, "puller %d ends at the current version", i)
		require.Equal(t, pr.maxVersion, pr.currentVersion, "only observations take versions here")
		require.Positive(t, p.morePages, "puller %d never saw a page with has_more", i)
	}
	require.Zero(t, pr.missed+pr.stale+pr.unknown, "%s", strings.Join(pr.summaries, "\n"))
}

// TestConcurrencyProofCatchesBrokenOrdering runs the same proof with versions handed out
// outside the write lock, so that they no longer become visible in commit order: the proof
// must see pullers miss changes, or it proves nothing.
func TestConcurrencyProofCatchesBrokenOrdering(t *testing.T) {
	t.Parallel()
	pr := &proof{processes: 3, pushersEach: 3, pushesEach: 35, pullerCount: 3, breakOrdering: true}
	pr.run(t)
	require.Empty(t, pr.pushErrs, "breaking the order costs no push")
	require.Empty(t, pr.pullErrs)
	require.Positive(t, pr.missed+pr.stale, "pullers missed changes")
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
