package server_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// statsObservation is an observation of a form type created at a given time.
func statsObservation(id, formType, createdAt string, deleted bool) string {
	return fmt.Sprintf(`{"observation_id":%q,"form_type":%q,"form_version":"1","data":{},"created_at":%q,`+
		`"updated_at":"2025-12-01T10:00:00.000Z","deleted":%t}`, id, formType, createdAt, deleted)
}

func getStats(t *testing.T, env *servertest.Env, token string) api.ObservationStatsResponse {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/stats/observations", Token: token})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var out api.ObservationStatsResponse
	res.JSON(t, &out)
	return out
}

// requireDenseBuckets checks that the buckets run without a gap from rangeStart to rangeEnd.
func requireDenseBuckets(t *testing.T, tl api.ObservationTimeline, stepDays int) {
	t.Helper()
	require.NotEmpty(t, tl.Buckets)
	require.Equal(t, tl.RangeStart, tl.Buckets[0].BucketStart)
	require.Equal(t, tl.RangeEnd, tl.Buckets[len(tl.Buckets)-1].BucketStart)
	prev, err := time.Parse(time.DateOnly, tl.Buckets[0].BucketStart)
	require.NoError(t, err)
	require.Equal(t, prev.Format("Jan 2"), tl.Buckets[0].Label)
	for _, b := range tl.Buckets[1:] {
		d, err := time.Parse(time.DateOnly, b.BucketStart)
		require.NoError(t, err)
		require.Equal(t, prev.AddDate(0, 0, stepDays), d, "bucket after %s", prev.Format(time.DateOnly))
		require.Equal(t, d.Format("Jan 2"), b.Label)
		prev = d
	}
}

func bucketTotal(tl api.ObservationTimeline) int64 {
	var n int64
	for _, b := range tl.Buckets {
		n += b.Count
	}
	return n
}

func TestStatsWithoutData(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	stats := getStats(t, env, env.CreateUser("viewer", "read-only"))
	require.Equal(t, int64(0), stats.TotalCount)
	require.Empty(t, stats.ByFormType)
	require.NotNil(t, stats.Timeline.Buckets)
	require.Empty(t, stats.Timeline.Buckets)
	require.Equal(t, "", stats.Timeline.RangeStart)
	require.Equal(t, "", stats.Timeline.RangeEnd)
}

func TestStatsCountsLiveObservationsByTypeAndDay(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	dev.push(
		statsObservation("o1", "household", "2025-03-01T08:00:00.000Z", false),
		statsObservation("o2", "household", "2025-03-03T23:59:59.999Z", false),
		statsObservation("o3", "Visit", "2025-03-01T00:00:00.000+02:00", false), // 2025-02-28 in UTC
		statsObservation("o4", "", "2025-03-02T12:00:00.000Z", false),
		statsObservation("o5", "   ", "2025-03-02T12:00:00.000Z", false),
		statsObservation("o6", "visit", "2025-03-10T12:00:00.000Z", true), // deleted: not counted
		statsObservation("o7", "school", "2025-03-20T12:00:00.000Z", true),
	)

	stats := getStats(t, env, dev.token)
	require.Equal(t, int64(5), stats.TotalCount)
	require.Equal(t, []api.ObservationFormTypeCount{
		{FormType: "(no form type)", Count: 2},
		{FormType: "household", Count: 2},
		{FormType: "Visit", Count: 1},
	}, stats.ByFormType)

	tl := stats.Timeline
	require.Equal(t, api.ObservationTimelineBucketUnitDay, tl.BucketUnit)
	require.Equal(t, "2025-02-28", tl.RangeStart)
	require.Equal(t, "2025-03-03", tl.RangeEnd, "deleted observations do not stretch the range")
	requireDenseBuckets(t, tl, 1)
	counts := map[string]int64{}
	for _, b := range tl.Buckets {
		counts[b.BucketStart] = b.Count
	}
	require.Equal(t, map[string]int64{"2025-02-28": 1, "2025-03-01": 1, "2025-03-02": 2, "2025-03-03": 1}, counts)
	require.Equal(t, stats.TotalCount, bucketTotal(tl))
}

func TestStatsUsesWeeksForAYearOrMore(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	dev.push(
		statsObservation("o1", "household", "2024-01-03T10:00:00.000Z", false), // a Wednesday
		statsObservation("o2", "household", "2025-01-10T10:00:00.000Z", false),
	)
	tl := getStats(t, env, dev.token).Timeline
	require.Equal(t, api.ObservationTimelineBucketUnitWeek, tl.BucketUnit)
	require.Equal(t, "2024-01-01", tl.RangeStart, "weeks start on Monday")
	requireDenseBuckets(t, tl, 7)
	for _, b := range tl.Buckets {
		d, _ := time.Parse(time.DateOnly, b.BucketStart)
		require.Equal(t, time.Monday, d.Weekday())
	}
	require.Equal(t, int64(1), tl.Buckets[0].Count)
	require.Equal(t, int64(1), tl.Buckets[len(tl.Buckets)-1].Count)
	require.Equal(t, int64(2), bucketTotal(tl))
}

func TestStatsStaySmallForWrongDeviceClocks(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	dev.push(
		statsObservation("o1", "household", "0001-01-01T00:00:00.000Z", false),
		statsObservation("o2", "household", "9999-12-31T23:59:59.999Z", false),
		statsObservation("o3", "household", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), false),
	)
	stats := getStats(t, env, dev.token)
	tomorrow := time.Now().UTC().AddDate(0, 0, 1).Format(time.DateOnly)
	require.Equal(t, int64(3), stats.TotalCount)
	tl := stats.Timeline
	require.LessOrEqual(t, len(tl.Buckets), 600)
	require.LessOrEqual(t, tl.RangeEnd, tomorrow, "the timeline never runs into the future")
	require.Equal(t, api.ObservationTimelineBucketUnitWeek, tl.BucketUnit)
	requireDenseBuckets(t, tl, 7)
	require.Equal(t, int64(1), bucketTotal(tl), "only the observation inside the range is in a bucket")
}
