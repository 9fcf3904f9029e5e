package server_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// tcpProxy forwards connections to PostgreSQL until it is stopped, which closes every
// connection it carries and refuses new ones: the database "goes away".
type tcpProxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
}

func newTCPProxy(t *testing.T, target string) *tcpProxy {
	p := &tcpProxy{t: t, target: target}
	p.start("127.0.0.1:0")
	t.Cleanup(p.stop)
	return p
}

func (p *tcpProxy) start(addr string) {
	ln, err := net.Listen("tcp", addr)
	require.NoError(p.t, err)
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				_ = client.Close()
				continue
			}
			p.mu.Lock()
			p.conns = append(p.conns, client, server)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(server, client); _ = server.Close() }()
			go func() { _, _ = io.Copy(client, server); _ = client.Close() }()
		}
	}()
}

// stop closes the listener and every connection.
func (p *tcpProxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.ln.Close()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// restart listens again on the same address.
func (p *tcpProxy) restart() { p.start(p.addr) }

// internals are pieces of the database connection that must never reach a client.
func internals(t *testing.T, dbURL string) []string {
	u, err := url.Parse(dbURL)
	require.NoError(t, err)
	return []string{u.Hostname(), u.Port(), u.User.Username(), strings.TrimPrefix(u.Path, "/"),
		"postgres", "dial", "connect", "SQLSTATE", "pgx", "tcp"}
}

func requireUnavailable(t *testing.T, call string, res *servertest.Response, secrets []string) {
	t.Helper()
	require.Equal(t, http.StatusServiceUnavailable, res.Status, "%s: %s", call, res.Body)
	requireProblem(t, res, http.StatusServiceUnavailable, "service_unavailable")
	require.Equal(t, "5", res.Header.Get("Retry-After"), call)
	for _, s := range secrets {
		require.NotContains(t, strings.ToLower(string(res.Body)), strings.ToLower(s), "%s: internal detail in the answer", call)
	}
}

// outageCalls are what clients do during an outage; each must be answered 503 with
// Retry-After, never 500, 401 or 403, and never with internal error text.
func outageCalls(t *testing.T, env *servertest.Env, secrets []string, admin, writer, refreshToken string) {
	t.Helper()
	for name, req := range map[string]servertest.Request{
		"login":               {Method: http.MethodPost, Path: "/api/auth/login", Body: map[string]string{"username": "admin", "password": servertest.AdminPassword}},
		"login at root path":  {Method: http.MethodPost, Path: "/auth/login", NoVersion: true, Body: map[string]string{"username": "admin", "password": servertest.AdminPassword}},
		"refresh":             {Method: http.MethodPost, Path: "/api/auth/refresh", Body: map[string]string{"refreshToken": refreshToken}},
		"token check":         {Method: http.MethodGet, Path: "/api/users", Token: admin},
		"pull":                {Method: http.MethodPost, Path: "/api/sync/pull", Token: writer, Body: map[string]any{"client_id": "c1"}},
		"push":                {Method: http.MethodPost, Path: "/api/sync/push", Token: writer, Body: map[string]any{"client_id": "c1", "transmission_id": "t1", "records": []any{}}},
		"version":             {Method: http.MethodGet, Path: "/api/version", Token: writer},
		"change own password": {Method: http.MethodPost, Path: "/api/users/change-password", Token: writer, Body: map[string]string{"currentPassword": "pw-writer", "newPassword": "new"}},
	} {
		requireUnavailable(t, name, env.Do(req), secrets)
	}
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/health"})
	require.Equal(t, http.StatusServiceUnavailable, res.Status)
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	// The service document needs no database.
	require.Equal(t, http.StatusOK, env.Do(servertest.Request{Method: http.MethodGet, Path: "/"}).Status)
}

func TestDatabaseOutageAnswers503(t *testing.T) {
	t.Parallel()

	t.Run("connections closed, port refused", func(t *testing.T) {
		t.Parallel()
		dbURL := dbtest.NewDBURL(t)
		u, err := url.Parse(dbURL)
		require.NoError(t, err)
		proxy := newTCPProxy(t, u.Host)
		u.Host = proxy.addr
		pool, err := pgxpool.New(t.Context(), u.String())
		require.NoError(t, err)
		t.Cleanup(pool.Close)
		// Every token is checked against the database, as on a process whose cache expired.
		env := servertest.NewOnPool(t, pool, func(o *server.Options) { o.AccountCacheTTL = time.Nanosecond })
		writer := env.CreateUser("writer", "read-write")
		pair := loginPair(t, env, "admin", servertest.AdminPassword)

		proxy.stop()
		outageCalls(t, env, internals(t, u.String()), pair.Token, writer, pair.RefreshToken)

		proxy.restart()
		require.Eventually(t, func() bool { return pool.Ping(t.Context()) == nil }, 10*time.Second, 50*time.Millisecond)
		require.Equal(t, http.StatusOK, callVersion(t, env, writer).Status, "the server recovers with the database")
		require.Equal(t, http.StatusOK, refresh(t, env, pair.RefreshToken).Status, "the refresh token survived the outage")
	})

	t.Run("connections terminated, access refused", func(t *testing.T) {
		t.Parallel()
		env := servertest.New(t, func(o *server.Options) { o.AccountCacheTTL = time.Nanosecond })
		writer := env.CreateUser("writer", "read-write")
		pair := loginPair(t, env, "admin", servertest.AdminPassword)

		name := env.Pool.Config().ConnConfig.Database
		admin, err := pgx.Connect(t.Context(), dbtest.ServerURL())
		require.NoError(t, err)
		defer admin.Close(context.WithoutCancel(t.Context()))
		_, err = admin.Exec(t.Context(), "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" ALLOW_CONNECTIONS false")
		require.NoError(t, err)
		t.Cleanup(func() {
			_, _ = admin.Exec(context.Background(), "ALTER DATABASE "+pgx.Identifier{name}.Sanitize()+" ALLOW_CONNECTIONS true")
		})
		_, err = admin.Exec(t.Context(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
		require.NoError(t, err)

		outageCalls(t, env, internals(t, env.Pool.Config().ConnString()), pair.Token, writer, pair.RefreshToken)
	})
}
