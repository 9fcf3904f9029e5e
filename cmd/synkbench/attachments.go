package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// attachmentOptions are the flags of the attachment benchmark (-mode attachments).
type attachmentOptions struct {
	sizes      []int
	totalBytes int64
}

// parseSizes reads a comma-separated list of file sizes in bytes.
func parseSizes(v string) ([]int, error) {
	var sizes []int
	for s := range strings.SplitSeq(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("-attachment-sizes: %q is not a positive number of bytes", s)
		}
		sizes = append(sizes, n)
	}
	return sizes, nil
}

// attachmentReport holds the figures of the attachment benchmark.
type attachmentReport struct {
	Machine  machineInfo          `json:"machine"`
	Database string               `json:"database"`
	Clients  int                  `json:"clients"`
	Sizes    []attachmentSizeRun  `json:"sizes"`
	Memory   attachmentMemoryInfo `json:"server_memory"`
}

type attachmentMemoryInfo struct {
	StartRSSMiB float64 `json:"start_rss_mib"`
	HWMMiB      float64 `json:"peak_rss_mib_vmhwm"`
}

// attachmentSizeRun is every phase for one file size. The raw-disk figures are measured
// in the same run on the same file system, so the server's figures can be read as a
// ratio to what the machine itself manages at that moment.
type attachmentSizeRun struct {
	FileBytes int                `json:"file_bytes"`
	Files     int                `json:"files"`
	Upload    transferStats      `json:"upload"`
	Download  transferStats      `json:"download"`
	RawWrite  transferStats      `json:"raw_disk_write_fsync"`
	RawRead   transferStats      `json:"raw_disk_read"`
	Ratios    map[string]float64 `json:"ratios"`
}

// transferStats are the figures of one timed phase moving whole files.
type transferStats struct {
	Files      int            `json:"files"`
	MB         float64        `json:"mb"`
	Wall       float64        `json:"wall_seconds"`
	MBPerSec   float64        `json:"mb_per_sec"`
	FilesPerS  float64        `json:"files_per_sec"`
	LatencyMS  latencySummary `json:"latency_ms"`
	PeakRSSMiB float64        `json:"peak_rss_mib,omitempty"`
}

func newTransferStats(files int, bytes int64, wall time.Duration, latencies [][]time.Duration) transferStats {
	s := wall.Seconds()
	mb := float64(bytes) / 1e6
	var all []time.Duration
	for _, l := range latencies {
		all = append(all, l...)
	}
	return transferStats{Files: files, MB: round(mb, 1), Wall: round(s, 3), MBPerSec: round(mb/s, 1),
		FilesPerS: round(float64(files)/s, 1), LatencyMS: summarize(all)}
}

// runAttachments measures uploads and downloads of each file size by o.clients clients
// at once, each client moving its share of about totalBytes, and the server's RSS.
func runAttachments(ctx context.Context, o options, pid int, c *client, tokens []string, work string, rep *attachmentReport) error {
	kib, err := readProcKiB(pid, "VmRSS")
	if err != nil {
		return fmt.Errorf("error reading the server's memory: %w", err)
	}
	rep.Memory.StartRSSMiB = mib(kib)
	for _, size := range o.attachments.sizes {
		perClient := max(1, int(o.attachments.totalBytes/int64(size)/int64(o.clients)))
		run := attachmentSizeRun{FileBytes: size, Files: perClient * o.clients}
		data := make([]byte, size)
		_, _ = rand.Read(data) // incompressible, like photos
		ids := func(w int) []string {
			out := make([]string, perClient)
			for i := range out {
				out[i] = fmt.Sprintf("bench-%d-%d-%d.jpg", size, w, i)
			}
			return out
		}

		logf("attachments %d B: %d clients upload %d files each", size, o.clients, perClient)
		stopRSS := sampleRSS(pid, o.rssInterval)
		run.Upload, err = uploadAll(ctx, c, tokens, o.clients, ids, data)
		run.Upload.PeakRSSMiB = stopRSS()
		if err != nil {
			return fmt.Errorf("upload of %d-byte files: %w", size, err)
		}

		logf("attachments %d B: %d clients download %d files each", size, o.clients, perClient)
		stopRSS = sampleRSS(pid, o.rssInterval)
		run.Download, err = downloadAll(ctx, c, tokens, o.clients, ids, size)
		run.Download.PeakRSSMiB = stopRSS()
		if err != nil {
			return fmt.Errorf("download of %d-byte files: %w", size, err)
		}

		logf("attachments %d B: raw disk reference", size)
		if run.RawWrite, run.RawRead, err = rawDisk(ctx, filepath.Join(work, "data", "rawdisk"), o.clients, perClient, data); err != nil {
			return err
		}
		run.Ratios = map[string]float64{
			"upload_to_raw_write":  round(run.Upload.MBPerSec/run.RawWrite.MBPerSec, 2),
			"download_to_raw_read": round(run.Download.MBPerSec/run.RawRead.MBPerSec, 2),
		}
		rep.Sizes = append(rep.Sizes, run)
	}
	if kib, err = readProcKiB(pid, "VmHWM"); err != nil {
		return fmt.Errorf("error reading the server's memory: %w", err)
	}
	rep.Memory.HWMMiB = mib(kib)
	return nil
}

