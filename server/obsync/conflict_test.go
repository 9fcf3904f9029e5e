package obsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// rec is one observation as a client pushes it; extra holds further `"key": value` members.
func rec(id, updatedAt, data string, extra ...string) json.RawMessage {
	s := fmt.Sprintf(`{"observation_id":%q,"form_type":"household","form_version":"1","data":%s,`+
		`"created_at":"2025-01-01T00:00:00.000Z","updated_at":%q,"deleted":false`, id, data, updatedAt)
	for _, e := range extra {
		s += "," + e
	}
	return json.RawMessage(s + "}")
}

// syncFixture is a Service on a fresh database, with helpers that push under distinct
// transmissions and read the stored state.
type syncFixture struct {
	t   *testing.T
	svc *obsync.Service
	n   int
}

func newSyncFixture(t *testing.T, policy obsync.Policy) *syncFixture {
	t.Helper()
	return &syncFixture{t: t, svc: obsync.NewService(dbtest.NewDB(t), policy)}
}

func (f *syncFixture) push(records ...json.RawMessage) obsync.PushResult {
	f.t.Helper()
	f.n++
	res, err := f.svc.Push(context.Background(), obsync.PushRequest{
		ClientID: "client-1", TransmissionID: fmt.Sprintf("t%015d", f.n), Records: records, Username: "tester",
	})
	require.NoError(f.t, err)
	require.Empty(f.t, res.FailedRecords)
	return res
}

// current returns the stored state of an observation; the test fails when there is none.
func (f *syncFixture) current(id string) dbgen.Observation {
	f.t.Helper()
	_, cur, err := f.svc.Revisions(context.Background(), id)
	require.NoError(f.t, err)
	require.NotNil(f.t, cur, "observation %s is not stored", id)
	return *cur
}

func (f *syncFixture) history(id string) []dbgen.ObservationRevision {
	f.t.Helper()
	revs, _, err := f.svc.Revisions(context.Background(), id)
	require.NoError(f.t, err)
	return revs
}

const (
	t1 = "2025-03-01T10:00:00.000Z"
	t2 = "2025-03-01T11:00:00.000Z"
	t3 = "2025-03-01T12:00:00.000Z"
)

func requireConflictWarning(t *testing.T, res obsync.PushResult, id string) {
	t.Helper()
	require.Len(t, res.Warnings, 1, "warnings: %+v", res.Warnings)
	w := res.Warnings[0]
	require.Equal(t, id, w.ID)
	require.Equal(t, obsync.WarningConflict, w.Code)
	require.Contains(t, w.Message, id)
}

func TestNewestPolicy(t *testing.T) {
	t.Parallel()

	t.Run("a newer updated_at wins silently", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		first := f.push(rec("a", t1, `{"v":1}`))
		res := f.push(rec("a", t2, `{"v":2}`))
		require.Empty(t, res.Warnings)
		require.Equal(t, first.CurrentVersion+1, res.CurrentVersion)
		cur := f.current("a")
		require.JSONEq(t, `{"v":2}`, string(cur.Data))
		require.Equal(t, res.CurrentVersion, cur.Version)
		require.False(t, cur.Conflict)
		hist := f.history("a")
		require.Len(t, hist, 1)
		require.Equal(t, "superseded", hist[0].Status)
		require.Equal(t, first.CurrentVersion, *hist[0].Version)
		require.False(t, hist[0].Conflict)
		require.JSONEq(t, `{"v":1}`, string(hist[0].Data))
	})

	t.Run("an older updated_at is a conflict and the stored copy is kept", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		first := f.push(rec("a", t2, `{"v":"stored"}`))
		res := f.push(rec("a", t1, `{"v":"stale"}`))
		requireConflictWarning(t, res, "a")
		require.Equal(t, first.CurrentVersion, res.CurrentVersion, "a rejected write mints no version")
		require.Equal(t, 1, res.SuccessCount, "the record was received and kept in the history")
		cur := f.current("a")
		require.JSONEq(t, `{"v":"stored"}`, string(cur.Data))
		require.Equal(t, first.CurrentVersion, cur.Version)
		hist := f.history("a")
		require.Len(t, hist, 1)
		require.Equal(t, "rejected", hist[0].Status)
		require.True(t, hist[0].Conflict)
		require.Nil(t, hist[0].Version)
		require.JSONEq(t, `{"v":"stale"}`, string(hist[0].Data))
		require.Equal(t, t1, hist[0].UpdatedAtText)
	})

	t.Run("equal updated_at with other content has one winner whatever the order", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		x, y := `{"from":"x"}`, `{"from":"y"}`
		f.push(rec("xy", t1, x))
		resXY := f.push(rec("xy", t1, y))
		f.push(rec("yx", t1, y))
		resYX := f.push(rec("yx", t1, x))
		requireConflictWarning(t, resXY, "xy")
		requireConflictWarning(t, resYX, "yx")
		winXY, winYX := f.current("xy"), f.current("yx")
		require.Equal(t, string(winXY.Data), string(winYX.Data), "the winner must not depend on arrival order")
		for _, id := range []string{"xy", "yx"} {
			hist, cur := f.history(id), f.current(id)
			require.Len(t, hist, 1)
			require.True(t, cur.Conflict != hist[0].Conflict, "the revision that arrived second is marked as the conflict")
			require.NotEqual(t, string(cur.Data), string(hist[0].Data), "the loser is kept in the history")
		}
	})

	t.Run("a stale base_version is a conflict even with a newer updated_at", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		v1 := f.push(rec("a", t1, `{"v":1}`)).CurrentVersion
		v2 := f.push(rec("a", t2, `{"v":2}`)).CurrentVersion
		require.Greater(t, v2, v1)
		res := f.push(rec("a", t3, `{"v":"edited from v1"}`, fmt.Sprintf(`"base_version":%d`, v1)))
		requireConflictWarning(t, res, "a")
		cur := f.current("a")
		require.JSONEq(t, `{"v":"edited from v1"}`, string(cur.Data), "the newest copy still wins")
		require.True(t, cur.Conflict)
		require.Equal(t, v2+1, cur.Version)
		hist := f.history("a")
		require.Len(t, hist, 2)
		require.JSONEq(t, `{"v":2}`, string(hist[1].Data), "the replaced copy stays retrievable")
		require.Equal(t, "superseded", hist[1].Status)
	})

	t.Run("a current base_version with a newer updated_at is no conflict", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		v1 := f.push(rec("a", t1, `{"v":1}`)).CurrentVersion
		res := f.push(rec("a", t2, `{"v":2}`, fmt.Sprintf(`"base_version":%d`, v1)))
		require.Empty(t, res.Warnings)
		require.False(t, f.current("a").Conflict)
	})

	t.Run("identical content mints no version", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		first := f.push(rec("a", t1, `{"v": 1, "w": [1, 2]}`))
		res := f.push(rec("a", t1, `{"v": 1, "w": [1, 2]}`, `"base_version":0`))
		require.Empty(t, res.Warnings)
		require.Equal(t, first.CurrentVersion, res.CurrentVersion)
		require.Equal(t, 1, res.SuccessCount)
		require.Equal(t, first.CurrentVersion, f.current("a").Version)
		require.Empty(t, f.history("a"), "an unchanged record adds nothing to the history")
	})
}

