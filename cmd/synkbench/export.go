package main

import (
	"archive/zip"
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/parquet-go/parquet-go"
)

// exportResult is one export download: its throughput, size and the server's peak RSS.
type exportResult struct {
	Format      string  `json:"format"`
	Rows        int64   `json:"rows"`
	Bytes       int64   `json:"bytes"`
	WallSeconds float64 `json:"wall_seconds"`
	RowsPerSec  float64 `json:"rows_per_sec"`
	// VsPostgres is RowsPerSec over the rate at which PostgreSQL alone streams the same
	// rows (COPY of the exported columns, measured in the same run).
	VsPostgres float64 `json:"vs_postgres"`
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

// exportPhase is the export measurements and their PostgreSQL reference.
type exportPhase struct {
	PostgresRowsPerSec float64        `json:"postgres_copy_rows_per_sec"`
	Results            []exportResult `json:"results"`
}

// exportPaths are the formats in the order they are measured: the Parquet writer uses
// the most memory, so it comes last, and the resident memory it leaves behind cannot be
// taken for another format's.
var exportPaths = []struct{ format, path string }{
	{"raw-json", "/api/dataexport/raw-json"},
	{"csv", "/api/dataexport/csv"},
	{"parquet", "/api/dataexport/parquet"},
}

// runExports downloads each export format once, into dir, while sampling the server's
// memory, and checks that each archive holds every pushed observation.
func runExports(ctx context.Context, c *client, token, databaseURL, dir string, pid int, want int, interval time.Duration) (exportPhase, error) {
	var phase exportPhase
	pg, err := copyRate(ctx, databaseURL)
	if err != nil {
		return phase, err
	}
	phase.PostgresRowsPerSec = round(pg, 0)
	for _, e := range exportPaths {
		logf("export: %s", e.format)
		file := filepath.Join(dir, "export-"+e.format+".zip")
		stopRSS := sampleRSS(pid, interval)
		began := time.Now()
		size, err := c.download(ctx, e.path, token, file)
		wall := time.Since(began)
		peak := stopRSS()
		if err != nil {
			return phase, fmt.Errorf("export %s: %w", e.format, err)
		}
		rows, err := countExported(file, e.format)
		if err != nil {
			return phase, fmt.Errorf("export %s: %w", e.format, err)
		}
		if rows != int64(want) {
			return phase, fmt.Errorf("export %s holds %d observations, %d were pushed", e.format, rows, want)
		}
		rate := float64(rows) / wall.Seconds()
		phase.Results = append(phase.Results, exportResult{
			Format: e.format, Rows: rows, Bytes: size, WallSeconds: round(wall.Seconds(), 3),
			RowsPerSec: round(rate, 0), VsPostgres: round(rate/pg, 3), PeakRSSMiB: peak,
		})
		_ = os.Remove(file)
	}
	return phase, nil
}

// download saves the response to path and returns its size.
func (c *client) download(ctx context.Context, path, token, file string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+path, nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("x-ode-version", odeVersion)
	req.Header.Set("Authorization", "Bearer "+token)
	hc := *c.hc
	hc.Timeout = 0 // an export takes as long as it takes; the context bounds it
	resp, err := hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 500))
		return 0, statusError(path, resp.StatusCode, b)
	}
	f, err := os.Create(file)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, resp.Body)
	return n, errors.Join(err, f.Close())
}

// countExported counts the observations in an export archive: the rows of its Parquet
// or CSV tables, or its JSON documents.
func countExported(file, format string) (int64, error) {
	zr, err := zip.OpenReader(file)
	if err != nil {
		return 0, fmt.Errorf("the archive is not a readable zip: %w", err)
	}
	defer zr.Close()
	var rows int64
	for _, f := range zr.File {
		switch format {
		case "raw-json":
			rows++
		case "parquet":
			n, err := parquetRows(f)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", f.Name, err)
			}
			rows += n
		case "csv":
			rc, err := f.Open()
			if err != nil {
				return 0, err
			}
			records, err := csv.NewReader(rc).ReadAll()
			rc.Close()
			if err != nil {
				return 0, fmt.Errorf("%s: %w", f.Name, err)
			}
			rows += int64(len(records) - 1)
		}
	}
	return rows, nil
}

func parquetRows(f *zip.File) (int64, error) {
	rc, err := f.Open()
	if err != nil {
		return 0, err
	}
	defer rc.Close()
	tmp, err := os.CreateTemp("", "synkbench-*.parquet")
	if err != nil {
		return 0, err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	size, err := io.Copy(tmp, rc)
	if err != nil {
		return 0, err
	}
	pf, err := parquet.OpenFile(tmp, size)
	if err != nil {
		return 0, err
	}
	return pf.NumRows(), nil
}

// copyRate is the rows per second at which PostgreSQL streams the exported columns of
// every observation to a client that discards them: the floor under any export.
func copyRate(ctx context.Context, databaseURL string) (float64, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return 0, fmt.Errorf("error connecting to the benchmark database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	began := time.Now()
	tag, err := conn.PgConn().CopyTo(ctx, io.Discard, `COPY (SELECT observation_id, version, form_type, form_version, data,
		geolocation, author, device_id, tags, created_at, created_at_text, updated_at, updated_at_text, synced_at, deleted
		FROM observations ORDER BY form_type, version) TO STDOUT`)
	if err != nil {
		return 0, fmt.Errorf("error copying the observations: %w", err)
	}
	return float64(tag.RowsAffected()) / time.Since(began).Seconds(), nil
}

func printExports(w io.Writer, p exportPhase) {
	fmt.Fprintf(w, "\nEXPORT  PostgreSQL COPY of the same rows: %.0f rows/s\n", p.PostgresRowsPerSec)
	fmt.Fprintf(w, "%-9s %9s %11s %8s %10s %11s %13s\n", "format", "rows", "MiB", "wall s", "rows/s", "vs COPY", "peak RSS MiB")
	for _, r := range p.Results {
		fmt.Fprintf(w, "%-9s %9d %11.1f %8.2f %10.0f %11.3f %13.1f\n", r.Format, r.Rows, float64(r.Bytes)/(1<<20), r.WallSeconds, r.RowsPerSec, r.VsPostgres, r.PeakRSSMiB)
	}
}
