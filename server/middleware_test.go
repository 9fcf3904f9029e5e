package server_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/buildinfo"
	"github.com/opendataensemble/synkronus/server/obsync"
	"github.com/opendataensemble/synkronus/server/servertest"
	"github.com/opendataensemble/synkronus/server/tokens"
)

// requireProblem asserts that res is a problem+json error with the given status and code,
// carrying every member existing clients read, and returns it.
func requireProblem(t *testing.T, res *servertest.Response, status int, code string) api.ProblemDetail {
	t.Helper()
	require.Equal(t, status, res.Status, "body: %s", res.Body)
	return requireProblemBody(t, res.Header, res.Body, status, code)
}

func requireProblemBody(t *testing.T, header http.Header, body []byte, status int, code string) api.ProblemDetail {
	t.Helper()
	require.Equal(t, "application/problem+json", header.Get("Content-Type"))
	var members map[string]any
	require.NoError(t, json.Unmarshal(body, &members), "body: %s", body)
	for _, m := range []string{"type", "title", "status", "detail", "error", "message", "code"} {
		require.Contains(t, members, m, "problem member %q missing: %s", m, body)
	}
	var p api.ProblemDetail
	require.NoError(t, json.Unmarshal(body, &p))
	require.Equal(t, status, p.Status)
	require.NotEmpty(t, p.Title)
	require.NotEmpty(t, p.Detail)
	require.Equal(t, code, *p.Code)
	require.Equal(t, p.Detail, *p.Message)
	return p
}

// rawResponse is a response the contract check of servertest cannot look at (a preflight,
// a path older clients mangle); the tests check it themselves.
type rawResponse struct {
	Status int
	Header http.Header
	Body   []byte
}

// rawDo sends a request exactly as given, without following redirects.
func rawDo(t *testing.T, env *servertest.Env, method, path string, header map[string]string, body string) rawResponse {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, env.HTTP.URL+path, r)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err := client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return rawResponse{Status: res.StatusCode, Header: res.Header, Body: b}
}

func serverVersion() string {
	v, _, _ := buildinfo.Info()
	return v
}

func requireUpgradeRequired(t *testing.T, res *servertest.Response) {
	t.Helper()
	require.Equal(t, http.StatusUpgradeRequired, res.Status, "body: %s", res.Body)
	require.Equal(t, serverVersion(), res.Header.Get("X-Synkronus-Version"))
	var vm api.VersionMismatch
	res.JSON(t, &vm)
	require.Equal(t, serverVersion(), vm.SynkronusVersion)
	require.NotEmpty(t, vm.Message)
}

func TestVersionHandshakeRefusesMissingBadAndOtherMajor(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	login := map[string]string{"username": "admin", "password": servertest.AdminPassword}

	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", NoVersion: true, Body: login})
	requireUpgradeRequired(t, res)
	require.Contains(t, res.Map(t)["message"], "missing")

	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: login, Header: map[string]string{"X-Ode-Version": "abc"}})
	requireUpgradeRequired(t, res)
	require.Contains(t, res.Map(t)["message"], "valid semantic version")

	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: login, Header: map[string]string{"X-Ode-Version": "2.0.0"}})
	requireUpgradeRequired(t, res)
	require.Contains(t, res.Map(t)["message"], "2.0.0", "the message names the client's version")
}

func TestVersionHandshakeAcceptsLooseVersions(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	for _, v := range []string{"1", "1.4", "v1.0.0-beta", "V1.2.3"} {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Header: map[string]string{"X-Ode-Version": v},
			Body: map[string]string{"username": "admin", "password": servertest.AdminPassword}})
		require.Equal(t, http.StatusOK, res.Status, "x-ode-version %q: %s", v, res.Body)
	}
}

func TestVersionHandshakeRunsBeforeAuthentication(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", NoVersion: true})
	requireUpgradeRequired(t, res)

	// The marker the root-path adapter uses internally cannot be sent by a client to skip the check.
	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/version", NoVersion: true, Token: env.AdminToken(),
		Header: map[string]string{"X-Synkronus-Legacy-Path": "1"}})
	requireUpgradeRequired(t, res)
}

