package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/server/appbundle/appbundletest"
	"github.com/opendataensemble/synkronus/server/blobstore/blobstoretest"
)

// clusterTimeout bounds the tests that run several processes and many requests.
const clusterTimeout = 90 * time.Second

// send makes one request and returns its answer, or the transport's error (a process
// killed mid-request is expected in some tests, so this never fails the test itself).
func send(ctx context.Context, method, url, token, contentType string, body []byte, header map[string]string) (int, http.Header, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	req.Header.Set("X-Ode-Version", "1.0.0")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return 0, nil, nil, err
	}
	return res.StatusCode, res.Header, b, nil
}

// multipartFile encodes data as the multipart field of an upload.
func multipartFile(field string, data []byte) ([]byte, string) {
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	fw, _ := w.CreateFormFile(field, "file.bin")
	_, _ = fw.Write(data)
	_ = w.Close()
	return b.Bytes(), w.FormDataContentType()
}

func observation(id, data string) string {
	return fmt.Sprintf(`{"observation_id":%q,"form_type":"visit","form_version":"1","data":%s,`+
		`"created_at":"2025-12-01T10:00:00Z","updated_at":"2025-12-01T10:00:00Z","deleted":false}`, id, data)
}

func pushBody(clientID, transmissionID string, records ...string) []byte {
	return fmt.Appendf(nil, `{"transmission_id":%q,"client_id":%q,"records":[%s]}`, transmissionID, clientID, strings.Join(records, ","))
}

// pulled is a record as a pull returns it.
type pulled struct {
	ObservationID string          `json:"observation_id"`
	Data          json.RawMessage `json:"data"`
	Version       int64           `json:"version"`
}

