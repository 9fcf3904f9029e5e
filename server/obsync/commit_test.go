package obsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// holdLock runs sql (which takes a lock) in a transaction of its own connection and
// returns the function that commits it, releasing the lock.
func holdLock(t *testing.T, pool *pgxpool.Pool, sql string) (release func()) {
	t.Helper()
	ctx := context.Background()
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, sql)
	require.NoError(t, err)
	released := false
	release = func() {
		if !released {
			released = true
			require.NoError(t, tx.Commit(ctx))
		}
	}
	t.Cleanup(release)
	return release
}

// holdWriteLock takes the write lock the pushes' groups take.
func holdWriteLock(t *testing.T, pool *pgxpool.Pool) (release func()) {
	return holdLock(t, pool, "SELECT 1 FROM sync_state WHERE id = 1 FOR UPDATE")
}

// waitForLockWaits waits until n sessions of the database wait for a lock.
func waitForLockWaits(t *testing.T, pool *pgxpool.Pool, n int) {
	t.Helper()
	require.Eventually(t, func() bool {
		var waiting int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&waiting)
		return err == nil && waiting == n
	}, 10*time.Second, 5*time.Millisecond)
}

// pushed is the outcome of a push started in the background.
type pushed struct {
	res obsync.PushResult
	err error
}

// startPush pushes in the background.
func startPush(ctx context.Context, s *obsync.Service, req obsync.PushRequest) <-chan pushed {
	out := make(chan pushed, 1)
	go func() {
		res, err := s.Push(ctx, req)
		out <- pushed{res, err}
	}()
	return out
}

// queuePushes starts the pushes one after another, each once the previous one waits in
// the queue of s behind a group that is being written, so that they arrive in this order.
func queuePushes(t *testing.T, s *obsync.Service, reqs ...obsync.PushRequest) []<-chan pushed {
	t.Helper()
	outs := make([]<-chan pushed, len(reqs))
	for i, req := range reqs {
		outs[i] = startPush(context.Background(), s, req)
		require.Eventually(t, func() bool { return obsync.QueueLen(s) == i+1 }, 10*time.Second, time.Millisecond)
	}
	return outs
}

func pushReq(client, tid string, records ...json.RawMessage) obsync.PushRequest {
	return obsync.PushRequest{ClientID: client, TransmissionID: tid, Records: records, Username: "u"}
}

// receiptTransactions returns, by transmission id, the transaction that stored each
// push's receipt: pushes written together share one.
func receiptTransactions(t *testing.T, pool *pgxpool.Pool) map[string]string {
	t.Helper()
	rows, err := pool.Query(context.Background(), "SELECT transmission_id, xmin::text FROM push_receipts")
	require.NoError(t, err)
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) ([2]string, error) {
		var kv [2]string
		return kv, r.Scan(&kv[0], &kv[1])
	})
	require.NoError(t, err)
	m := map[string]string{}
	for _, kv := range out {
		m[kv[0]] = kv[1]
	}
	return m
}

