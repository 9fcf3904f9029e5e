package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/appbundle/appbundletest"
)

// sentPush is a push the stream sent, with the data of each of its records.
type sentPush struct {
	transmissionID string
	body           []byte
	data           map[string]string // observation id -> data
}

// stream is what the writers sent before the process died, split by whether the server
// acknowledged it (a 200 received) or not (in flight, or refused by a dying process).
type stream struct {
	mu               sync.Mutex
	ackedPushes      []sentPush
	unackedPushes    []sentPush
	ackedUploads     map[string][]byte
	unackedUploads   map[string][]byte
	ackedBundles     int
	pushSeq, fileSeq int
	bundleSeq        int
	deviceID, token  string
	base             string
}

func (s *stream) nextPush() sentPush {
	s.mu.Lock()
	s.pushSeq++
	n := s.pushSeq
	s.mu.Unlock()
	p := sentPush{transmissionID: fmt.Sprintf("tx-crash-%d", n), data: map[string]string{}}
	var records []string
	for i := range 20 {
		id := fmt.Sprintf("obs-crash-%d-%d", n, i)
		data := fmt.Sprintf(`{"push":%d,"i":%d,"pad":%q}`, n, i, hex.EncodeToString(randomBytes(300)))
		p.data[id] = data
		records = append(records, observation(id, data))
	}
	p.body = pushBody(s.deviceID, p.transmissionID, records...)
	return p
}

func (s *stream) pusher(ctx context.Context) {
	for ctx.Err() == nil {
		p := s.nextPush()
		status, _, _, err := send(ctx, http.MethodPost, s.base+"/api/sync/push", s.token, "application/json", p.body, nil)
		s.mu.Lock()
		if err == nil && status == http.StatusOK {
			s.ackedPushes = append(s.ackedPushes, p)
		} else {
			s.unackedPushes = append(s.unackedPushes, p)
		}
		s.mu.Unlock()
	}
}

func (s *stream) uploader(ctx context.Context) {
	for ctx.Err() == nil {
		s.mu.Lock()
		s.fileSeq++
		id := fmt.Sprintf("crash-%d.bin", s.fileSeq)
		s.mu.Unlock()
		file := randomBytes(64<<10 + len(id)*100<<10) // 64 KiB to about 1.5 MiB
		body, ct := multipartFile("file", file)
		status, _, _, err := send(ctx, http.MethodPut, s.base+"/api/attachments/"+id, s.token, ct, body, nil)
		s.mu.Lock()
		if err == nil && status == http.StatusOK {
			s.ackedUploads[id] = file
		} else {
			s.unackedUploads[id] = file
		}
		s.mu.Unlock()
	}
}

func (s *stream) bundler(ctx context.Context) {
	for ctx.Err() == nil {
		files := appbundletest.Sample()
		s.bundleSeq++
		files["app/index.html"] = fmt.Sprintf("<!doctype html><title>build %d</title>", s.bundleSeq)
		body, ct := multipartFile("bundle", appbundletest.Files(files))
		status, _, _, err := send(ctx, http.MethodPost, s.base+"/api/app-bundle/push?activate=true", s.token, ct, body, nil)
		if err == nil && status == http.StatusOK {
			s.mu.Lock()
			s.ackedBundles++
			s.mu.Unlock()
		}
	}
}

func (s *stream) progress() (pushes, uploads, bundles int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.ackedPushes), len(s.ackedUploads), s.ackedBundles
}

