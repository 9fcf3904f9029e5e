package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server/passwords"
)

// binary is the server built once for every process test.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "synkronus-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "synkronus")
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "error building synkronus: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// processTimeout bounds each process test, so that a hung server fails the test instead of the run.
const processTimeout = 20 * time.Second

// freshDatabaseURL names a database that does not exist yet on the test server, and drops
// it when the test ends.
func freshDatabaseURL(t *testing.T) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "synkronus_test_" + hex.EncodeToString(b[:])
	u, err := url.Parse(dbtest.ServerURL())
	require.NoError(t, err)
	u.Path = "/" + name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, dbtest.ServerURL())
		if err != nil {
			t.Errorf("error connecting to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			t.Errorf("error dropping %s: %v", name, err)
		}
	})
	return u.String()
}

// process is a running synkronus.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has exited and its output is read

	mu          sync.Mutex
	stderr      bytes.Buffer
	addr        string
	metricsAddr string
	listened    chan struct{}
}

var passwordLine = regexp.MustCompile(`Created admin account "([^"]+)" with password: (\S+)`)

// start runs the binary with exactly the given environment (plus quiet defaults), in an
// empty directory so that no .env file is picked up.
func start(t *testing.T, ctx context.Context, env map[string]string) *process {
	t.Helper()
	vars := map[string]string{"HOST": "127.0.0.1", "PORT": "0", "LOG_FORMAT": "json", "BCRYPT_COST": "4", "DATA_DIR": t.TempDir()}
	for k, v := range env {
		vars[k] = v
	}
	cmd := exec.CommandContext(ctx, binary)
	cmd.Dir = t.TempDir()
	cmd.Env = []string{}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.WaitDelay = 5 * time.Second
	pipe, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	p := &process{cmd: cmd, done: make(chan struct{}), listened: make(chan struct{})}
	go p.read(pipe)
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("synkronus stderr:\n%s", p.output())
		}
	})
	return p
}

func (p *process) read(r io.Reader) {
	defer func() { _ = p.cmd.Wait(); close(p.done) }()
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		p.mu.Lock()
		p.stderr.WriteString(line + "\n")
		p.mu.Unlock()
		var entry struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "serving metrics" {
			p.mu.Lock()
			p.metricsAddr = entry.Addr
			p.mu.Unlock()
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "synkronus listening" {
			p.mu.Lock()
			p.addr = entry.Addr
			p.mu.Unlock()
			close(p.listened)
		}
	}
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// baseURL waits until the process listens and returns its URL.
func (p *process) baseURL(t *testing.T, ctx context.Context) string {
	t.Helper()
	select {
	case <-p.listened:
		p.mu.Lock()
		defer p.mu.Unlock()
		return "http://" + p.addr
	case <-p.done:
		t.Fatalf("synkronus exited (%v) before listening:\n%s", p.cmd.ProcessState, p.output())
	case <-ctx.Done():
		t.Fatalf("synkronus did not listen in time:\n%s", p.output())
	}
	return ""
}

// exitCode waits for the process to end and returns its exit status.
func (p *process) exitCode(t *testing.T, ctx context.Context) int {
	t.Helper()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	case <-ctx.Done():
		t.Fatalf("synkronus did not exit in time:\n%s", p.output())
	}
	return 0
}

func (p *process) generatedPasswords() [][]string {
	return passwordLine.FindAllStringSubmatch(p.output(), -1)
}

func call(t *testing.T, ctx context.Context, method, url, token string, body any) (int, []byte) {
	t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	require.NoError(t, err)
	req.Header.Set("X-Ode-Version", "1.0.0")
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, b
}

func loginToken(t *testing.T, ctx context.Context, base, username, password string) string {
	t.Helper()
	status, body := call(t, ctx, http.MethodPost, base+"/api/auth/login", "", map[string]string{"username": username, "password": password})
	require.Equal(t, http.StatusOK, status, "login: %s", body)
	var auth struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.Unmarshal(body, &auth))
	require.NotEmpty(t, auth.Token)
	return auth.Token
}

