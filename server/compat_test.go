package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/servertest"
)

// The compatibility suite sends the exact requests of each shipped client (as described
// in the shared reference clients.md) and checks the answers field by field against what
// that client reads. A client that breaks here breaks in the field.
//
// Operations not built yet (attachments, app bundle) answer 501; when they land, their
// rows go into compatCases like the others: the 2025 app's PUT
// /attachments/{id} (multipart "file", any 2xx) and POST /attachments/manifest, the 2026
// app's HEAD then PUT with x-repository-generation and GET /api/app-bundle/download-zip,
// the CLI's app-bundle manifest (files[].size must be a number), and the desktop
// client's manifest (integer current_version).

// shippedClient is how one client shapes every request it sends.
type shippedClient struct {
	name string
	// api prefixes every path: "" for the root paths of 2025 releases, "/api" after.
	api    string
	header map[string]string
}

var (
	// formulus2025 is the Dec-2025 field app: generated axios client, root paths, no
	// version header of any kind.
	formulus2025 = shippedClient{name: "formulus 2025", header: map[string]string{"Accept": "application/json, text/plain, */*"}}
	// synk2025 is the Dec-2025 CLI: root paths and x-api-version on everything but login
	// and refresh (which it sends with plain http.Post).
	synk2025 = shippedClient{name: "synk 2025", header: map[string]string{"X-Api-Version": "1.0.0"}}
	// formulus2026 is the 2026 field app: /api, x-ode-version, and its repository
	// generation once it knows it.
	formulus2026 = shippedClient{name: "formulus 2026", api: "/api", header: map[string]string{"X-Ode-Version": "1.4.2", "Accept": "application/json, text/plain, */*"}}
	// portal2026 is the admin web portal.
	portal2026 = shippedClient{name: "portal 2026", api: "/api", header: map[string]string{"X-Ode-Version": "1.4.2"}}
	// desktop is the Rust desktop sync client: /api, x-ode-version and x-ode-client-id on
	// every request, and strict decoding of what it reads.
	desktop = shippedClient{name: "desktop", api: "/api", header: map[string]string{"X-Ode-Version": "1.0.0", "X-Ode-Client-Id": "desktop-7f3c2a"}}
)

// send sends one request the way the client does; extra headers are added to (or, when
// empty, removed from) the client's own.
func (c shippedClient) send(env *servertest.Env, method, path, token string, body any, extra map[string]string) *servertest.Response {
	env.T.Helper()
	header := map[string]string{}
	for k, v := range c.header {
		header[k] = v
	}
	for k, v := range extra {
		header[k] = v
	}
	for k, v := range header {
		if v == "" {
			delete(header, k)
		}
	}
	if path != "/health" && path != "/" {
		path = c.api + path
	}
	if s, ok := body.(string); ok {
		body = []byte(s)
	}
	return env.Do(servertest.Request{Method: method, Path: path, Token: token, Body: body, Header: header, NoVersion: true})
}

// compatFixture is a fresh server with a writer ("fieldworker", password "pw-fieldworker")
// and a few stored observations.
type compatFixture struct {
	env    *servertest.Env
	admin  string
	writer string
}

func newCompatFixture(t *testing.T) *compatFixture {
	env := servertest.New(t)
	f := &compatFixture{env: env, admin: env.AdminToken(), writer: env.CreateUser("fieldworker", "read-write")}
	res := formulus2025.send(env, http.MethodPost, "/sync/push", f.writer, map[string]any{
		"client_id": "formulus-seed", "transmission_id": "seedtransmission",
		"records": []any{formulusRecord("obs_1733000000001_1", "2025-12-01T10:11:12.345Z"), formulusRecord("obs_1733000000001_2", "2025-12-01T10:11:13.345Z")},
	}, nil)
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	return f
}