func TestRootPathsOfOlderClients(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	reader := env.CreateUser("reader", "read-only")

	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/auth/login", NoVersion: true,
		Body: map[string]string{"username": "admin", "password": servertest.AdminPassword}})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	var auth api.AuthResponse
	res.JSON(t, &auth)
	require.NotEmpty(t, auth.Token)

	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/users/create", NoVersion: true, Token: admin,
		Body: map[string]string{"username": "old-client-user", "password": "pw", "role": "read-write"}})
	require.Equal(t, http.StatusCreated, res.Status, "body: %s", res.Body)

	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/users", NoVersion: true, Token: admin})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	require.Contains(t, usernames(t, res), "old-client-user")

	res = env.Do(servertest.Request{Method: http.MethodDelete, Path: "/users/delete/old-client-user", NoVersion: true, Token: admin})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)

	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/sync/pull", NoVersion: true, Token: reader,
		Body: map[string]any{"client_id": "formulus-1", "since": map[string]any{"version": 0}}})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	require.Contains(t, res.Map(t), "records")

	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/version", NoVersion: true, Token: reader})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)

	// Root paths still need a token where the operation does.
	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/users", NoVersion: true})
	requireProblem(t, res, http.StatusUnauthorized, "unauthorized")
}

func usernames(t *testing.T, res *servertest.Response) []string {
	t.Helper()
	var users []api.UserListItem
	res.JSON(t, &users)
	names := make([]string, len(users))
	for i, u := range users {
		names[i] = u.Username
	}
	return names
}

func TestTrailingAndDoubleSlashesAreServedWithoutRedirect(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	hdr := map[string]string{"X-Ode-Version": servertest.Version, "Authorization": "Bearer " + admin}

	res := rawDo(t, env, http.MethodGet, "/api/users/", hdr, "")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	var users []api.UserListItem
	require.NoError(t, json.Unmarshal(res.Body, &users))
	require.NotEmpty(t, users)

	body := `{"username":"admin","password":"` + servertest.AdminPassword + `"}`
	for _, p := range []string{"//auth/login", "/auth/login/", "/api//auth//login", "/api/auth/login/"} {
		hdr = map[string]string{"Content-Type": "application/json"}
		if strings.HasPrefix(p, "/api/") { // older clients, on root paths, send no version
			hdr["X-Ode-Version"] = servertest.Version
		}
		res = rawDo(t, env, http.MethodPost, p, hdr, body)
		require.Equal(t, http.StatusOK, res.Status, "POST %s: %s", p, res.Body)
		var auth api.AuthResponse
		require.NoError(t, json.Unmarshal(res.Body, &auth))
		require.NotEmpty(t, auth.Token, "POST %s", p)
	}
}

func TestEncodedSlashReachesHandlerDecodedOnce(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()

	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/a%2Fb/revisions", Token: admin})
	p := requireProblem(t, res, http.StatusNotFound, "not_found")
	require.Contains(t, p.Detail, `"a/b"`)

	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/observations/a%252Fb/revisions", Token: admin})
	p = requireProblem(t, res, http.StatusNotFound, "not_found")
	require.Contains(t, p.Detail, `"a%2Fb"`, "a double-encoded slash is decoded only once")
}

func TestCORSPreflightAllowsClientHeaders(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	requested := []string{"x-ode-version", "x-ode-client-id", "x-repository-generation", "if-none-match", "authorization", "content-type"}
	res := rawDo(t, env, http.MethodOptions, "/api/sync/pull", map[string]string{
		"Origin":                         "https://portal.example.org",
		"Access-Control-Request-Method":  http.MethodPost,
		"Access-Control-Request-Headers": strings.Join(requested, ", "),
	}, "")
	require.Less(t, res.Status, 300, "preflight status %d: %s", res.Status, res.Body)
	require.Equal(t, "*", res.Header.Get("Access-Control-Allow-Origin"))
	require.Contains(t, strings.ToUpper(res.Header.Get("Access-Control-Allow-Methods")), http.MethodPost)
	allowed := headerList(res.Header.Values("Access-Control-Allow-Headers"))
	for _, h := range requested {
		require.Contains(t, allowed, h, "preflight must allow %s", h)
	}
}

func TestCORSExposesSyncHeaders(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	reader := env.CreateUser("reader", "read-only")
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: reader,
		Header: map[string]string{"Origin": "https://portal.example.org"}, Body: map[string]any{"client_id": "portal"}})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	require.Equal(t, "*", res.Header.Get("Access-Control-Allow-Origin"))
	exposed := headerList(res.Header.Values("Access-Control-Expose-Headers"))
	require.Contains(t, exposed, "etag")
	require.Contains(t, exposed, "x-repository-generation")
}