// pullAll pulls every record from base, page by page, and returns them by id.
func pullAll(t *testing.T, ctx context.Context, base, token string) map[string]pulled {
	t.Helper()
	out := map[string]pulled{}
	var since int64
	for {
		status, body := call(t, ctx, http.MethodPost, base+"/api/sync/pull?limit=500", token,
			map[string]any{"client_id": "puller", "since": map[string]any{"version": since}})
		require.Equal(t, http.StatusOK, status, "%s", body)
		var page struct {
			ChangeCutoff int64    `json:"change_cutoff"`
			HasMore      bool     `json:"has_more"`
			Records      []pulled `json:"records"`
		}
		require.NoError(t, json.Unmarshal(body, &page))
		for _, r := range page.Records {
			out[r.ObservationID] = r
		}
		since = page.ChangeCutoff
		if !page.HasMore {
			return out
		}
	}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// startTogether starts n processes on one configuration at the same moment and waits until
// all listen.
func startTogether(t *testing.T, ctx context.Context, n int, env map[string]string) ([]*process, []string) {
	t.Helper()
	procs := make([]*process, n)
	for i := range procs {
		procs[i] = start(t, ctx, env)
	}
	bases := make([]string, n)
	for i, p := range procs {
		bases[i] = p.baseURL(t, ctx)
	}
	return procs, bases
}

// Three processes behind a load balancer share one database and one S3 bucket and nothing
// else: whichever process a request reaches, it sees what the others did.
func TestProcessesServeOneRepository(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), clusterTimeout)
	defer cancel()
	dbURL := freshDatabaseURL(t)
	procs, bases := startTogether(t, ctx, 3, map[string]string{
		"DATABASE_URL": dbURL, "BLOB_URL": blobstoretest.S3URL(t), "TRUSTED_PROXIES": "127.0.0.0/8",
	})

	// They started at once: the migrations ran once, by one process, and one admin exists.
	applied := map[float64]int{}
	var generated [][]string
	for _, p := range procs {
		generated = append(generated, p.generatedPasswords()...)
		for _, line := range strings.Split(p.output(), "\n") {
			var entry struct {
				Msg     string  `json:"msg"`
				Version float64 `json:"version"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "migration applied" {
				applied[entry.Version]++
			}
		}
	}
	files, err := fs.Glob(db.Migrations(), "*.sql")
	require.NoError(t, err)
	require.Len(t, applied, len(files), "every migration was applied")
	for v, n := range applied {
		require.Equal(t, 1, n, "migration %v applied once over all processes", v)
	}
	require.Len(t, generated, 1, "exactly one process created the admin")
	password := generated[0][2]
	token := loginToken(t, ctx, bases[0], "admin", password)

	t.Run("PushThroughOnePullThroughAnother", func(t *testing.T) {
		status, _, body, err := send(ctx, http.MethodPost, bases[0]+"/api/sync/push", token, "application/json",
			pushBody("device-a", "tx-cluster-1", observation("obs-cluster-1", `{"n":1}`), observation("obs-cluster-2", `{"n":2}`)), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "%s", body)
		got := pullAll(t, ctx, bases[1], token)
		require.JSONEq(t, `{"n":1}`, string(got["obs-cluster-1"].Data))
		require.JSONEq(t, `{"n":2}`, string(got["obs-cluster-2"].Data))
		// The retry of that push through a third process is answered from its receipt.
		status, _, again, err := send(ctx, http.MethodPost, bases[2]+"/api/sync/push", token, "application/json",
			pushBody("device-a", "tx-cluster-1", observation("obs-cluster-1", `{"n":1}`), observation("obs-cluster-2", `{"n":2}`)), nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
		require.JSONEq(t, string(body), string(again))
	})

	t.Run("UploadThroughOneDownloadThroughAnother", func(t *testing.T) {
		photo := randomBytes(300 << 10)
		body, ct := multipartFile("file", photo)
		status, _, res, err := send(ctx, http.MethodPut, bases[1]+"/api/attachments/photo-cluster.jpg", token, ct, body, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "%s", res)
		for _, base := range []string{bases[0], bases[2]} {
			status, _, got, err := send(ctx, http.MethodGet, base+"/api/attachments/photo-cluster.jpg", token, "", nil, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, status)
			require.True(t, bytes.Equal(photo, got), "the same bytes from every process")
		}
	})

	t.Run("BundleActivatedOnOneIsServedByAll", func(t *testing.T) {
		body, ct := multipartFile("bundle", appbundletest.Files(appbundletest.Sample()))
		status, _, res, err := send(ctx, http.MethodPost, bases[2]+"/api/app-bundle/push?activate=true", token, ct, body, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "%s", res)
		var etags []string
		var manifests [][]byte
		for _, base := range bases {
			status, h, m, err := send(ctx, http.MethodGet, base+"/api/app-bundle/manifest", token, "", nil, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, status, "%s", m)
			etags, manifests = append(etags, h.Get("ETag")), append(manifests, m)
			status, _, index, err := send(ctx, http.MethodGet, base+"/api/app-bundle/download/app%2Findex.html", token, "", nil, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusOK, status)
			require.Equal(t, appbundletest.Sample()["app/index.html"], string(index))
		}
		require.NotEmpty(t, etags[0])
		require.Equal(t, []string{etags[0], etags[0], etags[0]}, etags, "one entity tag on every process")
		require.Equal(t, manifests[0], manifests[1])
		require.Equal(t, manifests[0], manifests[2])
	})

	t.Run("LoginThrottlingHoldsAcrossProcesses", func(t *testing.T) {
		// Ten failures spread over the processes close the account to that client on all.
		for i := range 10 {
			require.Equal(t, http.StatusUnauthorized, loginAs(t, ctx, bases[i%3], "198.51.100.7", "wrong"))
		}
		for _, base := range bases {
			require.Equal(t, http.StatusTooManyRequests, loginAs(t, ctx, base, "198.51.100.7", password))
		}
		require.Equal(t, http.StatusOK, loginAs(t, ctx, bases[1], "198.51.100.8", password), "another client is let in")
	})

	t.Run("RefreshTokenRotationHoldsAcrossProcesses", func(t *testing.T) {
		login := func(base string) (string, string) {
			status, body := call(t, ctx, http.MethodPost, base+"/api/auth/login", "", map[string]string{"username": "admin", "password": password})
			require.Equal(t, http.StatusOK, status, "%s", body)
			var pair struct{ Token, RefreshToken string }
			require.NoError(t, json.Unmarshal(body, &pair))
			return pair.Token, pair.RefreshToken
		}
		refresh := func(base, refreshToken string) (int, string) {
			status, body := call(t, ctx, http.MethodPost, base+"/api/auth/refresh", "", map[string]string{"refreshToken": refreshToken})
			var pair struct{ RefreshToken string }
			_ = json.Unmarshal(body, &pair)
			return status, pair.RefreshToken
		}
		_, first := login(bases[0])
		status, second := refresh(bases[1], first)
		require.Equal(t, http.StatusOK, status)
		status, third := refresh(bases[2], second)
		require.Equal(t, http.StatusOK, status, "the successor works on another process")
		// The first token, spent, comes back on yet another process after its successor
		// was used: a copy. It is refused and the whole family revoked, on every process.
		status, _ = refresh(bases[0], first)
		require.Equal(t, http.StatusUnauthorized, status)
		for _, base := range bases {
			status, _ = refresh(base, third)
			require.Equal(t, http.StatusUnauthorized, status, "the family is revoked everywhere")
		}
	})

	for _, p := range procs {
		require.NoError(t, p.cmd.Process.Signal(syscall.SIGTERM))
		require.Equal(t, 0, p.exitCode(t, ctx))
	}
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))
	var admins int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM users").Scan(&admins))
	require.Equal(t, 1, admins)
}

// scrapeStatus fetches url (a metrics endpoint) with the token, if any.
func scrapeStatus(t *testing.T, ctx context.Context, url, token string) (int, string) {
	t.Helper()
	status, _, body, err := send(ctx, http.MethodGet, url, token, "", nil, nil)
	require.NoError(t, err)
	return status, string(body)
}

func TestProcessServesMetricsAndAnswersItsHealthcheck(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), processTimeout)
	defer cancel()

	// On an address of their own, behind a token.
	p := start(t, ctx, map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_PASSWORD": "pw", "METRICS_ADDR": "127.0.0.1:0", "METRICS_TOKEN": "scrape-secret"})
	base := p.baseURL(t, ctx)
	loginToken(t, ctx, base, "admin", "pw")
	p.mu.Lock()
	metricsURL := "http://" + p.metricsAddr + "/metrics"
	p.mu.Unlock()
	status, _ := scrapeStatus(t, ctx, metricsURL, "")
	require.Equal(t, http.StatusUnauthorized, status)
	status, body := scrapeStatus(t, ctx, metricsURL, "scrape-secret")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, `synkronus_http_request_duration_seconds_count{operation="login",status="200"} 1`)
	require.Contains(t, body, "synkronus_db_up 1")
	status, _ = scrapeStatus(t, ctx, base+"/metrics", "scrape-secret")
	require.Equal(t, http.StatusNotFound, status, "not on the API's port when they have their own")

	// The health check subcommand reaches the server on its port, and fails elsewhere.
	port := base[strings.LastIndexByte(base, ':')+1:]
	check := exec.CommandContext(ctx, binary, "healthcheck")
	check.Env = []string{"PORT=" + port}
	out, err := check.CombinedOutput()
	require.NoError(t, err, "%s", out)
	check = exec.CommandContext(ctx, binary, "healthcheck")
	check.Env = []string{"PORT=1"}
	out, err = check.CombinedOutput()
	require.Error(t, err, "nothing listens on port 1: %s", out)

	// Without an address of their own, on the API's port, only with the token.
	q := start(t, ctx, map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_PASSWORD": "pw", "METRICS_TOKEN": "scrape-secret"})
	base = q.baseURL(t, ctx)
	status, _ = scrapeStatus(t, ctx, base+"/metrics", "wrong")
	require.Equal(t, http.StatusUnauthorized, status)
	status, body = scrapeStatus(t, ctx, base+"/metrics", "scrape-secret")
	require.Equal(t, http.StatusOK, status)
	require.Contains(t, body, "synkronus_db_pool_max_connections")
}
