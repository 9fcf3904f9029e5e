package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// buildServer compiles ./cmd/synkronus of the enclosing module into dir.
func buildServer(ctx context.Context, dir string) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == "/dev/null" {
		return "", errors.New("not inside the synkronus module: run from the repository or pass -server-bin")
	}
	bin := filepath.Join(dir, "synkronus")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/synkronus")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("error building the server: %w\n%s", err, out)
	}
	return bin, nil
}

// database is the throwaway database of one run.
type database struct {
	name      string
	adminURL  string // the maintenance database "postgres", for CREATE and DROP
	serverURL string // the benchmark database, as the server's DATABASE_URL
}

// newDatabase names a fresh database on the server at hostURL, a postgres:// URL whose
// path, if any, is replaced. sslmode defaults to disable.
func newDatabase(hostURL string) (database, error) {
	u, err := url.Parse(hostURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return database{}, fmt.Errorf("-db-host-url %q is not a postgres:// URL", hostURL)
	}
	q := u.Query()
	if !q.Has("sslmode") {
		q.Set("sslmode", "disable")
	}
	u.RawQuery = q.Encode()
	name := "synkbench_" + randomToken(10)
	withDB := func(db string) string {
		v := *u
		v.Path = "/" + db
		return v.String()
	}
	return database{name: name, adminURL: withDB("postgres"), serverURL: withDB(name)}, nil
}

func (d database) exec(ctx context.Context, sql string) error {
	conn, err := pgx.Connect(ctx, d.adminURL)
	if err != nil {
		return fmt.Errorf("error connecting to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, sql)
	return err
}

func (d database) create(ctx context.Context) error {
	if err := d.exec(ctx, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		return fmt.Errorf("error creating database %s: %w", d.name, err)
	}
	return nil
}

// drop removes the database even if connections to it remain.
func (d database) drop(ctx context.Context) error {
	if err := d.exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)"); err != nil {
		return fmt.Errorf("error dropping database %s (drop it by hand): %w", d.name, err)
	}
	return nil
}

// describeMachine reports what the figures depend on besides the code.
func describeMachine(ctx context.Context, hostURL string) (machineInfo, error) {
	m := machineInfo{NProc: runtime.NumCPU(), GoVersion: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH}
	if out, err := exec.CommandContext(ctx, "go", "version").Output(); err == nil {
		m.GoVersion = strings.TrimPrefix(strings.TrimSpace(string(out)), "go version ")
	}
	db, err := newDatabase(hostURL)
	if err != nil {
		return m, err
	}
	conn, err := pgx.Connect(ctx, db.adminURL)
	if err != nil {
		return m, fmt.Errorf("error connecting to PostgreSQL (check -db-host-url): %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&m.PostgresVersion); err != nil {
		return m, fmt.Errorf("error reading the PostgreSQL version: %w", err)
	}
	return m, nil
}

// serverProc is a running server process.
type serverProc struct {
	cmd     *exec.Cmd
	baseURL string
	output  *tailBuffer
	exited  chan struct{} // closed once the process has been waited for
	waitErr error         // valid after exited is closed
}

// startServer runs bin in dir on a free local port with the given database and extra
// environment (nothing else is inherited), and waits until /health answers 200.
func startServer(ctx context.Context, bin, dir, databaseURL string, env []string, timeout time.Duration) (*serverProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Dir = dir // no stray .env is read, and DATA_DIR lands in the work directory
	cmd.Env = append([]string{
		"DATABASE_URL=" + databaseURL, "HOST=127.0.0.1", "PORT=" + strconv.Itoa(port),
		"LOG_LEVEL=warn", "DATA_DIR=" + filepath.Join(dir, "data"),
	}, env...)
	// Own process group: a terminal's Ctrl-C reaches only us, and we stop the server in
	// order. Pdeathsig stops it should we be killed outright.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	s := &serverProc{cmd: cmd, baseURL: "http://127.0.0.1:" + strconv.Itoa(port), output: &tailBuffer{max: 16 << 10}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.output, s.output
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("error starting the server: %w", err)
	}
	go func() {
		s.waitErr = cmd.Wait()
		close(s.exited)
	}()
	if err := s.waitHealthy(ctx, timeout); err != nil {
		_ = cmd.Process.Kill() // the error says why; an exit already seen makes this a no-op
		<-s.exited
		return nil, err
	}
	return s, nil
}

func (s *serverProc) pid() int { return s.cmd.Process.Pid }

func (s *serverProc) waitHealthy(ctx context.Context, timeout time.Duration) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	deadline := time.After(timeout)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("the server exited during start (%v); its output ends with:\n%s", s.waitErr, s.output.tail())
		case <-deadline:
			return fmt.Errorf("the server was not healthy after %s; its output ends with:\n%s", timeout, s.output.tail())
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
		resp, err := hc.Get(s.baseURL + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
	}
}

// stop sends SIGTERM and waits up to timeout for a clean exit, then kills the server.
// An exit before stop was called, or an unclean one, is an error.
func (s *serverProc) stop(timeout time.Duration) error {
	select {
	case <-s.exited:
		return fmt.Errorf("the server exited during the run (%v); its output ends with:\n%s", s.waitErr, s.output.tail())
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		if s.waitErr != nil {
			return fmt.Errorf("the server stopped with %v; its output ends with:\n%s", s.waitErr, s.output.tail())
		}
		return nil
	case <-time.After(timeout):
		_ = s.cmd.Process.Kill()
		<-s.exited
		return fmt.Errorf("the server did not stop within %s of SIGTERM and was killed", timeout)
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("error finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// tailBuffer is an io.Writer keeping only the last max bytes written; safe for
// concurrent use, as the server's stdout and stderr share it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// tail returns the last 30 complete lines.
func (t *tailBuffer) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := bytes.Split(bytes.TrimRight(t.buf, "\n"), []byte("\n"))
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	if len(lines) == 1 && len(lines[0]) == 0 {
		return "(no output)"
	}
	return string(bytes.Join(lines, []byte("\n")))
}

// randomToken returns n random characters from [0-9a-z]; the shape of the 16-character
// transmission ids WatermelonDB generates in the Formulus app.
func randomToken(n int) string {
	return randomTokenFrom(rand.N[uint64], n)
}

func randomTokenFrom(intN func(uint64) uint64, n int) string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[intN(uint64(len(alphabet)))]
	}
	return string(b)
}
