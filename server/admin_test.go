package server_test

import (
	"fmt"
	"net/http"
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
