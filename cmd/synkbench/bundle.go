package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/opendataensemble/synkronus/server/appbundle/appbundletest"
)

// bundleResult is the app bundle phase: pushing a large bundle, then serving its
// manifest, with two baselines measured alongside to read the manifest figures against:
// /health (one database round trip, no authentication) and /api/versions (authentication
// and request validation, no database).
type bundleResult struct {
	Files        int          `json:"files"`
	ContentBytes int64        `json:"content_bytes"`
	ArchiveBytes int          `json:"archive_bytes"`
	Pushes       []bundlePush `json:"pushes"`
	PushPeakRSS  float64      `json:"push_peak_rss_mib"`
	Reads        []readRun    `json:"reads"`
	ReadPeakRSS  float64      `json:"read_peak_rss_mib"`
}

type bundlePush struct {
	Name           string  `json:"name"`
	Seconds        float64 `json:"seconds"`
	ArchiveMBPerS  float64 `json:"archive_mb_per_sec"`
	ManifestFiles  int     `json:"manifest_files"`
	NewlyActivated bool    `json:"activated"`
}

// readRun is one read load: its requests are the records of phaseStats.
type readRun struct {
	Name string `json:"name"`
	phaseStats
	// RatioToHealth is requests/s divided by the /health baseline's.
	RatioToHealth float64 `json:"ratio_to_health"`
}

// get fetches path and reads the whole response into buf; it returns the status and
// the response's ETag.
func (c *client) get(ctx context.Context, path, token string, header map[string]string, buf *bytes.Buffer) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("x-ode-version", odeVersion)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	buf.Reset()
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return 0, "", fmt.Errorf("error reading the response of %s: %w", path, err)
	}
	return resp.StatusCode, resp.Header.Get("ETag"), nil
}

// pushArchive uploads an archive as the multipart field "bundle" and returns the number
// of files of the stored version.
func (c *client) pushArchive(ctx context.Context, token string, archive []byte, activate bool) (int, error) {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile("bundle", "bundle.zip")
	if err != nil {
		return 0, err
	}
	if _, err := fw.Write(archive); err != nil {
		return 0, err
	}
	if err := mw.Close(); err != nil {
		return 0, err
	}
	path := "/api/app-bundle/push"
	if activate {
		path += "?activate=true"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+path, &body)
	if err != nil {
		return 0, err
	}
	req.Header.Set("x-ode-version", odeVersion)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	if _, err := buf.ReadFrom(resp.Body); err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, statusError(path, resp.StatusCode, buf.Bytes())
	}
	var out struct {
		Manifest struct {
			Files []json.RawMessage `json:"files"`
		} `json:"manifest"`
	}
	if err := json.Unmarshal(buf.Bytes(), &out); err != nil {
		return 0, fmt.Errorf("error decoding the push response: %w", err)
	}
	return len(out.Manifest.Files), nil
}