// TestPushesThatArriveDuringAWriteShareTheNextCommit lines up pushes behind a group that
// waits for the write lock. They are written together, in one transaction, and each is
// decided as if the ones before it had committed on their own: versions follow in arrival
// order, a stale copy loses against the state an earlier push of the group left, a replay
// in the same group gets the first answer, a reused transmission id and an outdated
// repository generation are refused without costing the others anything.
func TestPushesThatArriveDuringAWriteShareTheNextCommit(t *testing.T) {
	t.Parallel()
	pool := widePool(t, 14)
	s := obsync.NewService(pool, obsync.PolicyNewest)
	release := holdWriteLock(t, pool)
	first := startPush(context.Background(), s, pushReq("c0", "t0", rec("a", "2025-12-01T10:00:00.000Z", `{"n":0}`)))
	waitForLockWaits(t, pool, 1)

	stale := 7
	p1 := pushReq("c1", "t1", rec("a", "2025-12-01T10:02:00.000Z", `{"n":1}`), rec("b", "2025-12-01T10:00:00.000Z", `{}`))
	outs := queuePushes(t, s,
		p1,
		pushReq("c2", "t2", rec("a", "2025-12-01T10:01:00.000Z", `{"n":2}`), rec("c", "2025-12-01T10:00:00.000Z", `{}`)),
		p1, // a retry of p1 that arrives before p1 was answered
		pushReq("c1", "t1", rec("z", "2025-12-01T10:00:00.000Z", `{}`)),
		obsync.PushRequest{ClientID: "c3", TransmissionID: "t5", Generation: new(int64(stale)), Username: "u",
			Records: []json.RawMessage{rec("y", "2025-12-01T10:00:00.000Z", `{}`)}},
		pushReq("c4", "t6", rec("d", "2025-12-01T10:00:00.000Z", `{}`), json.RawMessage(`{"observation_id":"bad"}`)),
		pushReq("c5", "t7", rec("e", "2025-12-01T10:00:00.000Z", `{}`)),
	)
	release()
	got := make([]pushed, len(outs))
	for i, out := range outs {
		got[i] = <-out
	}
	r0 := <-first
	require.NoError(t, r0.err)
	require.Equal(t, int64(1), r0.res.CurrentVersion)

	require.NoError(t, got[0].err)
	require.Equal(t, int64(3), got[0].res.CurrentVersion, "a and b follow the first push")
	require.Equal(t, 2, got[0].res.SuccessCount)
	require.Empty(t, got[0].res.Warnings)

	require.NoError(t, got[1].err)
	require.Equal(t, int64(4), got[1].res.CurrentVersion, "only c gets a version: a lost")
	require.Len(t, got[1].res.Warnings, 1)
	require.Equal(t, "a", got[1].res.Warnings[0].ID)
	require.Contains(t, got[1].res.Warnings[0].Message, "stored version 2", "decided against the state the push before it left")

	require.NoError(t, got[2].err)
	require.Equal(t, got[0].res, got[2].res, "a replay in the same group gets the first answer")
	require.ErrorIs(t, got[3].err, obsync.ErrTransmissionReused)
	var mismatch *obsync.GenerationMismatchError
	require.ErrorAs(t, got[4].err, &mismatch)
	require.Equal(t, int64(stale), mismatch.Client)

	require.NoError(t, got[5].err)
	require.Equal(t, int64(5), got[5].res.CurrentVersion)
	require.Equal(t, 1, got[5].res.SuccessCount)
	require.Len(t, got[5].res.FailedRecords, 1)
	require.NoError(t, got[6].err)
	require.Equal(t, int64(6), got[6].res.CurrentVersion)

	page, err := s.Pull(context.Background(), obsync.PullRequest{})
	require.NoError(t, err)
	versions := map[string]int64{}
	for _, r := range page.Records {
		versions[r.ObservationID] = r.Version
	}
	require.Equal(t, map[string]int64{"a": 2, "b": 3, "c": 4, "d": 5, "e": 6}, versions)
	require.Equal(t, int64(6), page.CurrentVersion)

	revs, cur, err := s.Revisions(context.Background(), "a")
	require.NoError(t, err)
	require.Equal(t, `{"n":1}`, string(cur.Data))
	require.Len(t, revs, 2)
	require.Equal(t, "superseded", revs[0].Status)
	require.Equal(t, int64(1), *revs[0].Version)
	require.Equal(t, "rejected", revs[1].Status)
	require.Equal(t, `{"n":2}`, string(revs[1].Data))
	require.Equal(t, "t2", revs[1].TransmissionID)

	quarantined, _, err := s.ListQuarantine(context.Background(), obsync.QuarantineFilter{})
	require.NoError(t, err)
	require.Len(t, quarantined, 1)
	require.Equal(t, "t6", quarantined[0].TransmissionID)

	txs := receiptTransactions(t, pool)
	require.Len(t, txs, 5, "a receipt for each push that was written: t0, t1, t2, t6, t7")
	require.NotEqual(t, txs["t0"], txs["t1"])
	for _, tid := range []string{"t2", "t6", "t7"} {
		require.Equal(t, txs["t1"], txs[tid], "%s was written with t1", tid)
	}
}