func TestIncomingPolicy(t *testing.T) {
	t.Parallel()
	f := newSyncFixture(t, obsync.PolicyIncoming)
	v1 := f.push(rec("a", t2, `{"v":"stored"}`)).CurrentVersion
	res := f.push(rec("a", t1, `{"v":"older but last"}`))
	requireConflictWarning(t, res, "a")
	require.Equal(t, v1+1, res.CurrentVersion)
	cur := f.current("a")
	require.JSONEq(t, `{"v":"older but last"}`, string(cur.Data))
	require.True(t, cur.Conflict)
	hist := f.history("a")
	require.Len(t, hist, 1)
	require.Equal(t, "superseded", hist[0].Status)
	require.JSONEq(t, `{"v":"stored"}`, string(hist[0].Data))

	// a newer write is still no conflict
	res = f.push(rec("a", t3, `{"v":"newest"}`))
	require.Empty(t, res.Warnings)
	require.False(t, f.current("a").Conflict)
}

func TestStoredPolicy(t *testing.T) {
	t.Parallel()
	f := newSyncFixture(t, obsync.PolicyStored)
	v1 := f.push(rec("a", t2, `{"v":"stored"}`)).CurrentVersion

	for name, r := range map[string]json.RawMessage{
		"older updated_at":      rec("a", t1, `{"v":"older"}`),
		"equal updated_at":      rec("a", t2, `{"v":"same time"}`),
		"stale base_version":    rec("a", t3, `{"v":"newer but stale"}`, `"base_version":0`),
		"stale base, older too": rec("a", t1, `{"v":"old and stale"}`, `"base_version":0`),
	} {
		res := f.push(r)
		requireConflictWarning(t, res, "a")
		require.Equal(t, v1, res.CurrentVersion, name)
		require.JSONEq(t, `{"v":"stored"}`, string(f.current("a").Data), name)
	}
	hist := f.history("a")
	require.Len(t, hist, 4)
	for _, h := range hist {
		require.Equal(t, "rejected", h.Status)
		require.True(t, h.Conflict)
	}

	// an up-to-date newer write replaces the stored copy without a conflict
	res := f.push(rec("a", t3, `{"v":"newer"}`, fmt.Sprintf(`"base_version":%d`, v1)))
	require.Empty(t, res.Warnings)
	require.JSONEq(t, `{"v":"newer"}`, string(f.current("a").Data))
}

func TestParsePolicy(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"newest", "incoming", "stored"} {
		p, err := obsync.ParsePolicy(name)
		require.NoError(t, err)
		require.Equal(t, obsync.Policy(name), p)
	}
	_, err := obsync.ParsePolicy("last-writer")
	require.Error(t, err)
}

