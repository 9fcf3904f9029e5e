package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"sync"
	"text/tabwriter"
	"time"
)

// mixedOptions tune -mode mixed.
type mixedOptions struct {
	attachmentClients int
	loginClients      int
	fileBytes         int
}

// mixedReport is the outcome of -mode mixed: every kind of traffic at once, for as long
// as the pushers take to push -push-records.
type mixedReport struct {
	Machine     machineInfo `json:"machine"`
	Database    string      `json:"database"`
	WallSeconds float64     `json:"wall_seconds"`
	// Operations are push, pull, upload, download and login.
	Operations []mixedOperation `json:"operations"`
	// PushedRecords are the records of the pushes the server acknowledged; MissedRecords
	// the most of them any puller had not received after its last pull.
	PushedRecords int     `json:"pushed_records"`
	MissedRecords int     `json:"missed_records"`
	StartRSSMiB   float64 `json:"start_rss_mib"`
	PeakRSSMiB    float64 `json:"peak_rss_mib"`
}

// mixedOperation is one kind of traffic in the mixed load.
type mixedOperation struct {
	Name           string         `json:"name"`
	Clients        int            `json:"clients"`
	Requests       int            `json:"requests"`
	Errors         int            `json:"errors"`
	FirstError     string         `json:"first_error,omitempty"`
	Records        int            `json:"records,omitempty"`
	Bytes          int64          `json:"bytes,omitempty"`
	RequestsPerSec float64        `json:"requests_per_sec"`
	RecordsPerSec  float64        `json:"records_per_sec,omitempty"`
	MBPerSec       float64        `json:"mb_per_sec,omitempty"`
	LatencyMS      latencySummary `json:"latency_ms"`
}

// opCounter gathers one kind of traffic's figures from its clients.
type opCounter struct {
	mu        sync.Mutex
	latencies []time.Duration
	errors    int
	first     string
	records   int
	bytes     int64
}

// done records one request: its latency, and its error, if any.
func (o *opCounter) done(took time.Duration, records int, bytes int64, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.latencies = append(o.latencies, took)
	if err != nil {
		o.errors++
		if o.first == "" {
			o.first = err.Error()
		}
		return
	}
	o.records += records
	o.bytes += bytes
}

func (o *opCounter) result(name string, clients int, wall time.Duration) mixedOperation {
	s := wall.Seconds()
	r := mixedOperation{Name: name, Clients: clients, Requests: len(o.latencies), Errors: o.errors, FirstError: o.first,
		Records: o.records, Bytes: o.bytes, RequestsPerSec: round(float64(len(o.latencies))/s, 1), LatencyMS: summarize(o.latencies)}
	if o.records > 0 {
		r.RecordsPerSec = round(float64(o.records)/s, 0)
	}
	if o.bytes > 0 {
		r.MBPerSec = round(float64(o.bytes)/1e6/s, 1)
	}
	return r
}

// runMixed pushes the plan from o.clients clients while o.pullClients clients sync
// continuously (each from its own cursor, as devices do), attachment clients upload
// files and download the ones uploaded before, and login clients log in again and again.
// When the pushes are done, every puller syncs once more and must hold every record of
// every acknowledged push: the records it lacks are missed.
func runMixed(ctx context.Context, o options, pid int, c *client, adminPassword string, tokens []string, plan pushPlan, rep *mixedReport) error {
	kib, err := readProcKiB(pid, "VmRSS")
	if err != nil {
		return fmt.Errorf("error reading the server's memory: %w", err)
	}
	rep.StartRSSMiB = mib(kib)
	logf("mixed: %d pushers (%d records), %d pullers, %d attachment clients (%d-byte files), %d login clients",
		o.clients, o.pushRecords, o.pullClients, o.mixed.attachmentClients, o.mixed.fileBytes, o.mixed.loginClients)

	var push, pull, upload, download, login opCounter
	pushed := make([][]string, o.clients) // ids of acknowledged pushes, per pusher
	seen := make([]map[string]bool, o.pullClients)
	pushing := make(chan struct{})
	stopRSS := sampleRSS(pid, o.rssInterval)
	began := time.Now()
	var wg sync.WaitGroup
	var pushers sync.WaitGroup
	for w := range o.clients {
		pushers.Go(func() { pushed[w] = mixedPusher(ctx, c, tokens[w], plan.perClient[w], &push) })
	}
	for w := range o.pullClients {
		seen[w] = map[string]bool{}
		wg.Go(func() {
			mixedPuller(ctx, c, tokens[w], fmt.Sprintf("synkbench-mixed-puller-%d", w), o.pullLimit, pushing, seen[w], &pull)
		})
	}
	file := make([]byte, o.mixed.fileBytes)
	fill(file, o.seed)
	for w := range o.mixed.attachmentClients {
		wg.Go(func() { mixedAttachments(ctx, c, tokens[w%len(tokens)], w, file, pushing, &upload, &download) })
	}
	for range o.mixed.loginClients {
		wg.Go(func() { mixedLogins(ctx, c, adminPassword, pushing, &login) })
	}
	pushers.Wait()
	close(pushing)
	wg.Wait()
	wall := time.Since(began)
	rep.PeakRSSMiB = stopRSS()
	if err := ctx.Err(); err != nil {
		return err
	}

	rep.WallSeconds = round(wall.Seconds(), 3)
	rep.Operations = []mixedOperation{
		push.result("push", o.clients, wall), pull.result("pull", o.pullClients, wall),
		upload.result("upload", o.mixed.attachmentClients, wall), download.result("download", o.mixed.attachmentClients, wall),
		login.result("login", o.mixed.loginClients, wall),
	}
	for _, ids := range pushed {
		rep.PushedRecords += len(ids)
	}
	for _, s := range seen {
		missed := 0
		for _, ids := range pushed {
			for _, id := range ids {
				if !s[id] {
					missed++
				}
			}
		}
		rep.MissedRecords = max(rep.MissedRecords, missed)
	}
	return nil
}