func headerList(values []string) []string {
	var out []string
	for _, v := range values {
		for _, h := range strings.Split(v, ",") {
			out = append(out, strings.ToLower(strings.TrimSpace(h)))
		}
	}
	return out
}

func TestUnknownPathsAreProblems(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/no-such-thing", Token: env.AdminToken()})
	requireProblem(t, res, http.StatusNotFound, "not_found")

	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/no-such-thing", NoVersion: true})
	requireProblem(t, res, http.StatusNotFound, "not_found")
}

func TestWrongMethodIsAProblem(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	res := env.Do(servertest.Request{Method: http.MethodPut, Path: "/api/auth/login", Body: map[string]string{}})
	requireProblem(t, res, http.StatusMethodNotAllowed, "method_not_allowed")
	require.Contains(t, headerList(res.Header.Values("Allow")), "post", "a 405 names the allowed methods")
}

// Each kind of bad request a hostile or broken client can send is answered with a 4xx
// problem body, never a server error.
func TestEveryErrorIsAProblem(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) { o.MaxJSONBytes = 1024; o.MaxPushBytes = 256 << 10 })
	reader := env.CreateUser("reader", "read-only")
	admin := env.AdminToken()
	adminID := userID(t, env, "admin").String()
	mint := func(key []byte, at time.Time) string {
		issuer, err := tokens.NewIssuer(key, time.Hour)
		require.NoError(t, err)
		token, _, err := issuer.IssueAccess(adminID, "admin", "admin", 0, at)
		require.NoError(t, err)
		return token
	}
	b64 := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	claims := fmt.Sprintf(`{"sub":%q,"username":"admin","role":"admin","exp":%d}`, adminID, time.Now().Add(time.Hour).Unix())
	deep := strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000)
	manyRecords := "[" + strings.Repeat("{},", obsync.MaxPushRecords) + "{}]"
	pushOf := func(records string) string {
		return `{"transmission_id":"t1","client_id":"c1","records":` + records + `}`
	}
	bearer := func(token string) map[string]string { return map[string]string{"Authorization": "Bearer " + token} }
	cases := []struct {
		name   string
		req    servertest.Request
		status int
		code   string
	}{
		{"malformed JSON", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: `{"username":`}, 400, "validation_failed"},
		{"wrong field type", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: `{"username":7,"password":"x"}`}, 400, "validation_failed"},
		{"missing required field", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: `{"username":"admin"}`}, 400, "validation_failed"},
		{"bad credentials", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: map[string]string{"username": "admin", "password": "nope"}}, 401, "unauthorized"},
		{"no token", servertest.Request{Method: http.MethodGet, Path: "/api/version"}, 401, "unauthorized"},
		{"wrong role", servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: reader}, 403, "forbidden"},
		{"unknown user", servertest.Request{Method: http.MethodDelete, Path: "/api/users/ghost", Token: env.AdminToken()}, 404, "not_found"},
		{"too large", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: map[string]string{"username": "admin", "password": strings.Repeat("x", 2048)}}, 413, "request_too_large"},
		{"wrong content type", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: `username=admin`, Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 400, "validation_failed"},
		{"push without JSON", servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: env.AdminToken(), Body: `transmission_id=t`, Header: map[string]string{"Content-Type": "text/plain"}}, 400, "validation_failed"},
		{"push field of the wrong type", servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: env.AdminToken(), Body: `{"transmission_id":5,"client_id":"c","records":[]}`}, 400, "validation_failed"},
		{"malformed push", servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: admin, Body: `{"transmission_id":"t","records":[{"a":}]}`}, 400, "validation_failed"},
		{"malformed pull", servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: admin, Body: `{"client_id":"c",`}, 400, "validation_failed"},
		{"pull cursor of the wrong type", servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: admin, Body: `{"client_id":"c","since":{"version":"12"}}`}, 400, "validation_failed"},
		{"oversized push", servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: admin, Body: pushOf(`[{"data":"` + strings.Repeat("x", 300<<10) + `"}]`)}, 413, "request_too_large"},
		{"oversized pull", servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: admin, Body: `{"client_id":"` + strings.Repeat("c", 2048) + `"}`}, 413, "request_too_large"},
		{"huge records array", servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: admin, Body: pushOf(manyRecords)}, 413, "request_too_large"},
		{"deep nesting in a login", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: `{"username":` + deep[:400] + deep[len(deep)-400:] + `}`}, 400, "validation_failed"},
		{"deep nesting in a pull", servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: admin, Body: `{"client_id":"c","since":` + deep[:400] + deep[len(deep)-400:] + `}`}, 400, "validation_failed"},
		{"deep nesting in a push", servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: admin, Body: pushOf(deep)}, 400, "validation_failed"},
		{"invalid UTF-8 body", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: "{\"username\":\"ad\xffmin\",\"password\":\"x\"}"}, 400, "validation_failed"},
		{"NUL in a login", servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: `{"username":"ad\u0000min","password":"x"}`}, 400, "validation_failed"},
		{"raw NUL byte in JSON", servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: admin, Body: "{\"client_id\":\"c\x00\"}"}, 400, "validation_failed"},
		{"pull as a form", servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: admin, Body: `client_id=c`, Header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 400, "validation_failed"},
		{"upload as JSON", servertest.Request{Method: http.MethodPut, Path: "/api/attachments/a.jpg", Token: admin, Body: `{"file":"x"}`}, 400, "bad_request"},
		{"bundle as JSON", servertest.Request{Method: http.MethodPost, Path: "/api/app-bundle/push", Token: admin, Body: `{"bundle":"x"}`}, 400, "bad_request"},
		{"garbage token", servertest.Request{Method: http.MethodGet, Path: "/api/version", Header: bearer("not-a-jwt")}, 401, "unauthorized"},
		{"expired token", servertest.Request{Method: http.MethodGet, Path: "/api/version", Header: bearer(mint(env.SigningKey, time.Now().Add(-2*time.Hour)))}, 401, "unauthorized"},
		{"token signed with another key", servertest.Request{Method: http.MethodGet, Path: "/api/version", Header: bearer(mint(bytes.Repeat([]byte("k"), 32), time.Now()))}, 401, "unauthorized"},
		{"alg none", servertest.Request{Method: http.MethodGet, Path: "/api/version", Header: bearer(b64(`{"alg":"none","typ":"JWT"}`) + "." + b64(claims) + ".")}, 401, "unauthorized"},
		{"basic instead of bearer", servertest.Request{Method: http.MethodGet, Path: "/api/version", Header: map[string]string{"Authorization": "Basic YWRtaW46eA=="}}, 401, "unauthorized"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := env.Do(c.req)
			requireProblem(t, res, c.status, c.code)
		})
	}
}

