package server_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/servertest"
)

func resetRepository(env *servertest.Env, token string, body any) *servertest.Response {
	return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/admin/repository/reset", Token: token, Body: body})
}

// requireResetRequired checks the answer a client with data from another generation gets.
func requireResetRequired(t *testing.T, res *servertest.Response, serverGeneration string) {
	t.Helper()
	requireSyncProblem(t, res, http.StatusConflict, "repository_reset_required")
	require.Equal(t, serverGeneration, res.Header.Get("X-Repository-Generation"))
}

func TestRepositoryResetAndGenerations(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-1")
	const id = "obs_1712345678901_1"

	// a client that sends no generation adopts the server's
	page := dev.pullPage(0, 0, "")
	require.Equal(t, int64(1), page.RepositoryGeneration)
	dev.push(syncObservation(id, "2025-12-01T10:00:00.000Z", `{"a":1}`))
	dev.push(syncObservation(id, "2025-12-02T10:00:00.000Z", `{"a":2}`))

	requireSyncProblem(t, resetRepository(env, admin, map[string]string{"confirm": "yes"}), http.StatusBadRequest, "")
	requireSyncProblem(t, resetRepository(env, admin, map[string]string{}), http.StatusBadRequest, "")
	requireSyncProblem(t, resetRepository(env, dev.token, map[string]string{"confirm": "RESET_REPOSITORY"}), http.StatusForbidden, "")
	require.Len(t, dev.pullPage(0, 0, "").Records, 1, "refused resets erase nothing")

	res := resetRepository(env, admin, map[string]string{"confirm": "RESET_REPOSITORY"})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var reset api.RepositoryResetResponse
	res.JSON(t, &reset)
	require.Equal(t, int64(2), reset.RepositoryGeneration)
	require.NotEmpty(t, reset.Message)
	require.Equal(t, "2", res.Header.Get("X-Repository-Generation"))

	page = dev.pullPage(0, 0, "")
	require.Empty(t, page.Records, "observations are gone")
	require.Equal(t, int64(2), page.RepositoryGeneration)
	revs := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/" + id + "/revisions", Token: dev.token})
	requireSyncProblem(t, revs, http.StatusNotFound, "")

	pull := func(header map[string]string, body string) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: dev.token, Header: header,
			Body: `{"client_id":"formulus-1","since":{"version":0}` + body + `}`})
	}
	pushBody := func(generation string, records ...string) string {
		recs := ""
		for i, r := range records {
			if i > 0 {
				recs += ","
			}
			recs += r
		}
		return fmt.Sprintf(`{"transmission_id":%q,"client_id":"formulus-1","records":[%s]%s}`, newTransmissionID(), recs, generation)
	}
	rec := syncObservation("obs_1712345678901_2", "2025-12-03T10:00:00.000Z", `{"after":"reset"}`)
	old := map[string]string{"X-Repository-Generation": "1"}
	current := map[string]string{"X-Repository-Generation": "2"}

	requireResetRequired(t, pull(old, ""), "2")
	requireResetRequired(t, pull(nil, `,"repository_generation":1`), "2")
	requireResetRequired(t, pull(old, `,"repository_generation":2`), "2")
	require.Equal(t, http.StatusOK, pull(current, `,"repository_generation":1`).Status, "the header wins over the body")
	require.Equal(t, http.StatusOK, pull(nil, `,"repository_generation":2`).Status)

	requireResetRequired(t, dev.pushRaw(pushBody("", rec), old), "2")
	requireResetRequired(t, dev.pushRaw(pushBody(`,"repository_generation":1`, rec), nil), "2")
	requireResetRequired(t, dev.pushRaw(pushBody(`,"repository_generation":2`, rec), old), "2")
	requireResetRequired(t, dev.pushRaw(pushBody("", rec), nil), "2") // records without a generation belong to generation 1
	require.Empty(t, dev.pullPage(0, 0, "").Records, "refused pushes store nothing")

	res = dev.pushRaw(pushBody(""), nil)
	require.Equal(t, http.StatusOK, res.Status, "an empty push without a generation adopts the server's: %s", res.Body)
	require.Equal(t, float64(2), res.Map(t)["repository_generation"])
	require.Equal(t, "2", res.Header.Get("X-Repository-Generation"))

	res = dev.pushRaw(pushBody(`,"repository_generation":1`, rec), current)
	require.Equal(t, http.StatusOK, res.Status, "the header wins over the body: %s", res.Body)
	res = dev.pushRaw(pushBody(`,"repository_generation":2`, syncObservation("obs_1712345678901_3", "2025-12-03T10:00:00.000Z", `{}`)), nil)
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)

	page = dev.pullPage(0, 0, "")
	require.Len(t, page.Records, 2)
	require.Equal(t, int64(2), page.RepositoryGeneration)
}