// TestARecordTheDatabaseRefusesCostsOnlyItselfInAGroup groups a push holding a record that
// PostgreSQL refuses (a CHECK constraint added for the test) with others: the group's
// write fails, its pushes are written one by one, and only that record is quarantined.
func TestARecordTheDatabaseRefusesCostsOnlyItselfInAGroup(t *testing.T) {
	t.Parallel()
	pool := widePool(t, 10)
	_, err := pool.Exec(context.Background(), `ALTER TABLE observations ADD CONSTRAINT no_poison CHECK (form_type <> 'poison')`)
	require.NoError(t, err)
	s := obsync.NewService(pool, obsync.PolicyNewest)
	poison := json.RawMessage(`{"observation_id":"p","form_type":"poison","form_version":"1","data":{},
		"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","deleted":false}`)

	release := holdWriteLock(t, pool)
	first := startPush(context.Background(), s, pushReq("c0", "t0", rec("a", "2025-12-01T10:00:00.000Z", `{}`)))
	waitForLockWaits(t, pool, 1)
	outs := queuePushes(t, s,
		pushReq("c1", "t1", rec("b", "2025-12-01T10:00:00.000Z", `{}`)),
		pushReq("c2", "t2", rec("c", "2025-12-01T10:00:00.000Z", `{}`), poison, rec("d", "2025-12-01T10:00:00.000Z", `{}`)),
		pushReq("c3", "t3", rec("e", "2025-12-01T10:00:00.000Z", `{}`)),
	)
	release()
	require.NoError(t, (<-first).err)
	var results []obsync.PushResult
	for _, out := range outs {
		r := <-out
		require.NoError(t, r.err)
		results = append(results, r.res)
	}
	require.Equal(t, 1, results[0].SuccessCount)
	require.Empty(t, results[0].FailedRecords)
	require.Equal(t, 2, results[1].SuccessCount)
	require.Equal(t, []obsync.FailedRecord{{Index: 1, ObservationID: "p", Code: obsync.CodeRefused, Error: results[1].FailedRecords[0].Error}},
		results[1].FailedRecords)
	require.Equal(t, 1, results[2].SuccessCount)

	page, err := s.Pull(context.Background(), obsync.PullRequest{})
	require.NoError(t, err)
	var ids []string
	for _, r := range page.Records {
		ids = append(ids, r.ObservationID)
	}
	require.ElementsMatch(t, []string{"a", "b", "c", "d", "e"}, ids)
	quarantined, _, err := s.ListQuarantine(context.Background(), obsync.QuarantineFilter{})
	require.NoError(t, err)
	require.Len(t, quarantined, 1)
	require.Equal(t, obsync.CodeRefused, quarantined[0].Code)
}

// TestAPushWhoseClientLeftBeforeItsGroupIsNotWritten: a push that still waits in the queue
// when its context ends leaves it and writes nothing, and so does a group whose every
// client left before it committed. A client that retries such a push stores it then.
func TestAPushWhoseClientLeftBeforeItsGroupIsNotWritten(t *testing.T) {
	t.Parallel()
	pool := widePool(t, 10)
	s := obsync.NewService(pool, obsync.PolicyNewest)
	release := holdWriteLock(t, pool)
	ctx0, cancel0 := context.WithCancel(context.Background())
	first := startPush(ctx0, s, pushReq("c0", "t0", rec("a", "2025-12-01T10:00:00.000Z", `{}`)))
	waitForLockWaits(t, pool, 1)
	ctx1, cancel1 := context.WithCancel(context.Background())
	// Larger than a chunk, so that it waits staged in push_staging.
	big := fmt.Sprintf(`{"note":%q}`, strings.Repeat("x", 300<<10))
	queued := startPush(ctx1, s, pushReq("c1", "t1", rec("b", "2025-12-01T10:00:00.000Z", big)))
	require.Eventually(t, func() bool { return obsync.QueueLen(s) == 1 }, 10*time.Second, time.Millisecond)
	var staged int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM push_staging").Scan(&staged))
	require.NotZero(t, staged, "the queued push waits staged")

	cancel1()
	require.ErrorIs(t, (<-queued).err, context.Canceled, "it leaves the queue at once")
	require.Zero(t, obsync.QueueLen(s))
	cancel0()
	require.Error(t, (<-first).err, "its group had no other push waiting: it was abandoned")
	release()

	page, err := s.Pull(context.Background(), obsync.PullRequest{})
	require.NoError(t, err)
	require.Empty(t, page.Records)
	require.Empty(t, receiptTransactions(t, pool))
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM push_staging").Scan(&staged))
	require.Zero(t, staged, "the pushes removed what they staged")

	res, err := s.Push(context.Background(), pushReq("c1", "t1", rec("b", "2025-12-01T10:00:00.000Z", `{}`)))
	require.NoError(t, err)
	require.Equal(t, int64(1), res.CurrentVersion)
}

