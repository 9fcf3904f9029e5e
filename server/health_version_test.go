package server_test

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/openapi"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/servertest"
)

func TestHealthBody(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	before := time.Now()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/health", NoVersion: true})
	require.Equal(t, http.StatusOK, res.Status)
	var h api.HealthOK
	res.JSON(t, &h)
	require.Equal(t, api.HealthOKStatusOk, h.Status)
	require.Equal(t, serverVersion(), h.Version)
	require.WithinDuration(t, before, h.Timestamp, time.Minute)
}

func TestHealthReportsUnreachableDatabase(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	env.Pool.Close()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/health", NoVersion: true})
	require.Equal(t, http.StatusServiceUnavailable, res.Status, "body: %s", res.Body)
	var h api.HealthError
	res.JSON(t, &h)
	require.Equal(t, api.HealthErrorStatusError, h.Status)
	require.NotEmpty(t, h.Error)
	require.False(t, h.Timestamp.IsZero())
}

func TestVersionInfoForReadOnlyUser(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	reader := env.CreateUser("reader", "read-only")
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/version", Token: reader})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	var info api.SystemVersionInfo
	res.JSON(t, &info)

	require.NotNil(t, info.Server)
	require.Equal(t, serverVersion(), *info.Server.Version)
	require.NotNil(t, info.Database)
	require.Equal(t, "postgresql", *info.Database.Type)
	require.True(t, strings.HasPrefix(*info.Database.Version, "1"), "a PostgreSQL version: %q", *info.Database.Version)
	var dbName string
	require.NoError(t, env.Pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&dbName))
	require.Equal(t, dbName, *info.Database.DatabaseName)
	require.NotNil(t, info.System)
	require.Equal(t, runtime.GOOS, *info.System.Os)
	require.Equal(t, runtime.GOARCH, *info.System.Architecture)
	require.Positive(t, *info.System.Cpus)
	require.NotNil(t, info.Build)
	require.Equal(t, runtime.Version(), *info.Build.GoVersion)
}

func TestAPIVersions(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	reader := env.CreateUser("reader", "read-only")
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/versions", Token: reader})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	var v api.APIVersionsResponse
	res.JSON(t, &v)
	require.Equal(t, "1.0.6", v.Current, "the contract version of openapi/synkronus.yaml")
	require.NotEmpty(t, v.Versions)
	var current *api.APIVersionInfo
	for i := range v.Versions {
		if v.Versions[i].Version == v.Current {
			current = &v.Versions[i]
		}
	}
	require.NotNil(t, current, "the current version is among the listed ones")
	require.False(t, current.Deprecated)
	require.False(t, current.ReleaseDate.IsZero())

	requireProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/versions"}), http.StatusUnauthorized, "unauthorized")
}

func TestSpecIsServed(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/openapi/synkronus.yaml", NoVersion: true})
	require.Equal(t, http.StatusOK, res.Status)
	require.Contains(t, res.Header.Get("Content-Type"), "yaml")
	require.Contains(t, string(res.Body), "openapi: 3")
	require.Equal(t, openapi.Spec, res.Body, "the contract exactly as written")
}

func TestDocsListOperations(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/docs", NoVersion: true})
	require.Equal(t, http.StatusOK, res.Status)
	require.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "text/html"), "Content-Type: %q", res.Header.Get("Content-Type"))
	body := string(res.Body)
	for _, op := range []string{"/api/sync/pull", "/api/sync/push", "/api/auth/login", "/health"} {
		require.Contains(t, body, op)
	}
	require.Contains(t, body, `href="/openapi/synkronus.yaml"`)
}

func TestServiceDocumentAtRoot(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	// synk health calls the bare server URL with no headers at all; browsers and tools
	// asking for JSON get the same.
	for _, accept := range []string{"", "application/json", "*/*"} {
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/", NoVersion: true, Header: map[string]string{"Accept": accept}})
		require.Equal(t, http.StatusOK, res.Status, "Accept %q: %s", accept, res.Body)
		require.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "application/json"))
		var info api.ServiceInfo
		res.JSON(t, &info)
		require.Equal(t, "synkronus", info.Name)
		require.Equal(t, serverVersion(), info.Version)
		require.Equal(t, api.ServiceLinks{Health: "/health", Docs: "/docs", Openapi: "/openapi/synkronus.yaml", Api: "/api"}, info.Links)
		for _, link := range []string{info.Links.Health, info.Links.Docs, info.Links.Openapi} {
			require.Equal(t, http.StatusOK, env.Do(servertest.Request{Method: http.MethodGet, Path: link, NoVersion: true}).Status, link)
		}
	}
	// The access log shows the path as sent.
	require.NotEmpty(t, env.Logs.Records(map[string]any{"msg": "request", "path": "/", "operation": "getServiceInfo"}))

	public := servertest.New(t, func(o *server.Options) { o.PublicURL = "https://sync.example.org" })
	var info api.ServiceInfo
	public.Do(servertest.Request{Method: http.MethodGet, Path: "/", NoVersion: true}).JSON(t, &info)
	require.Equal(t, "https://sync.example.org/health", info.Links.Health, "links use the public URL when it is known")
	require.Equal(t, "https://sync.example.org/api", info.Links.Api)
}

func TestResponsesCarrySecurityHeaders(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	for _, req := range []servertest.Request{
		{Method: http.MethodGet, Path: "/", NoVersion: true},
		{Method: http.MethodGet, Path: "/health", NoVersion: true},
		{Method: http.MethodGet, Path: "/docs", NoVersion: true},
		{Method: http.MethodGet, Path: "/openapi/synkronus.yaml", NoVersion: true},
		{Method: http.MethodGet, Path: "/api/users"}, // a problem
		{Method: http.MethodPost, Path: "/api/auth/login", Body: map[string]string{"username": "admin", "password": servertest.AdminPassword}},
	} {
		res := env.Do(req)
		require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"), "%s %s", req.Method, req.Path)
	}

	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: map[string]string{"username": "admin", "password": servertest.AdminPassword}})
	require.Equal(t, http.StatusOK, res.Status)
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"), "tokens must not be cached")

	// The docs page shows text from the contract: nothing may run or load on it.
	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/docs", NoVersion: true})
	csp := res.Header.Get("Content-Security-Policy")
	require.Contains(t, csp, "default-src 'none'")
	require.Contains(t, csp, "frame-ancestors 'none'")
	require.NotContains(t, csp, "unsafe-inline")
	require.NotContains(t, csp, "script-src")
	style := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindSubmatch(res.Body)
	require.NotNil(t, style, "the page has its style sheet")
	sum := sha256.Sum256(style[1])
	require.Contains(t, csp, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'", "the CSP allows exactly the page's own style sheet")
}