func TestRepositoryResetIsForAdminsOnly(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	for _, role := range []string{"read-only", "read-write"} {
		token := env.CreateUser("user-"+role, role)
		requireSyncProblem(t, resetRepository(env, token, map[string]string{"confirm": "RESET_REPOSITORY"}), http.StatusForbidden, "")
	}
	requireSyncProblem(t, resetRepository(env, "", map[string]string{"confirm": "RESET_REPOSITORY"}), http.StatusUnauthorized, "")
}

// TestQuarantinedRecordIsRetriedWithACorrectedCopy follows a record the 2025 app pushes
// with an updated_at the server cannot order: it is quarantined as sent, an admin finds
// it, retries it with a corrected copy, and then every device pulls it.
func TestQuarantinedRecordIsRetriedWithACorrectedCopy(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	anaToken := env.CreateUser("ana", "read-write")
	const bad = `{"observation_id":"obs_1733047860000_9","form_type":"household","form_version":"1",` +
		`"data":{"name":"Kwame"},"created_at":"2025-12-31T10:00:00.000Z","updated_at":"31/12/2025 10:00","deleted":false}`
	tid := newTransmissionID()
	pushBody := fmt.Sprintf(`{"client_id":"formulus-ana","records":[%s,%s],"transmission_id":%q}`,
		syncObservation("obs_1733047860000_1", "2025-12-01T10:00:00.000Z", `{}`), bad, tid)
	push := func() api.SyncPushResponse {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/sync/push", Token: anaToken, NoVersion: true, Body: pushBody})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		var out api.SyncPushResponse
		res.JSON(t, &out)
		return out
	}
	answer := push()
	require.Equal(t, 1, answer.SuccessCount)
	require.NotNil(t, answer.FailedRecords)
	require.Len(t, *answer.FailedRecords, 1)
	failed := (*answer.FailedRecords)[0]
	require.Equal(t, 1, failed.Index)
	require.Equal(t, "obs_1733047860000_9", *failed.Id)
	require.Equal(t, "obs_1733047860000_9", *failed.ObservationId)
	require.Equal(t, "INVALID_FIELD", failed.Code)
	require.Contains(t, failed.Error, "updated_at")

	list := func(token, path string) api.QuarantineList {
		t.Helper()
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: path, Token: token, NoVersion: !strings.HasPrefix(path, "/api/")})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		var out api.QuarantineList
		res.JSON(t, &out)
		return out
	}
	listed := list(admin, "/api/admin/quarantine")
	require.False(t, listed.HasMore)
	require.Len(t, listed.Records, 1)
	q := listed.Records[0]
	require.Equal(t, "formulus-ana", q.ClientId)
	require.Equal(t, tid, q.TransmissionId)
	require.Equal(t, 1, q.Index)
	require.Equal(t, "ana", q.PushedBy)
	require.Equal(t, "obs_1733047860000_9", *q.ObservationId)
	require.Equal(t, "INVALID_FIELD", q.Code)
	require.Equal(t, failed.Error, q.Reason)
	require.Equal(t, len(bad), q.Bytes)
	require.Equal(t, listed, list(admin, "/admin/quarantine"), "older clients' root path")
	require.Equal(t, listed, list(admin, "/api/admin/quarantine?client_id=formulus-ana&transmission_id="+tid+"&code=INVALID_FIELD&limit=1000"))
	require.Empty(t, list(admin, "/api/admin/quarantine?client_id=someone-else").Records)
	requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/admin/quarantine", Token: anaToken}), http.StatusForbidden, "")

	recordPath := fmt.Sprintf("/api/admin/quarantine/%d", q.Id)
	raw := env.Do(servertest.Request{Method: http.MethodGet, Path: recordPath, Token: admin})
	require.Equal(t, http.StatusOK, raw.Status)
	require.Equal(t, bad, string(raw.Body), "the record exactly as it was pushed")

	// The device retries the push whose answer it lost: the same answer, and the record is
	// not quarantined twice.
	require.Equal(t, answer, push())
	require.Len(t, list(admin, "/api/admin/quarantine").Records, 1)

	retry := func(body any) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: recordPath + "/retry", Token: admin, Body: body})
	}
	requireSyncProblem(t, retry(nil), http.StatusUnprocessableEntity, "INVALID_FIELD")
	requireSyncProblem(t, retry(`{"record":{"observation_id":"obs_1733047860000_9"}}`), http.StatusUnprocessableEntity, "MISSING_FIELD")
	require.Len(t, list(admin, "/api/admin/quarantine").Records, 1, "a failed retry keeps the record")

	corrected := strings.Replace(bad, `"31/12/2025 10:00"`, `"2025-12-31T10:00:00.000Z"`, 1)
	res := retry(`{"record":` + corrected + `}`)
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var stored api.QuarantineRetryResponse
	res.JSON(t, &stored)
	require.Equal(t, "obs_1733047860000_9", stored.ObservationId)
	require.Equal(t, int64(2), stored.CurrentVersion)
	require.Equal(t, int64(1), stored.RepositoryGeneration)
	require.Nil(t, stored.Warnings)

	require.Empty(t, list(admin, "/api/admin/quarantine").Records)
	requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: recordPath, Token: admin}), http.StatusNotFound, "")
	requireSyncProblem(t, retry(nil), http.StatusNotFound, "")

	// Every device pulls it: another user's 2026 app, and the device that sent it.
	other := newSyncDevice(t, env, env.CreateUser("kofi", "read-only"), "formulus-kofi")
	other.sync(0)
	require.Len(t, other.data, 2)
	got := other.data["obs_1733047860000_9"]
	require.Equal(t, "2025-12-31T10:00:00.000Z", got.UpdatedAt)
	require.Equal(t, `{"name":"Kwame"}`, string(got.Data))
	require.Equal(t, int64(2), got.Version)
	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/sync/pull", Token: anaToken, NoVersion: true, Body: `{"client_id":"formulus-ana","since":{"version":1}}`})
	require.Equal(t, http.StatusOK, res.Status)
	var page pulledPage
	res.JSON(t, &page)
	require.Len(t, page.Records, 1)
	require.Equal(t, "obs_1733047860000_9", page.Records[0].ObservationID)

	revs := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/obs_1733047860000_9/revisions", Token: admin})
	require.Equal(t, http.StatusOK, revs.Status)
	var history api.ObservationRevisionList
	revs.JSON(t, &history)
	require.Len(t, history.Revisions, 1)
	require.Equal(t, "admin", *history.Revisions[0].PushedBy)
	require.Equal(t, "formulus-ana", *history.Revisions[0].ClientId)
	require.Equal(t, tid, *history.Revisions[0].TransmissionId)

	// A late replay of the original push still gets its original answer and changes nothing.
	require.Equal(t, answer, push())
	require.Empty(t, list(admin, "/api/admin/quarantine").Records)
	require.Equal(t, int64(2), other.pullPage(0, 0, "").CurrentVersion)
}

