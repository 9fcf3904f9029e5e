package main

import (
	"bufio"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// phaseStats are the throughput and latency figures of one timed phase. A request is a
// push batch or a pull page.
type phaseStats struct {
	Records        int            `json:"records"`
	Requests       int            `json:"requests"`
	WallSeconds    float64        `json:"wall_seconds"`
	RecordsPerSec  float64        `json:"records_per_sec"`
	RequestsPerSec float64        `json:"requests_per_sec"`
	LatencyMS      latencySummary `json:"latency_ms"`
}

func newPhaseStats(records, requests int, wall time.Duration, latencies [][]time.Duration) phaseStats {
	s := wall.Seconds()
	return phaseStats{
		Records:        records,
		Requests:       requests,
		WallSeconds:    round(s, 3),
		RecordsPerSec:  round(float64(records)/s, 0),
		RequestsPerSec: round(float64(requests)/s, 1),
		LatencyMS:      summarize(slices.Concat(latencies...)),
	}
}

// latencySummary is a latency distribution in milliseconds.
type latencySummary struct {
	P50 float64 `json:"p50"`
	P95 float64 `json:"p95"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

func summarize(ds []time.Duration) latencySummary {
	if len(ds) == 0 {
		return latencySummary{}
	}
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 1) }
	return latencySummary{P50: ms(percentile(ds, 50)), P95: ms(percentile(ds, 95)), P99: ms(percentile(ds, 99)), Max: ms(ds[len(ds)-1])}
}

// percentile returns the nearest-rank p-th percentile of sorted, which is not empty.
func percentile(sorted []time.Duration, p float64) time.Duration {
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[max(rank, 1)-1]
}

func round(x float64, decimals int) float64 {
	f := math.Pow10(decimals)
	return math.Round(x*f) / f
}

// readProcKiB reads a "Vm..." line, in KiB, of /proc/<pid>/status.
func readProcKiB(pid int, field string) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", field, pid)
}

// sampleRSS polls the VmRSS of process pid every interval until the returned function
// is called; that function returns the highest value seen, in MiB. Where the kernel lets
// us reset the process's high-water mark (VmHWM) at the start, the mark at the end counts
// too, so that a peak between two samples is not missed. Failed reads (the process is
// gone) are skipped: the phase that uses the process reports that.
func sampleRSS(pid int, interval time.Duration) (stop func() float64) {
	var peak int64
	hwmReset := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0) == nil
	sample := func() {
		if kib, err := readProcKiB(pid, "VmRSS"); err == nil {
			peak = max(peak, kib)
		}
		if !hwmReset {
			return
		}
		if kib, err := readProcKiB(pid, "VmHWM"); err == nil {
			peak = max(peak, kib)
		}
	}
	sample()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				sample()
			}
		}
	})
	return func() float64 {
		close(done)
		wg.Wait()
		sample()
		return mib(peak)
	}
}

func mib(kib int64) float64 { return round(float64(kib)/1024, 1) }

// loadAverage returns the machine's one-minute load average.
func loadAverage() (float64, error) {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, fmt.Errorf("error reading the load average: %w", err)
	}
	f, _, _ := strings.Cut(string(b), " ")
	return strconv.ParseFloat(f, 64)
}
