package server_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/servertest"
)

// scrape reads the server's metrics, as Prometheus would, into "name{labels}" -> value.
func scrape(t *testing.T, env *servertest.Env, token string) map[string]float64 {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	env.Server.MetricsHandler(token).ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, "%s", rec.Body)
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(rec.Body.Bytes()))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		require.NoError(t, err, line)
		out[line[:i]] = v
	}
	return out
}

func TestMetricsCountSyncAttachmentsAndRequests(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("ana", "read-write"), "formulus-metrics")

	tid := newTransmissionID()
	first := dev.pushWith(tid,
		syncObservation("obs_m_1", "2025-12-01T10:00:00.000Z", `{"a":1}`),
		syncObservation("obs_m_2", "2025-12-01T10:00:00.000Z", `{"a":2}`),
		`{"observation_id":"obs_m_bad","data":{}}`)
	require.Equal(t, 2, first.SuccessCount)
	dev.pushWith(tid,
		syncObservation("obs_m_1", "2025-12-01T10:00:00.000Z", `{"a":1}`),
		syncObservation("obs_m_2", "2025-12-01T10:00:00.000Z", `{"a":2}`),
		`{"observation_id":"obs_m_bad","data":{}}`) // a replay: nothing counted twice
	conflicted := dev.push(syncObservation("obs_m_1", "2025-12-01T09:00:00.000Z", `{"a":"older"}`))
	require.NotNil(t, conflicted.Warnings)
	dev.sync(0)

	photo := bytes.Repeat([]byte("metrics"), 1000)
	require.Equal(t, http.StatusOK, upload(t, env, dev.token, "/api/attachments/photo-m.jpg", photo, "image/jpeg").Status)
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/photo-m.jpg", Token: dev.token})
	require.Equal(t, http.StatusOK, res.Status)
	require.Equal(t, http.StatusNotFound, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/missing", Token: dev.token}).Status)

	m := scrape(t, env, "")
	require.Equal(t, 3.0, m["synkronus_sync_records_pushed_total"], "two of the first push, one of the conflicting one")
	require.Equal(t, 1.0, m[`synkronus_sync_failed_records_total{code="MISSING_FIELD"}`])
	require.Equal(t, 1.0, m["synkronus_sync_replayed_pushes_total"])
	require.Equal(t, 1.0, m["synkronus_sync_conflicts_total"])
	require.Equal(t, 1.0, m["synkronus_sync_quarantined_records"])
	require.Equal(t, 2.0, m["synkronus_sync_records_pulled_total"], "the pull got the two observations' current states")
	require.Greater(t, m[`synkronus_attachment_bytes_total{direction="in"}`], float64(len(photo)), "the upload's body, multipart framing included")
	require.Equal(t, float64(len(photo)), m[`synkronus_attachment_bytes_total{direction="out"}`])

	require.Equal(t, 3.0, m[`synkronus_http_request_duration_seconds_count{operation="syncPush",status="200"}`])
	require.Equal(t, 1.0, m[`synkronus_http_request_duration_seconds_count{operation="downloadAttachment",status="404"}`])
	require.Equal(t, m[`synkronus_http_request_duration_seconds_count{operation="syncPush",status="200"}`],
		m[`synkronus_http_request_duration_seconds_bucket{operation="syncPush",status="200",le="+Inf"}`])
	require.Equal(t, 1.0, m["synkronus_db_up"])
	require.GreaterOrEqual(t, m["synkronus_db_pool_max_connections"], 2.0)
	require.Greater(t, m["synkronus_db_pool_acquires_total"], 0.0)
	require.Contains(t, m, "go_goroutines")

	// Every access log line names the request, the user and, where the request carries
	// one, the client id.
	pushes := env.Logs.Records(map[string]any{"msg": "request", "operation": "syncPush", "user": "ana", "client_id": "formulus-metrics"})
	require.Len(t, pushes, 3)
	require.NotEmpty(t, pushes[0]["request_id"])
	require.NotEmpty(t, env.Logs.Records(map[string]any{"msg": "request", "operation": "syncPull", "client_id": "formulus-metrics"}))
}

func TestMetricsOldestWriteAgeSeesAnOpenWriteTransaction(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	require.Equal(t, 1.0, scrape(t, env, "")["synkronus_db_up"])

	// A transaction holding the sync_state lock, as a stuck push would.
	tx, err := env.Pool.BeginTx(t.Context(), pgx.TxOptions{})
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(t.Context())) }()
	_, err = tx.Exec(t.Context(), "SELECT current_version FROM sync_state WHERE id = 1 FOR UPDATE")
	require.NoError(t, err)
	time.Sleep(1100 * time.Millisecond)
	require.GreaterOrEqual(t, scrape(t, env, "")["synkronus_db_oldest_write_age_seconds"], 1.0)

	require.NoError(t, tx.Rollback(t.Context()))
	require.Less(t, scrape(t, env, "")["synkronus_db_oldest_write_age_seconds"], 1.0)
}

func TestMetricsTokenIsRequiredWhenSet(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	for _, header := range []string{"", "Bearer wrong", "Basic c2VjcmV0"} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		if header != "" {
			req.Header.Set("Authorization", header)
		}
		rec := httptest.NewRecorder()
		env.Server.MetricsHandler("secret").ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnauthorized, rec.Code, fmt.Sprintf("Authorization %q", header))
		require.NotContains(t, rec.Body.String(), "synkronus_")
	}
	require.Contains(t, scrape(t, env, "secret"), "synkronus_db_up")
}