func TestQuarantinedRecordIsDiscarded(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-ana")
	res := dev.pushWith(newTransmissionID(), `{"no":"id"}`)
	require.Equal(t, 0, res.SuccessCount)
	var listed api.QuarantineList
	lr := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/admin/quarantine", Token: admin})
	require.Equal(t, http.StatusOK, lr.Status)
	lr.JSON(t, &listed)
	require.Len(t, listed.Records, 1)
	path := fmt.Sprintf("/api/admin/quarantine/%d", listed.Records[0].Id)

	requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodDelete, Path: path, Token: dev.token}), http.StatusForbidden, "")
	del := env.Do(servertest.Request{Method: http.MethodDelete, Path: path, Token: admin})
	require.Equal(t, http.StatusOK, del.Status, "%s", del.Body)
	requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodDelete, Path: path, Token: admin}), http.StatusNotFound, "")
	requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: path, Token: admin}), http.StatusNotFound, "")
	for _, bad := range []string{"/api/admin/quarantine/0", "/api/admin/quarantine/abc", "/api/admin/quarantine?limit=0",
		"/api/admin/quarantine?client_id=a%00", "/api/admin/quarantine?observation_id=%ff"} {
		requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: bad, Token: admin}), http.StatusBadRequest, "")
	}
}