func TestDuplicatesInOnePush(t *testing.T) {
	t.Parallel()

	t.Run("a later copy supersedes an earlier one", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		res := f.push(rec("a", t1, `{"v":1}`), rec("b", t1, `{}`), rec("a", t2, `{"v":2}`))
		require.Empty(t, res.Warnings)
		require.Equal(t, 3, res.SuccessCount)
		require.Equal(t, int64(2), res.CurrentVersion, "one version per stored state")
		cur := f.current("a")
		require.JSONEq(t, `{"v":2}`, string(cur.Data))
		hist := f.history("a")
		require.Len(t, hist, 1)
		require.Equal(t, "superseded", hist[0].Status)
		require.JSONEq(t, `{"v":1}`, string(hist[0].Data))
		require.Equal(t, t1, hist[0].UpdatedAtText)
	})

	t.Run("a later but older copy loses to the earlier one", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		res := f.push(rec("a", t2, `{"v":"new"}`), rec("a", t1, `{"v":"old"}`))
		requireConflictWarning(t, res, "a")
		require.JSONEq(t, `{"v":"new"}`, string(f.current("a").Data))
		hist := f.history("a")
		require.Len(t, hist, 1)
		require.Equal(t, "rejected", hist[0].Status)
		require.JSONEq(t, `{"v":"old"}`, string(hist[0].Data))
	})

	t.Run("duplicates over a stored copy keep every state", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		v1 := f.push(rec("a", t1, `{"v":1}`)).CurrentVersion
		res := f.push(rec("a", t2, `{"v":2}`), rec("a", t3, `{"v":3}`))
		require.Empty(t, res.Warnings)
		require.Equal(t, v1+1, res.CurrentVersion)
		require.JSONEq(t, `{"v":3}`, string(f.current("a").Data))
		var data []string
		for _, h := range f.history("a") {
			require.Equal(t, "superseded", h.Status)
			data = append(data, string(h.Data))
		}
		require.ElementsMatch(t, []string{`{"v":1}`, `{"v":2}`}, data)
	})

	t.Run("identical duplicates store one state", func(t *testing.T) {
		t.Parallel()
		f := newSyncFixture(t, obsync.PolicyNewest)
		res := f.push(rec("a", t1, `{"v":1}`), rec("a", t1, `{"v":1}`))
		require.Empty(t, res.Warnings)
		require.Equal(t, int64(1), res.CurrentVersion)
		require.Empty(t, f.history("a"))
	})
}

// TestHistoryListsOldestFirst checks the order of the history when one push both replaces
// a stored state and leaves revisions of its own in the history: the stored state arrived
// first, then the push's records in push order.
func TestHistoryListsOldestFirst(t *testing.T) {
	t.Parallel()
	data := func(hist []dbgen.ObservationRevision) []string {
		out := make([]string, len(hist))
		for i, h := range hist {
			out[i] = h.Status + " " + string(h.Data)
		}
		return out
	}
	f := newSyncFixture(t, obsync.PolicyNewest)

	f.push(rec("a", t2, `{"v":"stored"}`))
	f.push(rec("a", t1, `{"v":"stale"}`), rec("a", t3, `{"v":"newest"}`))
	require.Equal(t, []string{`superseded {"v":"stored"}`, `rejected {"v":"stale"}`}, data(f.history("a")))

	f.push(rec("b", t1, `{"v":1}`))
	f.push(rec("b", t2, `{"v":2}`), rec("b", t3, `{"v":3}`))
	require.Equal(t, []string{`superseded {"v":1}`, `superseded {"v":2}`}, data(f.history("b")))

	f.push(rec("c", t1, `{"v":"stored"}`))
	f.push(rec("c", t3, `{"v":"newest"}`), rec("c", t2, `{"v":"between"}`))
	require.Equal(t, []string{`superseded {"v":"stored"}`, `rejected {"v":"between"}`}, data(f.history("c")))
}

// TestSubMicrosecondUpdatedAt covers updated_at values that differ below the microsecond
// PostgreSQL keeps: the newer write must win, whether the older copy is stored or was
// pushed in the same batch.
func TestSubMicrosecondUpdatedAt(t *testing.T) {
	t.Parallel()
	const (
		older = "2025-03-01T10:00:00.0000006Z" // stored as .000001 by timestamptz
		newer = "2025-03-01T10:00:00.0000008Z"
	)
	f := newSyncFixture(t, obsync.PolicyNewest)
	f.push(rec("a", older, `{"v":"older"}`))
	res := f.push(rec("a", newer, `{"v":"newer"}`))
	require.Empty(t, res.Warnings, "a newer write is no conflict")
	require.JSONEq(t, `{"v":"newer"}`, string(f.current("a").Data))
	require.Equal(t, newer, f.current("a").UpdatedAtText)

	f.push(rec("b", newer, `{"v":"newer"}`))
	res = f.push(rec("b", older, `{"v":"older"}`))
	requireConflictWarning(t, res, "b")
	require.JSONEq(t, `{"v":"newer"}`, string(f.current("b").Data), "an older write still loses")

	res = f.push(rec("c", newer, `{"v":"newer"}`), rec("c", older, `{"v":"older"}`))
	requireConflictWarning(t, res, "c")
	require.JSONEq(t, `{"v":"newer"}`, string(f.current("c").Data), "within one push too")
}