// formulusRecord is an observation as ObservationMapper.toApi builds it.
func formulusRecord(id, updatedAt string) map[string]any {
	return map[string]any{
		"observation_id": id, "form_type": "household", "form_version": "1.0",
		"data": map[string]any{"name": "Amina", "members": 4}, "created_at": "2025-12-01T10:11:12.345Z", "updated_at": updatedAt,
		"deleted": false, "geolocation": map[string]any{"latitude": -1.2921, "longitude": 36.8219, "accuracy": 12.5, "altitude": nil, "altitude_accuracy": nil},
	}
}

// Strict readers, like the desktop client's serde structs and the apps' checks.

func members(t *testing.T, raw []byte) map[string]json.RawMessage {
	t.Helper()
	var m map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &m), "not a JSON object: %s", raw)
	return m
}

var integerLiteral = regexp.MustCompile(`^-?(0|[1-9][0-9]*)$`)

// intMember reads a required integer: present, not null, and written without a fraction
// or exponent (serde's i64 refuses 3.0 and 3e0).
func intMember(t *testing.T, m map[string]json.RawMessage, name string) int64 {
	t.Helper()
	raw, ok := m[name]
	require.True(t, ok, "%s is missing", name)
	require.Regexp(t, integerLiteral, string(raw), "%s is not an integer", name)
	n, err := strconv.ParseInt(string(raw), 10, 64)
	require.NoError(t, err)
	return n
}

func stringMember(t *testing.T, m map[string]json.RawMessage, name string) string {
	t.Helper()
	raw, ok := m[name]
	require.True(t, ok, "%s is missing", name)
	var s string
	require.NoError(t, json.Unmarshal(raw, &s), "%s is not a string: %s", name, raw)
	return s
}

func boolMember(t *testing.T, m map[string]json.RawMessage, name string) bool {
	t.Helper()
	raw, ok := m[name]
	require.True(t, ok, "%s is missing", name)
	var b bool
	require.NoError(t, json.Unmarshal(raw, &b), "%s is not a boolean: %s", name, raw)
	return b
}

// recordsMember reads records: an array, or (for clients that tolerate it) null.
func recordsMember(t *testing.T, m map[string]json.RawMessage) []map[string]json.RawMessage {
	t.Helper()
	var recs []map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(m["records"], &recs), "records: %s", m["records"])
	return recs
}

// requireFromAPI checks a pulled record the way ObservationMapper.fromApi reads it.
func requireFromAPI(t *testing.T, rec map[string]json.RawMessage) {
	t.Helper()
	for _, name := range []string{"observation_id", "form_type", "form_version"} {
		require.NotEmpty(t, stringMember(t, rec, name))
	}
	for _, name := range []string{"created_at", "updated_at"} {
		_, err := time.Parse(time.RFC3339Nano, stringMember(t, rec, name))
		require.NoError(t, err, "new Date(%s) must parse", name)
	}
	boolMember(t, rec, "deleted")
	require.Equal(t, byte('{'), rec["data"][0], "data is an object: %s", rec["data"])
	if geo, ok := rec["geolocation"]; ok && string(geo) != "null" {
		g := members(t, geo)
		for _, name := range []string{"latitude", "longitude"} {
			var f float64
			require.NoError(t, json.Unmarshal(g[name], &f), "geolocation.%s", name)
		}
	}
}

// requireTokens checks a login or refresh answer the way every client stores it, and
// returns the access token's claims as the apps decode them (unverified).
func requireTokens(t *testing.T, res *servertest.Response) (m map[string]json.RawMessage, claims map[string]any) {
	t.Helper()
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	m = members(t, res.Body)
	token := stringMember(t, m, "token")
	require.True(t, strings.HasPrefix(stringMember(t, m, "refreshToken"), "rt_"))
	expiresAt := intMember(t, m, "expiresAt")
	require.InDelta(t, time.Now().Add(24*time.Hour).Unix(), expiresAt, 60, "expiresAt is in Unix seconds (the CLI refreshes 60 s before it)")
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(payload, &claims))
	return m, claims
}

