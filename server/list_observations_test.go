package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/servertest"
)

func listObservations(t *testing.T, env *servertest.Env, token string, query url.Values) api.ObservationList {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations?" + query.Encode(), Token: token})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var out api.ObservationList
	res.JSON(t, &out)
	return out
}

func listedIDs(l api.ObservationList) []string {
	ids := make([]string, len(l.Observations))
	for i, o := range l.Observations {
		ids[i] = o.ObservationId
	}
	return ids
}

func TestListObservationsFiltersAndPages(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("collector", "read-write"), "device-1")
	reader := env.CreateUser("viewer", "read-only")
	dev.push(
		syncObservation("a1", "2025-12-01T10:00:00Z", `{"n":1}`, `"author":"Amina Diallo"`),
		`{"observation_id":"b1","form_type":"clinic","form_version":"2","data":{},"created_at":"2026-01-15T08:00:00Z","updated_at":"2026-01-15T08:00:00Z","deleted":false,"author":"Jon"}`,
		syncObservation("a2", "2025-12-01T10:00:00Z", `{"n":2}`, `"author":"amina"`),
	)
	dev.push(strings.Replace(syncObservation("a3", "2025-12-02T10:00:00Z", `{}`), `"deleted":false`, `"deleted":true`, 1))
	// A stale copy of a1 loses a conflict; a1's current state is then marked as decided by one.
	dev.push(syncObservation("a1", "2025-12-03T10:00:00Z", `{"n":3}`))
	stale := dev.pushWith(newTransmissionID(), syncObservation("a1", "2025-12-02T10:00:00Z", `{"n":0}`))
	require.NotNil(t, stale.Warnings)

	all := listObservations(t, env, reader, nil)
	require.Equal(t, []string{"a1", "a2", "b1"}, listedIDs(all), "newest version first, tombstones left out")
	require.False(t, all.HasMore)
	require.Nil(t, all.NextBeforeVersion)
	first := all.Observations[0]
	require.Equal(t, "household", first.FormType)
	require.Equal(t, "2025-12-03T10:00:00Z", first.UpdatedAt, "client timestamps as sent")
	require.Equal(t, "collector", first.PushedBy)
	require.False(t, first.Conflict, "the stored state itself won without a conflict")
	require.True(t, first.HasConflicts, "a stale copy lost against it")

	require.Equal(t, []string{"a1", "a3", "a2", "b1"}, listedIDs(listObservations(t, env, reader, url.Values{"include_deleted": {"true"}})))
	require.Equal(t, []string{"b1"}, listedIDs(listObservations(t, env, reader, url.Values{"form_type": {"clinic"}})))
	require.Equal(t, []string{"a2"}, listedIDs(listObservations(t, env, reader, url.Values{"author": {"AMINA"}, "form_type": {"household"}, "conflicts_only": {"false"}})),
		"author matches case-insensitively; a1 lost its author when rewritten")
	require.Equal(t, []string{"a1"}, listedIDs(listObservations(t, env, reader, url.Values{"conflicts_only": {"true"}})))
	require.Equal(t, []string{"b1"}, listedIDs(listObservations(t, env, reader, url.Values{"created_from": {"2026-01-01T00:00:00Z"}})))
	require.Equal(t, []string{"a1", "a2"}, listedIDs(listObservations(t, env, reader, url.Values{"created_to": {"2026-01-01T00:00:00Z"}})))
	require.Empty(t, listObservations(t, env, reader, url.Values{"author": {"%"}}).Observations, "the author filter is text, not a pattern")

	// Paging walks every match exactly once.
	var seen []string
	query := url.Values{"limit": {"2"}, "include_deleted": {"true"}}
	for range 5 {
		page := listObservations(t, env, reader, query)
		seen = append(seen, listedIDs(page)...)
		if !page.HasMore {
			break
		}
		require.NotNil(t, page.NextBeforeVersion)
		query.Set("before_version", fmt.Sprint(*page.NextBeforeVersion))
	}
	require.Equal(t, []string{"a1", "a3", "a2", "b1"}, seen)
}

func TestListObservationsRefusesBadParameters(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.AdminToken()
	for _, q := range []string{"limit=0", "limit=501", "before_version=0", "created_from=yesterday", "form_type=a%00b"} {
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations?" + q, Token: token})
		requireSyncProblem(t, res, http.StatusBadRequest, "validation_failed")
	}
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations"})
	require.Equal(t, http.StatusUnauthorized, res.Status)
}