// uploadAll has n clients upload their files one after another, all clients at once.
// Each body is streamed from one shared buffer, as a phone streams a file from storage.
func uploadAll(ctx context.Context, c *client, tokens []string, n int, ids func(int) []string, data []byte) (transferStats, error) {
	latencies := make([][]time.Duration, n)
	files := 0
	wall, err := runConcurrently(ctx, n, func(ctx context.Context, w int) error {
		for _, id := range ids(w) {
			began := time.Now()
			if err := c.uploadAttachment(ctx, tokens[w], id, data); err != nil {
				return err
			}
			latencies[w] = append(latencies[w], time.Since(began))
		}
		return nil
	})
	for _, l := range latencies {
		files += len(l)
	}
	return newTransferStats(files, int64(files)*int64(len(data)), wall, latencies), err
}

// downloadAll has n clients download their files, checking each one's length.
func downloadAll(ctx context.Context, c *client, tokens []string, n int, ids func(int) []string, size int) (transferStats, error) {
	latencies := make([][]time.Duration, n)
	files := 0
	wall, err := runConcurrently(ctx, n, func(ctx context.Context, w int) error {
		for _, id := range ids(w) {
			began := time.Now()
			if err := c.downloadAttachment(ctx, tokens[w], id, int64(size)); err != nil {
				return err
			}
			latencies[w] = append(latencies[w], time.Since(began))
		}
		return nil
	})
	for _, l := range latencies {
		files += len(l)
	}
	return newTransferStats(files, int64(files)*int64(size), wall, latencies), err
}

// uploadAttachment PUTs data as the multipart field "file", as the apps do.
func (c *client) uploadAttachment(ctx context.Context, token, id string, data []byte) error {
	boundary := "synkbench" + randomToken(24)
	head := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + id + "\"\r\nContent-Type: image/jpeg\r\n\r\n"
	tail := "\r\n--" + boundary + "--\r\n"
	body := io.MultiReader(strings.NewReader(head), &sliceReader{b: data}, strings.NewReader(tail))
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, c.baseURL+"/api/attachments/"+id, body)
	if err != nil {
		return err
	}
	req.ContentLength = int64(len(head) + len(data) + len(tail))
	req.Header.Set("Content-Type", "multipart/form-data; boundary="+boundary)
	req.Header.Set("x-ode-version", odeVersion)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("PUT %s: HTTP %d: %s", id, resp.StatusCode, msg)
	}
	return nil
}

// downloadAttachment GETs an attachment and checks its length.
func (c *client) downloadAttachment(ctx context.Context, token, id string, size int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.baseURL+"/api/attachments/"+id, nil)
	if err != nil {
		return err
	}
	req.Header.Set("x-ode-version", odeVersion)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: %w", id, err)
	}
	if resp.StatusCode != http.StatusOK || n != size {
		return fmt.Errorf("GET %s: HTTP %d with %d bytes, want 200 with %d", id, resp.StatusCode, n, size)
	}
	return nil
}