type compatCase struct {
	client shippedClient
	name   string
	run    func(t *testing.T, f *compatFixture)
}

var compatCases = []compatCase{
	// formulus, December 2025.
	{formulus2025, "connection test: GET /health, only response.ok is read", func(t *testing.T, f *compatFixture) {
		res := formulus2025.send(f.env, http.MethodGet, "/health", "", nil, map[string]string{"Accept": "application/json"})
		require.Equal(t, http.StatusOK, res.Status)
	}},
	{formulus2025, "login: token, refreshToken, expiresAt and the claims username and role", func(t *testing.T, f *compatFixture) {
		res := formulus2025.send(f.env, http.MethodPost, "/auth/login", "", map[string]string{"username": "fieldworker", "password": "pw-fieldworker"}, nil)
		_, claims := requireTokens(t, res)
		require.Equal(t, "fieldworker", claims["username"])
		require.Equal(t, "read-write", claims["role"])
	}},
	{formulus2025, "failed login: the app shows data.message", func(t *testing.T, f *compatFixture) {
		res := formulus2025.send(f.env, http.MethodPost, "/auth/login", "", map[string]string{"username": "fieldworker", "password": "typo"}, nil)
		require.Equal(t, http.StatusUnauthorized, res.Status)
		require.NotEmpty(t, stringMember(t, members(t, res.Body), "message"))
	}},
	{formulus2025, "pull: since always sent, no limit, loop on has_more and change_cutoff", func(t *testing.T, f *compatFixture) {
		since, pages := int64(0), 0
		for {
			res := formulus2025.send(f.env, http.MethodPost, "/sync/pull", f.writer, map[string]any{"client_id": "formulus-a1b2", "since": map[string]any{"version": since}}, nil)
			require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
			m := members(t, res.Body)
			for _, rec := range recordsMember(t, m) {
				requireFromAPI(t, rec)
			}
			pages++
			hasMore, cutoff := boolMember(t, m, "has_more"), intMember(t, m, "change_cutoff")
			if !hasMore {
				require.Equal(t, int64(2), intMember(t, m, "current_version"), "@last_seen_version comes from the last page")
				break
			}
			require.Greater(t, cutoff, since, "a cutoff that does not advance loops the app for ever")
			since = cutoff
		}
		require.Equal(t, 1, pages)
	}},
	{formulus2025, "push: every pending row in one request, only current_version is read", func(t *testing.T, f *compatFixture) {
		res := formulus2025.send(f.env, http.MethodPost, "/sync/push", f.writer, map[string]any{
			"client_id": "formulus-a1b2", "transmission_id": "k3j9x0q2m4n8b1v7",
			"records": []any{formulusRecord("obs_1733000000002_1", "2025-12-02T08:00:00.000Z"), formulusRecord("obs_1733000000002_2", "2025-12-02T08:00:01.000Z")},
		}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.Equal(t, int64(4), intMember(t, members(t, res.Body), "current_version"))
	}},

	// synk CLI, December 2025.
	{synk2025, "health: GET of the bare server URL", func(t *testing.T, f *compatFixture) {
		res := synk2025.send(f.env, http.MethodGet, "/", "", nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "synk health reports any other status as a failure")
	}},
	{synk2025, "login with http.Post, then refresh before expiry", func(t *testing.T, f *compatFixture) {
		plain := map[string]string{"X-Api-Version": "", "Content-Type": "application/json"}
		res := synk2025.send(f.env, http.MethodPost, "/auth/login", "", map[string]string{"username": "admin", "password": servertest.AdminPassword}, plain)
		m, claims := requireTokens(t, res)
		// synk status dereferences exp without a nil check.
		require.Contains(t, claims, "exp")
		require.Equal(t, "admin", claims["username"])
		res = synk2025.send(f.env, http.MethodPost, "/auth/refresh", "", map[string]string{"refreshToken": stringMember(t, m, "refreshToken")}, plain)
		requireTokens(t, res)
	}},
	{synk2025, "version", func(t *testing.T, f *compatFixture) {
		res := synk2025.send(f.env, http.MethodGet, "/version", f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		require.NotEmpty(t, stringMember(t, members(t, m["server"]), "version"))
		db := members(t, m["database"])
		require.Equal(t, "postgresql", stringMember(t, db, "type"))
		stringMember(t, db, "version")
		stringMember(t, db, "database_name")
		sys := members(t, m["system"])
		stringMember(t, sys, "os")
		stringMember(t, sys, "architecture")
		intMember(t, sys, "cpus")
		stringMember(t, members(t, m["build"]), "go_version")
	}},
	{synk2025, "sync pull: limit (the CLI's --limit 1000 is capped, not refused) and schemaType in the query, since only above 0", func(t *testing.T, f *compatFixture) {
		res := synk2025.send(f.env, http.MethodPost, "/sync/pull?limit=1000&schemaType=household", f.writer,
			`{"client_id":"synk-cli","schema_types":["household"]}`, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		require.Equal(t, int64(2), intMember(t, m, "current_version"))
		require.Len(t, recordsMember(t, m), 2)
		require.False(t, boolMember(t, m, "has_more"), "no next_page_token is looked for")
	}},
	{synk2025, "sync push: uuid transmission_id; success_count, failed_records and warnings are printed", func(t *testing.T, f *compatFixture) {
		older := formulusRecord("obs_1733000000001_1", "2025-11-30T00:00:00.000Z") // stored copy is newer: a conflict
		res := synk2025.send(f.env, http.MethodPost, "/sync/push", f.writer, map[string]any{
			"client_id": "synk-cli", "transmission_id": uuid.NewString(),
			"records": []any{older, map[string]any{"observation_id": "obs_broken"}},
		}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		intMember(t, m, "current_version")
		require.Equal(t, int64(1), intMember(t, m, "success_count"))
		var failed, warnings []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(m["failed_records"], &failed))
		require.Len(t, failed, 1)
		require.Equal(t, "obs_broken", stringMember(t, failed[0], "id"), "the CLI prints failed_records[].id")
		require.NotEmpty(t, stringMember(t, failed[0], "error"))
		require.NoError(t, json.Unmarshal(m["warnings"], &warnings))
		require.Len(t, warnings, 1)
		require.Equal(t, "obs_1733000000001_1", stringMember(t, warnings[0], "id"))
		require.Equal(t, "CONFLICT", stringMember(t, warnings[0], "code"))
		require.NotEmpty(t, stringMember(t, warnings[0], "message"))
	}},
	{synk2025, "user list, create (POST /users, exactly 201), reset, delete", func(t *testing.T, f *compatFixture) {
		res := synk2025.send(f.env, http.MethodPost, "/users", f.admin, map[string]string{"username": "enumerator", "password": "pw", "role": "read-write"}, nil)
		require.Equal(t, http.StatusCreated, res.Status, "%s", res.Body)
		res = synk2025.send(f.env, http.MethodGet, "/users", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status)
		var users []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(res.Body, &users))
		names := map[string]string{}
		for _, u := range users {
			names[stringMember(t, u, "username")] = stringMember(t, u, "role")
		}
		require.Equal(t, "read-write", names["enumerator"])
		res = synk2025.send(f.env, http.MethodPost, "/users/reset-password", f.admin, map[string]string{"username": "enumerator", "newPassword": "pw2"}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		res = synk2025.send(f.env, http.MethodDelete, "/users/delete/enumerator", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		res = synk2025.send(f.env, http.MethodPost, "/users", f.writer, map[string]string{"username": "x", "password": "pw", "role": "admin"}, nil)
		require.Equal(t, http.StatusForbidden, res.Status, "the CLI says: only admin")
	}},
	{synk2025, "data export: GET /dataexport/parquet, 200 and the bytes saved", func(t *testing.T, f *compatFixture) {
		res := synk2025.send(f.env, http.MethodGet, "/dataexport/parquet", f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.True(t, bytes.HasPrefix(res.Body, []byte("PK")), "a ZIP archive")
	}},
	{synk2025, "change-password with oldPassword", func(t *testing.T, f *compatFixture) {
		res := synk2025.send(f.env, http.MethodPost, "/users/change-password", f.writer, map[string]string{"oldPassword": "pw-fieldworker", "newPassword": "pw-new"}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	}},

	// formulus, 2026.
	{formulus2026, "pull pages: generation adopted, then sent as header and body", func(t *testing.T, f *compatFixture) {
		first := formulus2026.send(f.env, http.MethodPost, "/sync/pull?limit=1", f.writer, map[string]any{"client_id": "formulus-a1b2", "since": map[string]any{"version": 0}}, nil)
		require.Equal(t, http.StatusOK, first.Status, "%s", first.Body)
		m := members(t, first.Body)
		gen := intMember(t, m, "repository_generation")
		require.True(t, boolMember(t, m, "has_more"))
		since := intMember(t, m, "change_cutoff")
		require.Positive(t, since, "change_cutoff must advance past since")
		res := formulus2026.send(f.env, http.MethodPost, "/sync/pull?limit=32", f.writer,
			map[string]any{"client_id": "formulus-a1b2", "since": map[string]any{"version": since}, "repository_generation": gen},
			map[string]string{"X-Repository-Generation": strconv.FormatInt(gen, 10)})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m = members(t, res.Body)
		require.False(t, boolMember(t, m, "has_more"))
		require.Equal(t, int64(2), intMember(t, m, "current_version"))
		require.Equal(t, gen, intMember(t, m, "repository_generation"), "the same generation, or the app resets itself")
		require.Len(t, recordsMember(t, m), 1)
	}},
	{formulus2026, "push batch, retried with the same transmission_id after a lost answer", func(t *testing.T, f *compatFixture) {
		body := map[string]any{"client_id": "formulus-a1b2", "transmission_id": "p0q9w8e7r6t5y4u3", "repository_generation": 1,
			"records": []any{formulusRecord("obs_1733000000003_1", "2026-01-05T09:00:00.000Z")}}
		gen := map[string]string{"X-Repository-Generation": "1"}
		first := formulus2026.send(f.env, http.MethodPost, "/sync/push", f.writer, body, gen)
		require.Equal(t, http.StatusOK, first.Status, "%s", first.Body)
		retry := formulus2026.send(f.env, http.MethodPost, "/sync/push", f.writer, body, gen)
		require.Equal(t, http.StatusOK, retry.Status)
		require.JSONEq(t, string(first.Body), string(retry.Body), "a retry gets the original answer")
		m := members(t, retry.Body)
		require.Equal(t, int64(3), intMember(t, m, "current_version"))
		require.Equal(t, int64(1), intMember(t, m, "repository_generation"))
	}},
	{formulus2026, "after a repository reset: 409 repository_reset_required with the new generation", func(t *testing.T, f *compatFixture) {
		res := portal2026.send(f.env, http.MethodPost, "/admin/repository/reset", f.admin, map[string]string{"confirm": "RESET_REPOSITORY"}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		for _, path := range []string{"/sync/pull", "/sync/push"} {
			res = formulus2026.send(f.env, http.MethodPost, path, f.writer,
				map[string]any{"client_id": "formulus-a1b2", "transmission_id": "z1x2c3v4b5n6m7l8", "records": []any{}, "since": map[string]any{"version": 2}, "repository_generation": 1},
				map[string]string{"X-Repository-Generation": "1"})
			require.Equal(t, http.StatusConflict, res.Status, "%s: %s", path, res.Body)
			m := members(t, res.Body)
			require.Equal(t, "repository_reset_required", stringMember(t, m, "code"))
			require.NotEmpty(t, stringMember(t, m, "message"))
			require.NotEmpty(t, stringMember(t, m, "error"))
			require.Equal(t, "2", res.Header.Get("X-Repository-Generation"))
		}
	}},
	{formulus2026, "another major version: 426 with message and synkronus_version", func(t *testing.T, f *compatFixture) {
		res := formulus2026.send(f.env, http.MethodPost, "/sync/pull", f.writer, map[string]any{"client_id": "formulus-a1b2"}, map[string]string{"X-Ode-Version": "2.0.0"})
		require.Equal(t, http.StatusUpgradeRequired, res.Status)
		m := members(t, res.Body)
		require.NotEmpty(t, stringMember(t, m, "message"))
		require.Equal(t, serverVersion(), stringMember(t, m, "synkronus_version"))
	}},
	{formulus2026, "401 for a stale token (the app logs in again), 403 for a read-only push", func(t *testing.T, f *compatFixture) {
		res := formulus2026.send(f.env, http.MethodPost, "/sync/pull", "stale.token.value", map[string]any{"client_id": "formulus-a1b2"}, nil)
		require.Equal(t, http.StatusUnauthorized, res.Status)
		reader := f.env.CreateUser("viewer", "read-only")
		res = formulus2026.send(f.env, http.MethodPost, "/sync/push", reader, map[string]any{"client_id": "formulus-a1b2", "transmission_id": "a1s2d3f4g5h6j7k8", "records": []any{}}, nil)
		require.Equal(t, http.StatusForbidden, res.Status)
	}},

	// The admin portal, 2026.
	{portal2026, "system page: version and health", func(t *testing.T, f *compatFixture) {
		res := portal2026.send(f.env, http.MethodGet, "/version", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status)
		require.NotEmpty(t, stringMember(t, members(t, members(t, res.Body)["server"]), "version"))
		require.Equal(t, http.StatusOK, portal2026.send(f.env, http.MethodGet, "/health", "", nil, nil).Status)
	}},
	{portal2026, "users page: create, list, reset, change own password, delete at /users/delete", func(t *testing.T, f *compatFixture) {
		res := portal2026.send(f.env, http.MethodPost, "/users/create", f.admin, map[string]string{"username": "supervisor", "password": "pw", "role": "admin"}, nil)
		require.Equal(t, http.StatusCreated, res.Status, "%s", res.Body)
		res = portal2026.send(f.env, http.MethodGet, "/users", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status)
		res = portal2026.send(f.env, http.MethodPost, "/users/reset-password", f.admin, map[string]string{"username": "supervisor", "newPassword": "pw2"}, nil)
		require.Equal(t, http.StatusOK, res.Status)
		res = portal2026.send(f.env, http.MethodPost, "/users/change-password", f.admin, map[string]string{"currentPassword": servertest.AdminPassword, "newPassword": "admin-2"}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		supervisor := f.env.Login("supervisor", "pw2")
		res = portal2026.send(f.env, http.MethodDelete, "/users/delete/fieldworker", supervisor, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	}},
	{portal2026, "older dashboard: observations through a root-path pull with limit in the body", func(t *testing.T, f *compatFixture) {
		res := formulus2025.send(f.env, http.MethodPost, "/sync/pull", f.admin, map[string]any{"client_id": fmt.Sprintf("portal-%d", time.Now().UnixMilli()), "since": map[string]any{"version": 0}, "limit": 1000}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.Len(t, recordsMember(t, members(t, res.Body)), 2)
	}},
	{portal2026, "data export page: archives as blobs, file name from Content-Disposition", func(t *testing.T, f *compatFixture) {
		for _, path := range []string{"/dataexport/parquet", "/dataexport/raw-json"} {
			res := portal2026.send(f.env, http.MethodGet, path, f.admin, nil, nil)
			require.Equal(t, http.StatusOK, res.Status, "%s: %s", path, res.Body)
			require.True(t, bytes.HasPrefix(res.Body, []byte("PK")), "%s: a ZIP archive", path)
			require.Contains(t, res.Header.Get("Content-Disposition"), "filename=", path)
		}
	}},
	{portal2026, "home: observation stats", func(t *testing.T, f *compatFixture) {
		res := portal2026.send(f.env, http.MethodGet, "/stats/observations", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status)
		require.Equal(t, int64(2), intMember(t, members(t, res.Body), "totalCount"))
	}},

	// The desktop sync client.
	{desktop, "pull: strict integers current_version, change_cutoff and repository_generation", func(t *testing.T, f *compatFixture) {
		res := desktop.send(f.env, http.MethodPost, "/sync/pull?limit=10", f.writer, map[string]any{"client_id": "desktop-7f3c2a"}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		require.Equal(t, int64(2), intMember(t, m, "current_version"))
		require.Equal(t, int64(2), intMember(t, m, "change_cutoff"))
		gen := intMember(t, m, "repository_generation")
		require.Len(t, recordsMember(t, m), 2)
		// Later pulls send what it learnt.
		res = desktop.send(f.env, http.MethodPost, "/sync/pull?limit=10", f.writer,
			map[string]any{"client_id": "desktop-7f3c2a", "since": map[string]any{"version": 2}, "repository_generation": gen},
			map[string]string{"X-Repository-Generation": strconv.FormatInt(gen, 10)})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m = members(t, res.Body)
		require.Equal(t, int64(2), intMember(t, m, "change_cutoff"))
		intMember(t, m, "repository_generation")
	}},
	{desktop, "empty push to learn the generation", func(t *testing.T, f *compatFixture) {
		res := desktop.send(f.env, http.MethodPost, "/sync/push", f.writer, map[string]any{"client_id": "desktop-7f3c2a", "transmission_id": uuid.NewString(), "records": []any{}}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		require.Equal(t, int64(1), intMember(t, m, "repository_generation"))
		require.Equal(t, int64(2), intMember(t, m, "current_version"))
	}},
	{desktop, "push with a bad record: failed_records carry index, error and the record's id", func(t *testing.T, f *compatFixture) {
		res := desktop.send(f.env, http.MethodPost, "/sync/push", f.writer, map[string]any{"client_id": "desktop-7f3c2a", "transmission_id": uuid.NewString(), "repository_generation": 1,
			"records": []any{formulusRecord("obs_desktop_1", "2026-02-01T00:00:00Z"), map[string]any{"observation_id": "obs_desktop_2", "form_type": "household"}}},
			map[string]string{"X-Repository-Generation": "1"})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		intMember(t, m, "repository_generation")
		intMember(t, m, "current_version")
		var failed []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(m["failed_records"], &failed))
		require.Len(t, failed, 1)
		require.Equal(t, int64(1), intMember(t, failed[0], "index"))
		require.NotEmpty(t, stringMember(t, failed[0], "error"))
		require.Equal(t, "obs_desktop_2", stringMember(t, failed[0], "observation_id"))
	}},
	{desktop, "401 and 403 read as unauthorized", func(t *testing.T, f *compatFixture) {
		res := desktop.send(f.env, http.MethodPost, "/sync/pull", "", map[string]any{"client_id": "desktop-7f3c2a"}, nil)
		require.Equal(t, http.StatusUnauthorized, res.Status)
		reader := f.env.CreateUser("desk-viewer", "read-only")
		res = desktop.send(f.env, http.MethodPost, "/sync/push", reader, map[string]any{"client_id": "desktop-7f3c2a", "transmission_id": uuid.NewString(), "records": []any{}}, nil)
		require.Equal(t, http.StatusForbidden, res.Status)
	}},
}

func TestShippedClientsCompatibility(t *testing.T) {
	t.Parallel()
	for _, c := range compatCases {
		t.Run(c.client.name+": "+c.name, func(t *testing.T) {
			t.Parallel()
			c.run(t, newCompatFixture(t))
		})
	}
}