func TestProcessFirstStartGeneratesAdminAndStopsCleanly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	dbURL := freshDatabaseURL(t)

	p := start(t, ctx, map[string]string{"DATABASE_URL": dbURL})
	base := p.baseURL(t, ctx)
	generated := p.generatedPasswords()
	require.Len(t, generated, 1, "the generated password is printed once:\n%s", p.output())
	username, password := generated[0][1], generated[0][2]
	require.Equal(t, "admin", username)
	require.Equal(t, 1, strings.Count(p.output(), password), "the password appears nowhere else, such as the JSON log")

	status, body := call(t, ctx, http.MethodGet, base+"/health", "", nil)
	require.Equal(t, http.StatusOK, status, "health: %s", body)
	token := loginToken(t, ctx, base, username, password)
	status, body = call(t, ctx, http.MethodGet, base+"/api/users", token, nil)
	require.Equal(t, http.StatusOK, status, "the generated account is an admin: %s", body)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.exitCode(t, ctx), "SIGTERM is a clean stop:\n%s", p.output())

	// A restart on the same database keeps the account and prints no new password.
	again := start(t, ctx, map[string]string{"DATABASE_URL": dbURL})
	base = again.baseURL(t, ctx)
	require.Empty(t, again.generatedPasswords())
	loginToken(t, ctx, base, username, password)
	// The generated signing key is kept too: the earlier token is still accepted.
	status, body = call(t, ctx, http.MethodGet, base+"/api/version", token, nil)
	require.Equal(t, http.StatusOK, status, "a token survives a restart: %s", body)
	require.NoError(t, again.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, again.exitCode(t, ctx))
}

func TestProcessUsesConfiguredAdminPassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	p := start(t, ctx, map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_USERNAME": "chief", "ADMIN_PASSWORD": "configured-password"})
	base := p.baseURL(t, ctx)
	require.Empty(t, p.generatedPasswords())
	require.NotContains(t, p.output(), "configured-password", "a configured password is never printed")
	loginToken(t, ctx, base, "chief", "configured-password")
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, p.exitCode(t, ctx))
}

func TestProcessExitsWhenDatabaseIsUnreachable(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	p := start(t, ctx, map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/synkronus_unreachable?sslmode=disable&connect_timeout=5"})
	code := p.exitCode(t, ctx)
	require.NotEqual(t, 0, code)
	out := p.output()
	require.Contains(t, out, "synkronus_unreachable", "the message names the database")
	require.Contains(t, out, "DATABASE_URL", "the message names the setting to check")
	require.NotContains(t, out, "synkronus listening")
}

func TestProcessExitsWhenPortIsInUse(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	port := strconv.Itoa(taken.Addr().(*net.TCPAddr).Port)

	p := start(t, ctx, map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_PASSWORD": "pw", "PORT": port})
	require.NotEqual(t, 0, p.exitCode(t, ctx))
	out := p.output()
	require.Contains(t, out, "127.0.0.1:"+port)
	require.Contains(t, out, "in use")
}

func TestProcessExitsOnBadConfiguration(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	p := start(t, ctx, map[string]string{"DATABASE_URL": "postgres://postgres@127.0.0.1:1/never_used", "PORT": "abc", "LOG_LEVEL": "loud"})
	require.Equal(t, 2, p.exitCode(t, ctx))
	out := p.output()
	require.Contains(t, out, "invalid configuration")
	require.Contains(t, out, "PORT")
	require.Contains(t, out, "LOG_LEVEL", "every problem is reported")
}

func TestProcessesStartingTogetherShareOneSetup(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	dbURL := freshDatabaseURL(t)

	a := start(t, ctx, map[string]string{"DATABASE_URL": dbURL})
	b := start(t, ctx, map[string]string{"DATABASE_URL": dbURL})
	baseA, baseB := a.baseURL(t, ctx), b.baseURL(t, ctx)

	generated := append(a.generatedPasswords(), b.generatedPasswords()...)
	require.Len(t, generated, 1, "exactly one process created the admin:\nA:\n%s\nB:\n%s", a.output(), b.output())
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))
	var users, admins int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE role = 'admin') FROM users").Scan(&users, &admins))
	require.Equal(t, 1, users)
	require.Equal(t, 1, admins)

	username, password := generated[0][1], generated[0][2]
	fromA := loginToken(t, ctx, baseA, username, password)
	fromB := loginToken(t, ctx, baseB, username, password)
	for _, c := range []struct{ base, token string }{{baseB, fromA}, {baseA, fromB}} {
		status, body := call(t, ctx, http.MethodGet, c.base+"/api/version", c.token, nil)
		require.Equal(t, http.StatusOK, status, "a token of one process is accepted by the other: %s", body)
	}

	for _, p := range []*process{a, b} {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		require.Equal(t, 0, p.exitCode(t, ctx))
	}
}

// The process test above rarely overlaps the two first starts exactly (the migration lock
// staggers them); this one makes the admin bootstrap itself race, many times over.
func TestBootstrapAdminCreatesExactlyOneAdminUnderConcurrency(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for range 10 {
		url := dbtest.NewDBURL(t)
		const starts = 8
		errs := make([]error, starts)
		var wg sync.WaitGroup
		for i := range starts {
			wg.Go(func() {
				pool, err := pgxpool.New(t.Context(), url)
				if err != nil {
					errs[i] = err
					return
				}
				defer pool.Close()
				// Different names make a double bootstrap visible as two admins.
				cfg := config{AdminUsername: "admin" + strconv.Itoa(i), AdminPassword: "pw"}
				errs[i] = bootstrapAdmin(t.Context(), pool, passwords.NewHasher(4, 1), cfg, log)
			})
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "start %d", i)
		}
		conn, err := pgx.Connect(t.Context(), url)
		require.NoError(t, err)
		var users int
		err = conn.QueryRow(t.Context(), "SELECT count(*) FROM users").Scan(&users)
		_ = conn.Close(t.Context())
		require.NoError(t, err)
		require.Equal(t, 1, users)
	}
}