// TestAPushWhoseClientLeftIsWrittenWithItsGroup: once a push's group is being written, the
// push is written with the others although its client went away, and the receipt keeps
// its answer for the client's retry.
func TestAPushWhoseClientLeftIsWrittenWithItsGroup(t *testing.T) {
	t.Parallel()
	pool := widePool(t, 10)
	s := obsync.NewService(pool, obsync.PolicyNewest)
	release := holdWriteLock(t, pool)
	// A push with an outdated generation writes nothing: its group takes the lock and
	// commits without touching push_receipts, which the test locks next.
	first := startPush(context.Background(), s, obsync.PushRequest{ClientID: "c0", TransmissionID: "t0", Generation: new(int64(9)),
		Username: "u", Records: []json.RawMessage{rec("x", "2025-12-01T10:00:00.000Z", `{}`)}})
	waitForLockWaits(t, pool, 1)
	ctx1, cancel1 := context.WithCancel(context.Background())
	gone := startPush(ctx1, s, pushReq("c1", "t1", rec("a", "2025-12-01T10:00:00.000Z", `{}`)))
	require.Eventually(t, func() bool { return obsync.QueueLen(s) == 1 }, 10*time.Second, time.Millisecond)
	stays := startPush(context.Background(), s, pushReq("c2", "t2", rec("b", "2025-12-01T10:00:00.000Z", `{}`)))
	require.Eventually(t, func() bool { return obsync.QueueLen(s) == 2 }, 10*time.Second, time.Millisecond)

	receiptsLocked := holdLock(t, pool, "LOCK TABLE push_receipts IN EXCLUSIVE MODE")
	release()
	var mismatch *obsync.GenerationMismatchError
	require.ErrorAs(t, (<-first).err, &mismatch)
	waitForLockWaits(t, pool, 1) // the next group, both pushes, waits to store its receipts
	require.Zero(t, obsync.QueueLen(s))
	cancel1()
	receiptsLocked()

	r1, r2 := <-gone, <-stays
	require.NoError(t, r1.err, "written with its group")
	require.NoError(t, r2.err)
	require.Equal(t, int64(1), r1.res.CurrentVersion)
	require.Equal(t, int64(2), r2.res.CurrentVersion)
	retry, err := s.Push(context.Background(), pushReq("c1", "t1", rec("a", "2025-12-01T10:00:00.000Z", `{}`)))
	require.NoError(t, err)
	require.Equal(t, r1.res, retry)
	txs := receiptTransactions(t, pool)
	require.Equal(t, txs["t1"], txs["t2"])
	require.Len(t, txs, 2, fmt.Sprint(txs))
}

// TestAGroupThatWaitedForTheLockDecidesOnWhatTheOtherProcessWrote: two processes push the
// same observation while a third holds the write lock. The group that gets the lock second
// read the stored state before the first one committed; it must read it again, under the
// lock, and find the newer copy the first one stored: its own older copy loses.
func TestAGroupThatWaitedForTheLockDecidesOnWhatTheOtherProcessWrote(t *testing.T) {
	t.Parallel()
	url := dbtest.NewDBURL(t)
	pool := poolOn(t, url, 4)
	first, second := obsync.NewService(poolOn(t, url, 4), obsync.PolicyNewest), obsync.NewService(poolOn(t, url, 4), obsync.PolicyNewest)
	release := holdWriteLock(t, pool)
	newer := startPush(context.Background(), first, pushReq("c1", "t1", rec("x", "2025-12-01T10:05:00.000Z", `{"copy":"newer"}`)))
	waitForLockWaits(t, pool, 1)
	older := startPush(context.Background(), second, pushReq("c2", "t2", rec("x", "2025-12-01T10:00:00.000Z", `{"copy":"older"}`),
		rec("y", "2025-12-01T10:00:00.000Z", `{}`)))
	waitForLockWaits(t, pool, 2)
	release()

	n, o := <-newer, <-older
	require.NoError(t, n.err)
	require.NoError(t, o.err)
	require.Equal(t, int64(1), n.res.CurrentVersion, "the first in the lock's queue writes first")
	require.Equal(t, int64(2), o.res.CurrentVersion, "only y gets a version")
	require.Len(t, o.res.Warnings, 1)
	require.Contains(t, o.res.Warnings[0].Message, "stored version 1")
	_, cur, err := first.Revisions(context.Background(), "x")
	require.NoError(t, err)
	require.Equal(t, `{"copy":"newer"}`, string(cur.Data))
}

