package server_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// presenceOf returns what the admin user list shows of a user's client, or nil.
func presenceOf(t *testing.T, env *servertest.Env, adminToken, username, clientID string) *api.UserPresenceClient {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: adminToken})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var users []api.UserListItem
	res.JSON(t, &users)
	for _, u := range users {
		if u.Username != username || u.Presence == nil || u.Presence.Clients == nil {
			continue
		}
		for _, c := range *u.Presence.Clients {
			if c.ClientId == clientID {
				require.NotNil(t, u.Presence.ClientCount)
				require.Equal(t, len(*u.Presence.Clients), *u.Presence.ClientCount)
				require.NotNil(t, u.Presence.LastSeenAt)
				require.False(t, u.Presence.LastSeenAt.Before(c.LastSeenAt))
				return &c
			}
		}
	}
	return nil
}

func TestSyncRecordsPresence(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	token := env.CreateUser("field1", "read-write")
	const clientID = "formulus-5d41402abc4b2a76"
	header := map[string]string{"X-Ode-Client-Id": clientID}

	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: token, Header: header,
		Body: map[string]any{"client_id": clientID, "since": map[string]any{"version": 0}}})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	dev := newSyncDevice(t, env, token, clientID)
	res = dev.pushRaw(`{"transmission_id":"abcdefghij012345","client_id":"`+clientID+`","records":[`+
		syncObservation("obs_1712345678901_1", "2025-12-01T10:00:00.000Z", `{}`)+","+
		syncObservation("obs_1712345678901_2", "2025-12-01T10:00:00.000Z", `{}`)+`]}`, header)
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var pushed api.SyncPushResponse
	res.JSON(t, &pushed)
	require.Equal(t, int64(2), pushed.CurrentVersion)

	// presence is written in the background every few seconds: wait for it, within bounds
	var seen *api.UserPresenceClient
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if seen = presenceOf(t, env, admin, "field1", clientID); seen != nil && seen.LastDataVersion != nil && *seen.LastDataVersion == pushed.CurrentVersion {
			break
		}
	}
	require.NotNil(t, seen, "the user list never showed client %s", clientID)
	require.NotNil(t, seen.LastDataVersion)
	require.Equal(t, pushed.CurrentVersion, *seen.LastDataVersion, "the data version the client synced to")
	require.NotNil(t, seen.LastOdeVersion)
	require.Equal(t, servertest.Version, *seen.LastOdeVersion)
	require.False(t, seen.LastSeenAt.IsZero())
}

// One client id PostgreSQL cannot store must not cost every other client's presence.
func TestPresenceSkipsUnstorableClientIDs(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	token := env.CreateUser("field2", "read-only")
	// /api/version does not declare x-ode-client-id, so nothing refuses it there.
	for _, id := range []string{"bad-\xff", strings.Repeat("é", 200), "good-client"} {
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/version", Token: token, Header: map[string]string{"X-Ode-Client-Id": id}})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	}
	var seen, long *api.UserPresenceClient
	for deadline := time.Now().Add(10 * time.Second); seen == nil && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		seen = presenceOf(t, env, admin, "field2", "good-client")
	}
	require.NotNil(t, seen, "the flush failed:\n%v", env.Logs.Records(map[string]any{"level": "WARN"}))
	// An over-long id is cut to 255 bytes, never inside a character.
	long = presenceOf(t, env, admin, "field2", strings.Repeat("é", 127))
	require.NotNil(t, long)
}
