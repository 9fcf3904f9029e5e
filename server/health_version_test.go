package server_test

import (
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/openapi"
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