// loginAs sends a login with the given X-Forwarded-For and returns the status.
func loginAs(t *testing.T, ctx context.Context, base, forwardedFor, password string) int {
	t.Helper()
	b, err := json.Marshal(map[string]string{"username": "admin", "password": password})
	require.NoError(t, err)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/api/auth/login", bytes.NewReader(b))
	require.NoError(t, err)
	req.Header.Set("X-Ode-Version", "1.0.0")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Forwarded-For", forwardedFor)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, res.Body)
	_ = res.Body.Close()
	return res.StatusCode
}

// Behind a load balancer every request comes from the balancer's address: unless the
// server believes X-Forwarded-For from it, one user's failed logins lock out everyone.
func TestProcessBelievesForwardedForOnlyFromTrustedProxies(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	const password = "the-admin-password"
	failTenTimes := func(base string) {
		for range 10 {
			require.Equal(t, http.StatusUnauthorized, loginAs(t, ctx, base, "198.51.100.1", "wrong"))
		}
		require.Equal(t, http.StatusTooManyRequests, loginAs(t, ctx, base, "198.51.100.1", password), "that client is throttled")
	}

	behindProxy := start(t, ctx, map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_PASSWORD": password, "TRUSTED_PROXIES": "127.0.0.0/8"})
	base := behindProxy.baseURL(t, ctx)
	failTenTimes(base)
	require.Equal(t, http.StatusOK, loginAs(t, ctx, base, "198.51.100.2", password), "another client behind the same proxy is not")
	// A client cannot pretend to be someone else by sending the header itself: the
	// nearest untrusted address counts.
	require.Equal(t, http.StatusTooManyRequests, loginAs(t, ctx, base, "203.0.113.9, 198.51.100.1", password))

	direct := start(t, ctx, map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_PASSWORD": password})
	base = direct.baseURL(t, ctx)
	failTenTimes(base)
	require.Equal(t, http.StatusTooManyRequests, loginAs(t, ctx, base, "198.51.100.2", password),
		"without TRUSTED_PROXIES the header is anyone's to send, so it is ignored")
}

// partialLogin opens a connection and sends a login whose body stops short of its
// Content-Length; send the rest with the returned function.
func partialLogin(t *testing.T, base, password string) (net.Conn, func()) {
	t.Helper()
	body := fmt.Sprintf(`{"username":"admin","password":%q}`, password)
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	_, err = fmt.Fprintf(conn, "POST /api/auth/login HTTP/1.1\r\nHost: x\r\nX-Ode-Version: 1.0.0\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body[:10])
	require.NoError(t, err)
	return conn, func() {
		_, err := conn.Write([]byte(body[10:]))
		require.NoError(t, err)
	}
}

// readStatus reads the status of the response on conn, or 0 when the server closed the
// connection without one.
func readStatus(t *testing.T, conn net.Conn) int {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(processTimeout)))
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return 0
	}
	_ = res.Body.Close()
	return res.StatusCode
}

func TestProcessCutsOffAStalledBody(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	p := start(t, ctx, map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_PASSWORD": "pw", "BODY_READ_TIMEOUT": "1s"})
	conn, _ := partialLogin(t, p.baseURL(t, ctx), "pw")
	require.Equal(t, http.StatusRequestTimeout, readStatus(t, conn), "the connection is not held for ever:\n%s", p.output())
}

func TestProcessShutdownDrainsAndExitsCleanly(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()
	p := start(t, ctx, map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_PASSWORD": "pw"})
	base := p.baseURL(t, ctx)
	stalled, _ := partialLogin(t, base, "pw")
	finishing, finish := partialLogin(t, base, "pw")
	// Give the server a moment to accept both connections and read their headers: a
	// connection it has not accepted yet is refused once it stops listening.
	time.Sleep(500 * time.Millisecond)

	require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
	finish()
	require.Equal(t, http.StatusOK, readStatus(t, finishing), "a request under way is served while draining")
	require.Equal(t, http.StatusRequestTimeout, readStatus(t, stalled), "a stalled upload is cut off instead of holding up the shutdown")
	require.Equal(t, 0, p.exitCode(t, ctx), "a drained shutdown is a clean stop:\n%s", p.output())
}