// sliceReader reads a shared byte slice without the io.WriterTo of bytes.Reader, so the
// HTTP client copies it in ordinary chunks, as it does a file.
type sliceReader struct {
	b   []byte
	off int
}

func (r *sliceReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// rawDisk is the reference: n writers each write perWriter files of data into dir with an
// fsync of the file and the directory (what the server's local store does per upload),
// then n readers read them back.
func rawDisk(ctx context.Context, dir string, n, perWriter int, data []byte) (write, read transferStats, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return write, read, err
	}
	defer os.RemoveAll(dir)
	name := func(w, i int) string { return filepath.Join(dir, fmt.Sprintf("%d-%d", w, i)) }
	latencies := make([][]time.Duration, n)
	wall, err := runConcurrently(ctx, n, func(ctx context.Context, w int) error {
		for i := range perWriter {
			began := time.Now()
			if err := writeSynced(name(w, i), dir, data); err != nil {
				return err
			}
			latencies[w] = append(latencies[w], time.Since(began))
		}
		return ctx.Err()
	})
	if err != nil {
		return write, read, fmt.Errorf("raw disk write: %w", err)
	}
	write = newTransferStats(n*perWriter, int64(n*perWriter*len(data)), wall, latencies)

	latencies = make([][]time.Duration, n)
	buf := make([][]byte, n)
	wall, err = runConcurrently(ctx, n, func(ctx context.Context, w int) error {
		buf[w] = make([]byte, 32<<10)
		for i := range perWriter {
			began := time.Now()
			f, err := os.Open(name(w, i))
			if err != nil {
				return err
			}
			_, err = io.CopyBuffer(io.Discard, struct{ io.Reader }{f}, buf[w])
			f.Close()
			if err != nil {
				return err
			}
			latencies[w] = append(latencies[w], time.Since(began))
		}
		return ctx.Err()
	})
	if err != nil {
		return write, read, fmt.Errorf("raw disk read: %w", err)
	}
	read = newTransferStats(n*perWriter, int64(n*perWriter*len(data)), wall, latencies)
	return write, read, nil
}

func writeSynced(path, dir string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func printAttachmentText(w io.Writer, r attachmentReport) error {
	fmt.Fprintf(w, "synkbench attachments: nproc %d, %s, PostgreSQL %s, database %s, %d clients\n\n",
		r.Machine.NProc, r.Machine.GoVersion, r.Machine.PostgresVersion, r.Database, r.Clients)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "file bytes\tphase\tfiles\tMB\twall s\tMB/s\tfiles/s\tp50 ms\tp95 ms\tp99 ms\tpeak RSS MiB\t")
	for _, s := range r.Sizes {
		row := func(name string, t transferStats) {
			l := t.LatencyMS
			rss := "-"
			if t.PeakRSSMiB > 0 {
				rss = strconv.FormatFloat(t.PeakRSSMiB, 'f', 1, 64)
			}
			fmt.Fprintf(tw, "%d\t%s\t%d\t%.1f\t%.3f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n",
				s.FileBytes, name, t.Files, t.MB, t.Wall, t.MBPerSec, t.FilesPerS, l.P50, l.P95, l.P99, rss)
		}
		row("upload", s.Upload)
		row("raw write+fsync", s.RawWrite)
		row("download", s.Download)
		row("raw read", s.RawRead)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Sizes {
		fmt.Fprintf(w, "\n%d B: upload / raw write+fsync = %.2f, download / raw read = %.2f", s.FileBytes, s.Ratios["upload_to_raw_write"], s.Ratios["download_to_raw_read"])
	}
	_, err := fmt.Fprintf(w, "\nserver RSS MiB: after login %.1f, overall peak (VmHWM) %.1f\n", r.Memory.StartRSSMiB, r.Memory.HWMMiB)
	return err
}
