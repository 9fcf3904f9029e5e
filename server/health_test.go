package server_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/servertest"
)

func TestHealthReportsOK(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/health", NoVersion: true})
	require.Equal(t, http.StatusOK, res.Status)
	require.Equal(t, "ok", res.Map(t)["status"])
}

func TestVersionHandshake(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", NoVersion: true, Body: map[string]string{"username": "admin", "password": "x"}})
	require.Equal(t, http.StatusUpgradeRequired, res.Status)
	require.Equal(t, "1.0.0", res.Header.Get("X-Synkronus-Version"))
	require.Equal(t, "1.0.0", res.Map(t)["synkronus_version"])

	// the root path of older clients needs no header
	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/auth/login", NoVersion: true, Body: map[string]string{"username": "admin", "password": servertest.AdminPassword}})
	require.Equal(t, http.StatusOK, res.Status)
}