func TestRequestIDOnResponses(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	ok := env.Do(servertest.Request{Method: http.MethodGet, Path: "/health", NoVersion: true})
	require.Equal(t, http.StatusOK, ok.Status)
	failed := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/version"})
	require.Equal(t, http.StatusUnauthorized, failed.Status)
	a, b := ok.Header.Get("X-Request-Id"), failed.Header.Get("X-Request-Id")
	require.NotEmpty(t, a)
	require.NotEmpty(t, b)
	require.NotEqual(t, a, b, "each request gets its own id")
}

func TestAccessLogTellsClientsApart(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	login := map[string]string{"username": "admin", "password": servertest.AdminPassword}

	// The 2025 app: a root path, built by concatenation, and no version header.
	env.Do(servertest.Request{Method: http.MethodPost, Path: "//auth/login/", NoVersion: true, Body: login})
	// The 2025 CLI: a root path and x-api-version.
	env.Do(servertest.Request{Method: http.MethodGet, Path: "/version", NoVersion: true, Token: admin, Header: map[string]string{"X-Api-Version": "1.0.0"}})
	// The 2026 app: /api and x-ode-version.
	env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: admin, Header: map[string]string{"X-Ode-Version": "1.2.3"}})

	for _, want := range []map[string]any{
		{"path": "//auth/login/", "operation": "login", "client_version": "", "status": float64(200)},
		{"path": "/version", "operation": "getVersion", "client_version": "1.0.0", "status": float64(200)},
		{"path": "/api/users", "operation": "listUsers", "client_version": "1.2.3", "status": float64(200), "user": "admin"},
	} {
		want["msg"] = "request"
		recs := env.Logs.Records(want)
		require.Len(t, recs, 1, "one access log line with %v", want)
		require.Equal(t, "INFO", recs[0]["level"])
		require.NotEmpty(t, recs[0]["request_id"])
	}
}