// runBundle pushes a generated bundle (activating it), pushes it again with one file
// changed, then has several clients fetch the manifest with and without If-None-Match,
// and /health as the baseline.
func runBundle(ctx context.Context, o options, pid int, c *client, admin string) (r bundleResult, err error) {
	logf("bundle: generating %d files, %d bytes", o.bundleFiles, o.bundleBytes)
	files := appbundletest.Large(o.bundleFiles, o.bundleBytes, o.seed)
	r.Files = len(files)
	for _, f := range files {
		r.ContentBytes += int64(len(f))
	}
	first := appbundletest.Files(files)
	files["app/index.html"] += "<!-- changed -->"
	second := appbundletest.Files(files)
	r.ArchiveBytes = len(first)

	stopRSS := sampleRSS(pid, o.rssInterval)
	for _, p := range []struct {
		name     string
		archive  []byte
		activate bool
	}{{"new bundle", first, true}, {"one file changed", second, false}} {
		logf("bundle: push (%s), %d bytes", p.name, len(p.archive))
		began := time.Now()
		var n int
		n, err = c.pushArchive(ctx, admin, p.archive, p.activate)
		took := time.Since(began)
		if err != nil {
			stopRSS()
			return r, err
		}
		if n != len(files) {
			stopRSS()
			return r, fmt.Errorf("the pushed bundle has %d files, the server listed %d", len(files), n)
		}
		r.Pushes = append(r.Pushes, bundlePush{Name: p.name, Seconds: round(took.Seconds(), 3),
			ArchiveMBPerS: round(float64(len(p.archive))/1e6/took.Seconds(), 1), ManifestFiles: n, NewlyActivated: p.activate})
	}
	r.PushPeakRSS = stopRSS()

	var buf bytes.Buffer
	status, etag, err := c.get(ctx, "/api/app-bundle/manifest", admin, nil, &buf)
	if err != nil || status != http.StatusOK || etag == "" {
		return r, fmt.Errorf("manifest: HTTP %d, etag %q: %v", status, etag, err)
	}
	stopRSS = sampleRSS(pid, o.rssInterval)
	defer func() { r.ReadPeakRSS = stopRSS() }()
	loads := []struct {
		name   string
		path   string
		header map[string]string
		want   int
	}{
		{"GET /health (baseline)", "/health", nil, http.StatusOK},
		{"GET /api/versions (authenticated)", "/api/versions", nil, http.StatusOK},
		{fmt.Sprintf("manifest, %d files, %d B", len(files), buf.Len()), "/api/app-bundle/manifest", nil, http.StatusOK},
		{"manifest, If-None-Match (304)", "/api/app-bundle/manifest", map[string]string{"If-None-Match": etag}, http.StatusNotModified},
	}
	for _, l := range loads {
		logf("bundle: %s, %d clients, %d requests", l.name, o.manifestClients, o.manifestRequests)
		run, err := runReads(ctx, c, admin, l.path, l.header, l.want, o.manifestClients, o.manifestRequests)
		if err != nil {
			return r, fmt.Errorf("%s: %w", l.name, err)
		}
		run.Name = l.name
		if len(r.Reads) > 0 && r.Reads[0].RequestsPerSec > 0 {
			run.RatioToHealth = round(run.RequestsPerSec/r.Reads[0].RequestsPerSec, 2)
		}
		r.Reads = append(r.Reads, run)
	}
	r.Reads[0].RatioToHealth = 1
	return r, nil
}

// runReads has n clients send total GET requests between them, each expecting want.
func runReads(ctx context.Context, c *client, token, path string, header map[string]string, want, n, total int) (readRun, error) {
	latencies := make([][]time.Duration, n)
	wall, err := runConcurrently(ctx, n, func(ctx context.Context, w int) error {
		var buf bytes.Buffer
		for i := w; i < total; i += n {
			began := time.Now()
			status, _, err := c.get(ctx, path, token, header, &buf)
			if err != nil {
				return err
			}
			latencies[w] = append(latencies[w], time.Since(began))
			if status != want {
				return statusError(path, status, buf.Bytes())
			}
		}
		return nil
	})
	if err != nil {
		return readRun{}, err
	}
	return readRun{phaseStats: newPhaseStats(total, total, wall, latencies)}, nil
}

func printBundle(w io.Writer, b bundleResult) {
	fmt.Fprintf(w, "\nAPP BUNDLE  %d files, %d bytes of content, %d bytes zipped\n", b.Files, b.ContentBytes, b.ArchiveBytes)
	for _, p := range b.Pushes {
		fmt.Fprintf(w, "  push (%s): %.3f s, %.1f MB/s of archive\n", p.Name, p.Seconds, p.ArchiveMBPerS)
	}
	fmt.Fprintf(w, "  server peak RSS while pushing: %.1f MiB\n\n", b.PushPeakRSS)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "read\trequests\twall s\trequests/s\tvs /health\tp50 ms\tp95 ms\tp99 ms\tmax ms\t")
	for _, r := range b.Reads {
		l := r.LatencyMS
		fmt.Fprintf(tw, "%s\t%d\t%.3f\t%.0f\t%.2f\t%.1f\t%.1f\t%.1f\t%.1f\t\n",
			r.Name, r.Requests, r.WallSeconds, r.RequestsPerSec, r.RatioToHealth, l.P50, l.P95, l.P99, l.Max)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "  server peak RSS while reading: %.1f MiB\n", b.ReadPeakRSS)
}