// mixedPusher pushes its batches one after another and returns the ids of the records
// of the pushes the server acknowledged in full.
func mixedPusher(ctx context.Context, c *client, token string, batches []pushBatch, ops *opCounter) []string {
	var acked []string
	var buf bytes.Buffer
	for _, b := range batches {
		began := time.Now()
		status, err := c.post(ctx, "/api/sync/push", token, b.body, &buf)
		if err == nil && status != http.StatusOK {
			err = statusError("/api/sync/push", status, buf.Bytes())
		}
		if err == nil {
			var resp struct {
				SuccessCount int `json:"success_count"`
			}
			if err = json.Unmarshal(buf.Bytes(), &resp); err == nil && resp.SuccessCount != b.records {
				err = fmt.Errorf("push of %d records: success_count %d", b.records, resp.SuccessCount)
			}
		}
		ops.done(time.Since(began), b.records, 0, err)
		if err == nil {
			acked = append(acked, b.ids...)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return acked
}

// mixedPuller syncs from its cursor to the end, again and again while the pushers run,
// and once more after they finished, noting every record id it receives.
func mixedPuller(ctx context.Context, c *client, token, clientID string, limit int, pushing <-chan struct{}, seen map[string]bool, ops *opCounter) {
	path := "/api/sync/pull?limit=" + strconv.Itoa(limit)
	var since int64
	var buf bytes.Buffer
	for ctx.Err() == nil {
		final := closed(pushing) // the pushers were done before this sync began
		for ctx.Err() == nil {
			body, _ := json.Marshal(map[string]any{"client_id": clientID, "since": map[string]int64{"version": since}})
			began := time.Now()
			status, err := c.post(ctx, path, token, body, &buf)
			if err == nil && status != http.StatusOK {
				err = statusError(path, status, buf.Bytes())
			}
			var page pullPage
			if err == nil {
				err = json.Unmarshal(buf.Bytes(), &page)
			}
			ops.done(time.Since(began), len(page.Records), 0, err)
			if err != nil {
				break // the next round starts again from the same cursor
			}
			for _, r := range page.Records {
				seen[r.ObservationID] = true
			}
			since = page.ChangeCutoff
			if !page.HasMore {
				break
			}
		}
		if final {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(50 * time.Millisecond): // a device syncs often, not in a busy loop
		}
	}
}

// mixedAttachments uploads a new file, then downloads one of those it uploaded before,
// until the pushers are done.
func mixedAttachments(ctx context.Context, c *client, token string, worker int, file []byte, pushing <-chan struct{}, up, down *opCounter) {
	rng := rand.New(rand.NewPCG(uint64(worker), 7))
	var uploaded []string
	for n := 0; !closed(pushing) && ctx.Err() == nil; n++ {
		id := fmt.Sprintf("mixed-%d-%d.jpg", worker, n)
		began := time.Now()
		err := c.uploadAttachment(ctx, token, id, file)
		up.done(time.Since(began), 0, int64(len(file)), err)
		if err == nil {
			uploaded = append(uploaded, id)
		}
		if len(uploaded) > 0 {
			began = time.Now()
			err = c.downloadAttachment(ctx, token, uploaded[rng.IntN(len(uploaded))], int64(len(file)))
			down.done(time.Since(began), 0, int64(len(file)), err)
		}
	}
}

// mixedLogins logs in as the admin again and again until the pushers are done: each
// login costs the server a password hash.
func mixedLogins(ctx context.Context, c *client, password string, pushing <-chan struct{}, ops *opCounter) {
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": password})
	var buf bytes.Buffer
	for !closed(pushing) && ctx.Err() == nil {
		began := time.Now()
		status, err := c.post(ctx, "/api/auth/login", "", body, &buf)
		if err == nil && status != http.StatusOK {
			err = statusError("/api/auth/login", status, buf.Bytes())
		}
		ops.done(time.Since(began), 0, 0, err)
	}
}

// closed reports whether ch is closed.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// fill writes reproducible incompressible bytes, like a photo's.
func fill(b []byte, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0xf11e))
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
}

func printMixedText(w io.Writer, r mixedReport) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "mixed load for %.1f s (machine: %d CPUs, %s, PostgreSQL %s)\n", r.WallSeconds, r.Machine.NProc, r.Machine.GoVersion, r.Machine.PostgresVersion)
	fmt.Fprintln(tw, "operation\tclients\trequests\terrors\treq/s\trecords/s\tMB/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\t")
	for _, op := range r.Operations {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%.1f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", op.Name, op.Clients, op.Requests, op.Errors,
			op.RequestsPerSec, op.RecordsPerSec, op.MBPerSec, op.LatencyMS.P50, op.LatencyMS.P95, op.LatencyMS.P99, op.LatencyMS.Max)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, op := range r.Operations {
		if op.FirstError != "" {
			fmt.Fprintf(w, "first %s error: %s\n", op.Name, op.FirstError)
		}
	}
	fmt.Fprintf(w, "missed records: %d of %d acknowledged (the most any puller lacked after its final sync)\n", r.MissedRecords, r.PushedRecords)
	_, err := fmt.Fprintf(w, "server RSS: %.1f MiB after login, peak %.1f MiB\n", r.StartRSSMiB, r.PeakRSSMiB)
	return err
}
