package server_test

import (
	"archive/zip"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/appbundle/appbundletest"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// The compatibility suite sends the exact requests of each shipped client (as described
// in the shared reference clients.md) and checks the answers field by field against what
// that client reads. A client that breaks here breaks in the field.

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
	// formulus2025TrailingSlash is the same app with its server URL saved with a trailing
	// slash, which it never trims: every path it builds starts with "//".
	formulus2025TrailingSlash = shippedClient{name: "formulus 2025 (server URL ending in /)", api: "/", header: formulus2025.header}
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

// sendForm sends a multipart/form-data body of the given parts the way the client does.
func (c shippedClient) sendForm(env *servertest.Env, method, path, token string, extra map[string]string, parts ...formPart) *servertest.Response {
	env.T.Helper()
	body, contentType := multipartBody(env.T, parts...)
	header := map[string]string{"Content-Type": contentType}
	maps.Copy(header, extra)
	return c.send(env, method, path, token, body, header)
}

// rawDownload fetches a file the way the apps download files (RNFS.downloadFile): the
// client's version header if it has one, Authorization, and nothing else.
func (c shippedClient) rawDownload(env *servertest.Env, path, token string) *servertest.Response {
	env.T.Helper()
	return c.send(env, http.MethodGet, path, token, nil, map[string]string{"Accept": ""})
}

// downloadURLAsIs fetches an absolute URL the server handed out as RNFS.downloadFile does
// in the 2025 app: the URL as it is, with Authorization and no other header.
func downloadURLAsIs(t *testing.T, env *servertest.Env, token, link string) *servertest.Response {
	t.Helper()
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.Equal(t, env.HTTP.URL, u.Scheme+"://"+u.Host, "the link points at the server the app reached")
	return env.Do(servertest.Request{Method: http.MethodGet, Path: u.RequestURI(), Token: token, NoVersion: true})
}

// formulusPhotoID is an attachment id as the apps' camera handler names a photo.
const formulusPhotoID = "3f2b8c1e-9a4d-4e6f-b1c2-0d9e8f7a6b5c.jpg"

// rnFilePart is the part React Native's FormData makes of the apps' {uri, type, name}
// file for a .jpg photo: field "file", the attachment id as file name, and the type the
// apps derive from the extension.
func rnFilePart(id string, data []byte) formPart {
	return formPart{field: "file", filename: id, contentType: "image/jpeg", data: data}
}

// encodeURIComponent escapes s as JavaScript's encodeURIComponent does: everything but
// ASCII letters, digits and -_.!~*'() becomes %XX, "/" included.
func encodeURIComponent(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-_.!~*'()", c) >= 0 {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// compatBundleFiles is the app bundle the rows serve: the sample bundle, plus binary
// files whose names JavaScript's encodeURIComponent and Go's url.PathEscape escape
// differently ("@", " ", "(").
func compatBundleFiles() map[string]string {
	files := appbundletest.Sample()
	files["app/img/logo@2x.png"] = string(noise(3000))
	files["app/fonts/Noto Sans (latin).woff2"] = string(noise(2000))
	return files
}

// activateBundle stores files as a new app bundle version and activates it, and returns
// the version.
func (f *compatFixture) activateBundle(t *testing.T, files map[string]string) string {
	t.Helper()
	pushed := pushOK(t, f.env, f.admin, appbundletest.Files(files), "?activate=true")
	require.True(t, *pushed.Active)
	return *pushed.Version
}

// portalFilename is the portal's expression for the file name in Content-Disposition,
// /filename[^;=\n]*=((['"]).*?\2|[^;\n]*)/, without the back reference RE2 lacks.
var portalFilename = regexp.MustCompile(`filename[^;=\n]*=((['"]).*?['"]|[^;\n]*)`)

// portalFilenameOf is the name the portal saves a download under: what the expression
// matches, without quotes. Without a match the portal makes a name up; that fails here.
func portalFilenameOf(t *testing.T, res *servertest.Response) string {
	t.Helper()
	match := portalFilename.FindStringSubmatch(res.Header.Get("Content-Disposition"))
	require.NotNil(t, match, "no file name in %q", res.Header.Get("Content-Disposition"))
	return strings.NewReplacer(`"`, "", "'", "").Replace(match[1])
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
	{formulus2025, "attachment upload: PUT at the root path with the React Native file part, any 2xx, and 2xx again for a re-queued file", formulus2025Upload(formulus2025)},
	{formulus2025, "attachment manifest, then each download_url verbatim with only Authorization (exactly 200, the bytes); a delete reaches the next manifest", formulus2025AttachmentSync(formulus2025)},
	{formulus2025, "app bundle: manifest, then every forms/ and then app/ file at download/{encodeURIComponent(path)}, exactly 200 and the bundle's bytes", formulus2025BundleUpdate(formulus2025)},
	{formulus2025TrailingSlash, "attachment upload: PUT at the root path with the React Native file part, any 2xx, and 2xx again for a re-queued file", formulus2025Upload(formulus2025TrailingSlash)},
	{formulus2025TrailingSlash, "attachment manifest, then each download_url verbatim with only Authorization (exactly 200, the bytes); a delete reaches the next manifest", formulus2025AttachmentSync(formulus2025TrailingSlash)},
	{formulus2025TrailingSlash, "app bundle: manifest, then every forms/ and then app/ file at download/{encodeURIComponent(path)}, exactly 200 and the bundle's bytes", formulus2025BundleUpdate(formulus2025TrailingSlash)},

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

	{synk2025, "attachments upload (part named after the local path, id unescaped), exists and download", func(t *testing.T, f *compatFixture) {
		const id = "site-visit_2025-12-01.jpg" // the file's base name
		pic := photo(t, 64, 48, 5)
		// multipart.Writer.CreateFormFile("file", path): the local path, application/octet-stream.
		res := synk2025.sendForm(f.env, http.MethodPut, "/attachments/"+id, f.writer, nil,
			formPart{field: "file", filename: "/home/enumerator/photos/" + id, contentType: "application/octet-stream", data: pic})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		res.Map(t)
		res = synk2025.send(f.env, http.MethodHead, "/attachments/"+id, f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "exists")
		res = synk2025.send(f.env, http.MethodHead, "/attachments/never-uploaded.jpg", f.writer, nil, nil)
		require.Equal(t, http.StatusNotFound, res.Status, "absent; any other status is an error")
		res = synk2025.send(f.env, http.MethodGet, "/attachments/"+id, f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status)
		require.Equal(t, pic, res.Body)
	}},
	{synk2025, "app-bundle upload --activate: push exactly 200, version from version or manifest.version, then a bodiless switch", func(t *testing.T, f *compatFixture) {
		// A bundle synk's own checks let through without --skip-validation: forms only as
		// forms/<name>/{schema,ui}.json, and no renderer the bundle lacks.
		files := compatBundleFiles()
		for _, path := range []string{"forms/ext.json", "forms/person/schema.json", "forms/person/ui.json"} {
			delete(files, path)
		}
		res := synk2025.sendForm(f.env, http.MethodPost, "/app-bundle/push", f.admin, nil,
			formPart{field: "bundle", filename: "field-app.zip", contentType: "application/octet-stream", data: appbundletest.Files(files)})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		out := res.Map(t)
		version, ok := out["version"].(string)
		if !ok {
			manifest, _ := out["manifest"].(map[string]any)
			version, _ = manifest["version"].(string)
		}
		require.NotEmpty(t, version, "without a version the CLI cannot activate")
		res = synk2025.send(f.env, http.MethodPost, "/app-bundle/switch/"+version, f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.IsType(t, "", res.Map(t)["message"])
		res = synk2025.send(f.env, http.MethodGet, "/app-bundle/manifest", f.writer, nil, nil)
		require.Equal(t, version, res.Map(t)["version"])
	}},
	{synk2025, "app-bundle manifest (files[].size a JSON number), versions, and download [--preview] of each file", func(t *testing.T, f *compatFixture) {
		files := compatBundleFiles()
		version := f.activateBundle(t, files)
		res := synk2025.send(f.env, http.MethodGet, "/app-bundle/manifest", f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := res.Map(t)
		require.Equal(t, version, m["version"])
		for _, name := range []string{"generatedAt", "hash"} {
			require.IsType(t, "", m[name], name)
			require.NotEmpty(t, m[name], name)
		}
		listed, ok := m["files"].([]any)
		require.True(t, ok, "files: %v", m["files"])
		require.Len(t, listed, len(files))
		for _, file := range listed {
			fm, ok := file.(map[string]any)
			require.True(t, ok, "%v", file)
			path, ok := fm["path"].(string)
			require.True(t, ok, "%v", fm)
			size, ok := fm["size"].(float64)
			require.True(t, ok, "the CLI asserts size.(float64) and panics otherwise: %v", fm["size"])
			require.Equal(t, len(files[path]), int(size), path)
			for _, query := range []string{"", "?preview=true"} {
				res := synk2025.send(f.env, http.MethodGet, "/app-bundle/download/"+url.PathEscape(path)+query, f.writer, nil, nil)
				require.Equal(t, http.StatusOK, res.Status, "%s%s: %s", path, query, res.Body)
				require.Equal(t, files[path], string(res.Body), path)
			}
		}
		res = synk2025.send(f.env, http.MethodGet, "/app-bundle/versions", f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.Equal(t, []any{version + " *"}, res.Map(t)["versions"])
	}},
	{synk2025, "app-bundle changes: current_version, target_version and the paths of added, modified and removed", func(t *testing.T, f *compatFixture) {
		files := compatBundleFiles()
		current := f.activateBundle(t, files)
		next := maps.Clone(files)
		delete(next, "app/css/style.css")
		next["app/js/app.js"] = `console.log("field app, next");`
		next["app/img/banner.png"] = string(noise(500))
		target := *pushOK(t, f.env, f.admin, appbundletest.Files(next), "").Version
		paths := func(list []map[string]any) []string {
			var out []string
			for _, file := range list {
				p, ok := file["path"].(string)
				require.True(t, ok, "%v", file)
				out = append(out, p)
			}
			return out
		}
		// No arguments compares the active version with the next, one names the target,
		// two name both.
		for _, query := range []string{"", "?target=" + target, "?current=" + current + "&target=" + target} {
			res := synk2025.send(f.env, http.MethodGet, "/app-bundle/changes"+query, f.writer, nil, nil)
			require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
			var changes struct {
				CurrentVersion string           `json:"current_version"`
				TargetVersion  string           `json:"target_version"`
				Added          []map[string]any `json:"added"`
				Modified       []map[string]any `json:"modified"`
				Removed        []map[string]any `json:"removed"`
			}
			require.NoError(t, json.Unmarshal(res.Body, &changes), "%s", res.Body)
			require.Equal(t, current, changes.CurrentVersion, query)
			require.Equal(t, target, changes.TargetVersion, query)
			require.Equal(t, []string{"app/img/banner.png"}, paths(changes.Added), query)
			require.Equal(t, []string{"app/js/app.js"}, paths(changes.Modified), query)
			require.Equal(t, []string{"app/css/style.css"}, paths(changes.Removed), query)
		}
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
	{formulus2026, "after a repository reset: pull, push, attachment manifest and upload answer 409 repository_reset_required with the new generation", func(t *testing.T, f *compatFixture) {
		res := portal2026.send(f.env, http.MethodPost, "/admin/repository/reset", f.admin, map[string]string{"confirm": "RESET_REPOSITORY"}, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		stale := map[string]string{"X-Repository-Generation": "1"}
		upload := formulus2026.sendForm(f.env, http.MethodPut, "/attachments/"+formulusPhotoID, f.writer, stale, rnFilePart(formulusPhotoID, photo(t, 64, 48, 9)))
		for _, path := range []string{"/sync/pull", "/sync/push", "/attachments/manifest", "/attachments/" + formulusPhotoID} {
			res := upload
			if path != "/attachments/"+formulusPhotoID {
				res = formulus2026.send(f.env, http.MethodPost, path, f.writer, map[string]any{"client_id": "formulus-a1b2", "transmission_id": "z1x2c3v4b5n6m7l8",
					"records": []any{}, "since": map[string]any{"version": 2}, "since_version": 0, "repository_generation": 1}, stale)
			}
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

	{formulus2026, "attachment upload: HEAD first (404), PUT with x-repository-generation (omitted while unknown); a retry finds it with HEAD", func(t *testing.T, f *compatFixture) {
		for i, gen := range []map[string]string{{"X-Repository-Generation": "1"}, nil} {
			id := fmt.Sprintf("5d4c3b2a-1f0e-4d9c-8b7a-%012d.jpg", i)
			path := "/attachments/" + encodeURIComponent(id)
			res := formulus2026.send(f.env, http.MethodHead, path, f.writer, nil, nil)
			require.Equal(t, http.StatusNotFound, res.Status, "not there yet: upload")
			res = formulus2026.sendForm(f.env, http.MethodPut, path, f.writer, gen, rnFilePart(id, photo(t, 64, 48, uint8(i))))
			require.True(t, res.Status >= 200 && res.Status < 300, "%d %s", res.Status, res.Body)
			// The app crashed before unlinking the file from pending/: the next sync asks again.
			res = formulus2026.send(f.env, http.MethodHead, path, f.writer, nil, nil)
			require.True(t, res.Status >= 200 && res.Status < 300, "2xx means already on the server: %d", res.Status)
		}
	}},
	{formulus2026, "attachment manifest with the generation; each file fetched from /api/attachments/{encodeURIComponent(id)}, exactly 200", func(t *testing.T, f *compatFixture) {
		pic := photo(t, 64, 48, 4)
		gen := map[string]string{"X-Repository-Generation": "1"}
		res := formulus2026.sendForm(f.env, http.MethodPut, "/attachments/"+formulusPhotoID, f.writer, gen, rnFilePart(formulusPhotoID, pic))
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		device := f.env.CreateUser("second-device", "read-only")
		res = formulus2026.send(f.env, http.MethodPost, "/attachments/manifest", device,
			map[string]any{"client_id": "formulus-e5f6", "since_version": 0, "repository_generation": 1}, gen)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		require.Equal(t, int64(1), intMember(t, m, "repository_generation"), "the generation sent, or the app resets itself")
		require.Positive(t, intMember(t, m, "current_version"), "@last_attachment_version = current_version.toString()")
		var ops []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(m["operations"], &ops), "operations: %s", m["operations"])
		require.Len(t, ops, 1)
		require.Equal(t, "download", stringMember(t, ops[0], "operation"))
		id := stringMember(t, ops[0], "attachment_id")
		got := formulus2026.rawDownload(f.env, "/attachments/"+encodeURIComponent(id), device)
		require.Equal(t, http.StatusOK, got.Status, "%s", got.Body)
		require.Equal(t, pic, got.Body)
	}},
	{formulus2026, "app bundle: manifest.version a numeric string, then GET /api/app-bundle/download-zip exactly 200, a zip of the bundle", func(t *testing.T, f *compatFixture) {
		files := compatBundleFiles()
		f.activateBundle(t, files)
		res := formulus2026.send(f.env, http.MethodGet, "/app-bundle/manifest", f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		version := stringMember(t, members(t, res.Body), "version")
		n, err := strconv.ParseFloat(strings.TrimSpace(version), 64)
		require.NoError(t, err, "Number(%q) is NaN: the update check gives up", version)
		require.False(t, math.IsInf(n, 0), "Number(%q) is not finite", version)
		res = formulus2026.rawDownload(f.env, "/app-bundle/download-zip", f.writer)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		zr, err := zip.NewReader(bytes.NewReader(res.Body), int64(len(res.Body)))
		require.NoError(t, err, "unzip fails")
		got := map[string]string{}
		for name, data := range zipFiles(t, zr) {
			if !strings.HasSuffix(name, "/") {
				got[name] = string(data)
			}
		}
		require.Equal(t, files, got, "app/ and forms/ are committed from the archive")
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
			require.True(t, strings.HasSuffix(portalFilenameOf(t, res), ".zip"), path)
		}
	}},
	{portal2026, "home: observation stats", func(t *testing.T, f *compatFixture) {
		res := portal2026.send(f.env, http.MethodGet, "/stats/observations", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status)
		require.Equal(t, int64(2), intMember(t, members(t, res.Body), "totalCount"))
	}},

	{portal2026, "app bundles page: push a browser File as bundle, switch with an empty form post, the active version marked \" *\"", func(t *testing.T, f *compatFixture) {
		// The file type is the browser's: Chrome on Windows calls a .zip application/x-zip-compressed.
		res := portal2026.sendForm(f.env, http.MethodPost, "/app-bundle/push", f.admin, nil,
			formPart{field: "bundle", filename: "field-app v3.zip", contentType: "application/x-zip-compressed", data: appbundletest.Files(compatBundleFiles())})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		version := stringMember(t, members(t, m["manifest"]), "version")
		require.Equal(t, version, stringMember(t, m, "version"))
		// The generated client's bodiless POST; axios labels it a form post.
		res = portal2026.send(f.env, http.MethodPost, "/app-bundle/switch/"+version, f.admin, nil, map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.NotEmpty(t, stringMember(t, members(t, res.Body), "message"))

		res = portal2026.send(f.env, http.MethodGet, "/app-bundle/manifest", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		active := stringMember(t, members(t, res.Body), "version")
		res = portal2026.send(f.env, http.MethodGet, "/app-bundle/versions", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		var versions []string
		require.NoError(t, json.Unmarshal(members(t, res.Body)["versions"], &versions))
		marker := regexp.MustCompile(`\s*\*$`)
		var marked []string
		for _, v := range versions {
			if marker.MatchString(v) {
				marked = append(marked, marker.ReplaceAllString(v, ""))
			}
		}
		require.Equal(t, []string{active}, marked, "the version shown active is the manifest's: %v", versions)
	}},
	{portal2026, "bundle details: manifest files[{path,hash,size}], changes between two versions, a file previewed as a blob", func(t *testing.T, f *compatFixture) {
		files := compatBundleFiles()
		current := f.activateBundle(t, files)
		next := maps.Clone(files)
		next["forms/person/ui.json"] = `{"type": "VerticalLayout", "elements": []}`
		target := *pushOK(t, f.env, f.admin, appbundletest.Files(next), "").Version

		res := portal2026.send(f.env, http.MethodGet, "/app-bundle/manifest", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		require.Equal(t, current, stringMember(t, m, "version"))
		require.NotEmpty(t, stringMember(t, m, "hash"))
		var listed []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(m["files"], &listed))
		require.Len(t, listed, len(files))
		for _, file := range listed {
			path := stringMember(t, file, "path")
			require.NotEmpty(t, stringMember(t, file, "hash"), path)
			require.Equal(t, int64(len(files[path])), intMember(t, file, "size"), path)
		}

		res = portal2026.send(f.env, http.MethodGet, "/app-bundle/changes?current="+current+"&target="+target, f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		c := members(t, res.Body)
		require.Equal(t, current, stringMember(t, c, "compare_version_a"))
		require.Equal(t, target, stringMember(t, c, "compare_version_b"))
		var added, removed, modified []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(c["added"], &added))
		require.NoError(t, json.Unmarshal(c["removed"], &removed))
		require.NoError(t, json.Unmarshal(c["modified"], &modified))
		require.Empty(t, added)
		require.Empty(t, removed)
		require.Len(t, modified, 1)
		require.Equal(t, "forms/person/ui.json", stringMember(t, modified[0], "path"))
		require.NotEqual(t, stringMember(t, modified[0], "hash_a"), stringMember(t, modified[0], "hash_b"))
		require.Equal(t, int64(len(files["forms/person/ui.json"])), intMember(t, modified[0], "size_a"))
		require.Equal(t, int64(len(next["forms/person/ui.json"])), intMember(t, modified[0], "size_b"))

		res = portal2026.send(f.env, http.MethodGet, "/app-bundle/download/"+encodeURIComponent("forms/person/ui.json")+"?preview=true", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.Equal(t, next["forms/person/ui.json"], string(res.Body), "preview shows the newest version")
	}},
	{portal2026, "data export page: the attachments archive as a blob, file name from Content-Disposition", func(t *testing.T, f *compatFixture) {
		pic := photo(t, 64, 48, 7)
		res := formulus2026.sendForm(f.env, http.MethodPut, "/attachments/"+formulusPhotoID, f.writer, nil, rnFilePart(formulusPhotoID, pic))
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		res = portal2026.send(f.env, http.MethodGet, "/attachments/export-zip", f.admin, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		zr, err := zip.NewReader(bytes.NewReader(res.Body), int64(len(res.Body)))
		require.NoError(t, err)
		require.Equal(t, map[string][]byte{formulusPhotoID: pic}, zipFiles(t, zr))
		require.Equal(t, "attachments_export.zip", portalFilenameOf(t, res))
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
	{desktop, "attachments: PUT /api/attachments/{urlencoded id} with an octet-stream part, manifest with strict integers, GET the file", func(t *testing.T, f *compatFixture) {
		pic := photo(t, 64, 48, 8)
		gen := map[string]string{"X-Repository-Generation": "1"}
		// urlencoding::encode leaves what encodeURIComponent leaves, for every character an id may hold.
		res := desktop.sendForm(f.env, http.MethodPut, "/attachments/"+encodeURIComponent(formulusPhotoID), f.writer, gen,
			formPart{field: "file", filename: formulusPhotoID, contentType: "application/octet-stream", data: pic})
		require.True(t, res.Status >= 200 && res.Status < 300, "%d %s", res.Status, res.Body)
		res = desktop.send(f.env, http.MethodPost, "/attachments/manifest", f.writer,
			map[string]any{"client_id": "desktop-7f3c2a", "since_version": 0, "repository_generation": 1}, gen)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		require.Positive(t, intMember(t, m, "current_version"))
		require.Equal(t, int64(1), intMember(t, m, "repository_generation"))
		var ops []map[string]json.RawMessage // Option<Vec<...>>
		require.NoError(t, json.Unmarshal(m["operations"], &ops))
		require.Len(t, ops, 1)
		require.Equal(t, "download", stringMember(t, ops[0], "operation"))
		require.Equal(t, formulusPhotoID, stringMember(t, ops[0], "attachment_id"))
		res = desktop.send(f.env, http.MethodGet, "/attachments/"+encodeURIComponent(formulusPhotoID), f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.Equal(t, pic, res.Body)
	}},
}

// formulus2025Upload is how the 2025 app uploads a photo before pushing.
func formulus2025Upload(app shippedClient) func(*testing.T, *compatFixture) {
	return func(t *testing.T, f *compatFixture) {
		pic := photo(t, 64, 48, 1)
		for range 2 { // the app uploads a file again when it did not see the answer
			res := app.sendForm(f.env, http.MethodPut, "/attachments/"+encodeURIComponent(formulusPhotoID), f.writer, nil, rnFilePart(formulusPhotoID, pic))
			require.True(t, res.Status >= 200 && res.Status < 300, "%d %s", res.Status, res.Body)
		}
	}
}

// formulus2025AttachmentSync is how the 2025 app fetches what other devices uploaded.
func formulus2025AttachmentSync(app shippedClient) func(*testing.T, *compatFixture) {
	return func(t *testing.T, f *compatFixture) {
		pic := photo(t, 64, 48, 2)
		res := app.sendForm(f.env, http.MethodPut, "/attachments/"+encodeURIComponent(formulusPhotoID), f.writer, nil, rnFilePart(formulusPhotoID, pic))
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		device := f.env.CreateUser("second-device", "read-only")
		since := int64(0) // @last_attachment_version
		nextOperations := func() []map[string]json.RawMessage {
			res := app.send(f.env, http.MethodPost, "/attachments/manifest", device, map[string]any{"client_id": "formulus-c3d4", "since_version": since}, nil)
			require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
			m := members(t, res.Body)
			since = intMember(t, m, "current_version")
			var ops []map[string]json.RawMessage // null reads as none
			require.NoError(t, json.Unmarshal(m["operations"], &ops), "operations: %s", m["operations"])
			return ops
		}
		ops := nextOperations()
		require.Len(t, ops, 1)
		require.Equal(t, "download", stringMember(t, ops[0], "operation"))
		require.Equal(t, formulusPhotoID, stringMember(t, ops[0], "attachment_id"))
		got := downloadURLAsIs(t, f.env, device, stringMember(t, ops[0], "download_url"))
		require.Equal(t, http.StatusOK, got.Status, "%s", got.Body)
		require.Equal(t, pic, got.Body)
		require.Empty(t, nextOperations(), "nothing new after current_version")

		res = f.env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/attachments/" + formulusPhotoID, Token: f.admin})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		ops = nextOperations()
		require.Len(t, ops, 1)
		require.Equal(t, "delete", stringMember(t, ops[0], "operation"))
		require.Equal(t, formulusPhotoID, stringMember(t, ops[0], "attachment_id"), "the local file removed")
	}
}

// formulus2025BundleUpdate is how the 2025 app installs the active app bundle.
func formulus2025BundleUpdate(app shippedClient) func(*testing.T, *compatFixture) {
	return func(t *testing.T, f *compatFixture) {
		files := compatBundleFiles()
		version := f.activateBundle(t, files)
		res := app.send(f.env, http.MethodGet, "/app-bundle/manifest", f.writer, nil, nil)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		m := members(t, res.Body)
		require.Equal(t, version, stringMember(t, m, "version"), "stored as @appVersion; another string means an update")
		var listed []map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(m["files"], &listed), "files: %s", m["files"])
		got := map[string]string{}
		for _, prefix := range []string{"forms/", "app/"} {
			for _, file := range listed {
				path := stringMember(t, file, "path")
				if !strings.HasPrefix(path, prefix) {
					continue
				}
				res := app.rawDownload(f.env, "/app-bundle/download/"+encodeURIComponent(path), f.writer)
				require.Equal(t, http.StatusOK, res.Status, "%s: %s", path, res.Body)
				got[path] = string(res.Body)
			}
		}
		require.Equal(t, onlyPrefixes(files, "forms/", "app/"), got)
	}
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