// TestAStagedAndAnInMemoryPushShareAGroup writes, in one group, a push too large to be held
// in memory (its records are staged in push_staging) and small ones (held in memory and
// sent with the write): every value of every record reads back as it was sent, nulls and
// all, and the records that cannot be stored are quarantined byte for byte.
func TestAStagedAndAnInMemoryPushShareAGroup(t *testing.T) {
	t.Parallel()
	pool := widePool(t, 8)
	s := obsync.NewService(pool, obsync.PolicyNewest)
	release := holdWriteLock(t, pool)
	first := startPush(context.Background(), s, pushReq("c0", "t0", rec("x", "2025-12-01T10:00:00.000Z", `{}`)))
	waitForLockWaits(t, pool, 1)

	big := fmt.Sprintf(`{"photo_note":%q,"n":1.50}`, strings.Repeat("é", 100<<10))
	full := []string{`"author":"ana"`, `"device_id":"dev-1"`, `"tags":["a","b \"quoted\""]`,
		`"geolocation":{"latitude":1.5,"longitude":-2,"accuracy":-1,"heading":90}`, `"app_build":"7"`}
	bad := json.RawMessage(`{"observation_id":"bad","data":"not an object"}`)
	large := pushReq("c1", "t1",
		rec("l1", "2025-12-01T10:00:00.000Z", big, full...),
		rec("l2", "2025-12-01T10:00:00.000Z", big, `"tags":[]`, `"author":null`),
		bad,
		rec("l3", "2025-12-01T10:00:00.000Z", big))
	small := pushReq("c2", "t2",
		rec("s1", "2025-12-01T10:00:00.000Z", `{"n":1.50,"nested":{"k":[1,"2",null]}}`, full...),
		bad,
		rec("s2", "2025-12-01T10:00:00.000Z", `{}`, `"tags":[]`, `"author":null`),
		rec("l1", "2025-12-01T11:00:00.000Z", `{"replaced":true}`, `"device_id":"dev-2"`))
	outs := queuePushes(t, s, large, small)
	var waiting int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM push_staging").Scan(&waiting))
	require.NotZero(t, waiting, "the large push waits staged")
	release()
	require.NoError(t, (<-first).err)
	for _, out := range outs {
		got := <-out
		require.NoError(t, got.err)
		require.Len(t, got.res.FailedRecords, 1)
	}
	txs := receiptTransactions(t, pool)
	require.Equal(t, txs["t1"], txs["t2"], "the two pushes were written together")
	var staged int
	require.NoError(t, pool.QueryRow(context.Background(), "SELECT count(*) FROM push_staging").Scan(&staged))
	require.Zero(t, staged, "the staged records were removed")

	page, err := s.Pull(context.Background(), obsync.PullRequest{})
	require.NoError(t, err)
	stored := map[string]obsync.PulledRecord{}
	for _, r := range page.Records {
		stored[r.ObservationID] = r
	}
	require.Len(t, stored, 6)
	for _, id := range []string{"l2", "l3"} {
		require.Equal(t, big, string(stored[id].Data), id)
	}
	r := stored["s1"]
	require.Equal(t, `{"n":1.50,"nested":{"k":[1,"2",null]}}`, string(r.Data))
	require.Equal(t, "ana", *r.Author)
	require.Equal(t, "dev-1", *r.DeviceID)
	require.Equal(t, []string{"a", `b "quoted"`}, r.Tags)
	require.Equal(t, `{"latitude":1.5,"longitude":-2,"accuracy":-1,"heading":90}`, string(r.Geolocation))

	for _, id := range []string{"s2", "l2"} {
		r := stored[id]
		require.Nil(t, r.Author, id)
		require.Nil(t, r.DeviceID, id)
		require.NotNil(t, r.Tags, id)
		require.Empty(t, r.Tags, id)
		require.Nil(t, r.Geolocation, id)
	}
	require.Nil(t, stored["l3"].Tags, "no tags sent")
	require.Equal(t, `{"replaced":true}`, string(stored["l1"].Data), "the small push replaced what the large one wrote")
	require.Equal(t, "dev-2", *stored["l1"].DeviceID)

	revs, _, err := s.Revisions(context.Background(), "l1")
	require.NoError(t, err)
	require.Len(t, revs, 1)
	require.Equal(t, big, string(revs[0].Data), "the large push's copy went to the history")
	require.Equal(t, "ana", *revs[0].Author)

	quarantined, _, err := s.ListQuarantine(context.Background(), obsync.QuarantineFilter{})
	require.NoError(t, err)
	require.Len(t, quarantined, 2)
	for _, q := range quarantined {
		row, err := s.Quarantined(context.Background(), q.ID)
		require.NoError(t, err)
		require.Equal(t, string(bad), string(row.Raw), q.TransmissionID)
	}
}