// A server process killed with SIGKILL while pushes, uploads and bundle pushes stream in
// loses nothing it acknowledged, and shows nothing half-written once restarted: every
// acknowledged record and file is there, byte for byte; a push in flight is all there or
// not at all, and its retry is harmless; an upload in flight is served whole or not at
// all; the active bundle's manifest lists files that are all there.
func TestProcessKilledMidStreamKeepsEveryAcknowledgedWrite(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), clusterTimeout)
	defer cancel()
	env := map[string]string{"DATABASE_URL": freshDatabaseURL(t), "ADMIN_PASSWORD": "crash-test-password", "DATA_DIR": t.TempDir()}
	p := start(t, ctx, env)
	s := &stream{deviceID: "device-crash", base: p.baseURL(t, ctx), ackedUploads: map[string][]byte{}, unackedUploads: map[string][]byte{}}
	s.token = loginToken(t, ctx, s.base, "admin", "crash-test-password")

	streamCtx, stopStream := context.WithCancel(ctx)
	var writers sync.WaitGroup
	for range 3 {
		writers.Go(func() { s.pusher(streamCtx) })
	}
	for range 2 {
		writers.Go(func() { s.uploader(streamCtx) })
	}
	writers.Go(func() { s.bundler(streamCtx) })
	for {
		pushes, uploads, bundles := s.progress()
		if pushes >= 15 && uploads >= 6 && bundles >= 2 {
			break
		}
		select {
		case <-ctx.Done():
			stopStream()
			t.Fatalf("the stream made too little progress: %d pushes, %d uploads, %d bundles acknowledged", pushes, uploads, bundles)
		case <-time.After(20 * time.Millisecond):
		}
	}
	require.NoError(t, p.cmd.Process.Signal(syscall.SIGKILL))
	<-p.done
	stopStream()
	writers.Wait()
	pushes, uploads, bundles := s.progress()
	t.Logf("killed after %d pushes, %d uploads and %d bundle pushes were acknowledged; %d pushes and %d uploads unacknowledged",
		pushes, uploads, bundles, len(s.unackedPushes), len(s.unackedUploads))

	restarted := start(t, ctx, env)
	base := restarted.baseURL(t, ctx)
	token := loginToken(t, ctx, base, "admin", "crash-test-password")

	// Records: every acknowledged one, as sent; a push in flight wholly or not at all.
	got := pullAll(t, ctx, base, token)
	known := map[string]string{}
	for _, push := range s.ackedPushes {
		for id, data := range push.data {
			require.Contains(t, got, id, "acknowledged record %s is kept", id)
			require.JSONEq(t, data, string(got[id].Data))
			known[id] = data
		}
	}
	for _, push := range s.unackedPushes {
		present := 0
		for id, data := range push.data {
			if r, ok := got[id]; ok {
				present++
				require.JSONEq(t, data, string(r.Data))
			}
			known[id] = data
		}
		require.Contains(t, []int{0, len(push.data)}, present, "push %s is all there or not at all", push.transmissionID)
		// Its retry is harmless: answered from the receipt, or stored now.
		status, _, body, err := send(ctx, http.MethodPost, base+"/api/sync/push", token, "application/json", push.body, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, "%s", body)
	}
	for id := range got {
		require.Contains(t, known, id, "only records that were sent exist")
	}
	after := pullAll(t, ctx, base, token)
	require.Len(t, after, len(known), "after the retries every record sent is stored")
	versions := map[int64]string{}
	for id, r := range after {
		require.NotContains(t, versions, r.Version, "versions are unique")
		versions[r.Version] = id
	}
	requireConsistentDatabase(t, ctx, env["DATABASE_URL"])

	// Attachments: the manifest lists every acknowledged upload, and nothing it lists is
	// partial; an upload in flight is served whole or not at all.
	status, body := call(t, ctx, http.MethodPost, base+"/api/attachments/manifest", token, map[string]any{"client_id": "checker", "since_version": 0})
	require.Equal(t, http.StatusOK, status, "%s", body)
	var manifest struct {
		Operations []struct {
			AttachmentID string `json:"attachment_id"`
			Operation    string `json:"operation"`
			Size         int64  `json:"size"`
		} `json:"operations"`
	}
	require.NoError(t, json.Unmarshal(body, &manifest))
	listed := map[string]int64{}
	for _, op := range manifest.Operations {
		require.Equal(t, "download", op.Operation)
		listed[op.AttachmentID] = op.Size
	}
	for id := range s.ackedUploads {
		require.Contains(t, listed, id, "acknowledged upload %s is listed", id)
	}
	for id, size := range listed {
		file, ok := s.ackedUploads[id]
		if !ok {
			file, ok = s.unackedUploads[id]
		}
		require.True(t, ok, "only uploads that were sent are listed: %s", id)
		require.Equal(t, int64(len(file)), size)
		status, _, content, err := send(ctx, http.MethodGet, base+"/api/attachments/"+id, token, "", nil, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status)
		require.True(t, bytes.Equal(file, content), "attachment %s is served byte for byte", id)
	}
	for id := range s.unackedUploads {
		if _, ok := listed[id]; ok {
			continue
		}
		status, _, _, err := send(ctx, http.MethodGet, base+"/api/attachments/"+id, token, "", nil, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusNotFound, status, "an unlisted upload %s is not served at all", id)
	}

	// The active bundle's manifest lists files that are all there, with their hashes.
	status, _, body, err := send(ctx, http.MethodGet, base+"/api/app-bundle/manifest", token, "", nil, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, status, "%s", body)
	var bundle struct {
		Files []struct {
			Path string `json:"path"`
			Hash string `json:"hash"`
		} `json:"files"`
	}
	require.NoError(t, json.Unmarshal(body, &bundle))
	require.NotEmpty(t, bundle.Files)
	for _, f := range bundle.Files {
		status, _, content, err := send(ctx, http.MethodGet, base+"/api/app-bundle/download/"+url.PathEscape(f.Path), token, "", nil, nil)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, status, f.Path)
		sum := sha256.Sum256(content)
		require.Equal(t, hex.EncodeToString(sum[:]), f.Hash, f.Path)
	}

	require.NoError(t, restarted.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, restarted.exitCode(t, ctx))
}

// requireConsistentDatabase checks what a half-finished write would break: no version
// above the counter, every current state's version unique, and every revision in the
// history older than its observation's current state.
func requireConsistentDatabase(t *testing.T, ctx context.Context, dbURL string) {
	t.Helper()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(context.WithoutCancel(ctx))
	var aboveCounter, duplicateVersions, historyAhead int
	require.NoError(t, conn.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM observations WHERE version > (SELECT current_version FROM sync_state)),
		(SELECT count(*) - count(DISTINCT version) FROM observations),
		(SELECT count(*) FROM observation_revisions r JOIN observations o USING (observation_id) WHERE r.version IS NOT NULL AND r.version >= o.version)`,
	).Scan(&aboveCounter, &duplicateVersions, &historyAhead))
	require.Zero(t, aboveCounter)
	require.Zero(t, duplicateVersions)
	require.Zero(t, historyAhead)
}
