package main

import (
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
)

// report is every figure of one run; printed as a table or, with -json, as JSON.
type report struct {
	Machine  machineInfo   `json:"machine"`
	Database string        `json:"database"`
	Push     pushResult    `json:"push"`
	Pull     pullResult    `json:"pull"`
	Memory   memoryResult  `json:"server_memory"`
	Export   *exportPhase  `json:"export,omitempty"`
	Bundle   *bundleResult `json:"app_bundle,omitempty"`
}

type machineInfo struct {
	NProc           int    `json:"nproc"`
	GoVersion       string `json:"go_version"`
	PostgresVersion string `json:"postgres_version"`
}

// pushResult is the push phase; its requests are batches.
type pushResult struct {
	Clients         int `json:"clients"`
	BatchSize       int `json:"batch_size"`
	AvgDataBytes    int `json:"avg_data_bytes"`
	AvgRecordBytes  int `json:"avg_record_bytes"`
	AvgRequestBytes int `json:"avg_request_bytes"`
	phaseStats
	PeakRSSMiB float64 `json:"peak_rss_mib"`
	// RawPostgres is PostgreSQL alone inserting the same batches from as many clients
	// (runRawPush), measured in the same run; VsRawPostgres is records/s over its rate.
	RawPostgres   phaseStats `json:"raw_postgres"`
	VsRawPostgres float64    `json:"vs_raw_postgres"`
	// RawShaped is the same into a copy of observations, with the server's values and no
	// lock (runRawPush); ShapedVsRaw is its rate over the plain one: the most any design of
	// the write could reach with this schema on this machine, before the server's own work.
	RawShaped   phaseStats `json:"raw_postgres_shaped"`
	ShapedVsRaw float64    `json:"shaped_vs_raw_postgres"`
	// CPU, RawCPU and RawShapedCPU are the CPU time per batch of the push phase and of
	// the references.
	CPU          cpuUse `json:"cpu"`
	RawCPU       cpuUse `json:"raw_postgres_cpu"`
	RawShapedCPU cpuUse `json:"raw_postgres_shaped_cpu"`
	// PushesPerCommit is how many pushes shared a transaction on average: the pushes
	// over the transactions that stored their receipts.
	PushesPerCommit float64 `json:"pushes_per_commit"`
	// LoadAverage is the machine's one-minute load average as the push phase began; the
	// machine may be shared.
	LoadAverage float64 `json:"load_average"`
}

// pullRound is one repetition of the pull phase; its requests are pages, and its
// records are those received by all clients together.
type pullRound struct {
	Round int `json:"round"`
	phaseStats
	PeakRSSMiB float64 `json:"peak_rss_mib"`
}

type pullResult struct {
	Clients    int         `json:"clients"`
	Limit      int         `json:"limit"`
	Rounds     []pullRound `json:"rounds"`
	Best       pullRound   `json:"best"`
	PeakRSSMiB float64     `json:"peak_rss_mib"`
}

// memoryResult is the server's resident memory: after login, the peak of each phase
// (sampled, and the kernel's high-water mark over the phase where it can be reset), and the
// highest over the whole run.
type memoryResult struct {
	StartRSSMiB    float64 `json:"start_rss_mib"`
	PushPeakRSSMiB float64 `json:"push_peak_rss_mib"`
	PullPeakRSSMiB float64 `json:"pull_peak_rss_mib"`
	HWMMiB         float64 `json:"peak_rss_mib_vmhwm"`
}

// bestRound returns the round with the highest throughput.
func bestRound(rounds []pullRound) pullRound {
	var best pullRound
	for _, r := range rounds {
		if r.RecordsPerSec > best.RecordsPerSec {
			best = r
		}
	}
	return best
}

func printJSON(w io.Writer, r any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func printText(w io.Writer, r report) error {
	fmt.Fprintf(w, "synkbench: nproc %d, %s, PostgreSQL %s, database %s\n",
		r.Machine.NProc, r.Machine.GoVersion, r.Machine.PostgresVersion, r.Database)
	if r.Push.Requests > 0 {
		if err := printSync(w, r); err != nil {
			return err
		}
	}
	if r.Export != nil {
		printExports(w, *r.Export)
	}
	if r.Bundle != nil {
		printBundle(w, *r.Bundle)
	}
	m := r.Memory
	_, err := fmt.Fprintf(w, "\nserver RSS MiB: after login %.1f, push peak %.1f, pull peak %.1f, overall peak (VmHWM) %.1f\n",
		m.StartRSSMiB, m.PushPeakRSSMiB, m.PullPeakRSSMiB, m.HWMMiB)
	return err
}

func printSync(w io.Writer, r report) error {
	p := r.Push
	fmt.Fprintf(w, "\n")
	fmt.Fprintf(w, "PUSH  %d clients, batches of %d, data %d B/record, %d B/record on the wire, %d B/request\n",
		p.Clients, p.BatchSize, p.AvgDataBytes, p.AvgRecordBytes, p.AvgRequestBytes)
	fmt.Fprintf(w, "PULL  %d clients, limit %d, each pulls everything from version 0\n\n", r.Pull.Clients, r.Pull.Limit)

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "phase\trecords\trequests\twall s\trecords/s\trequests/s\tp50 ms\tp95 ms\tp99 ms\tmax ms\tpeak RSS MiB\t")
	row := func(name string, s phaseStats, rss string) {
		l := s.LatencyMS
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.3f\t%.0f\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t\n",
			name, s.Records, s.Requests, s.WallSeconds, s.RecordsPerSec, s.RequestsPerSec, l.P50, l.P95, l.P99, l.Max, rss)
	}
	mib := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	row("raw PostgreSQL (batches)", p.RawPostgres, "-")
	row("raw PostgreSQL, observations' shape", p.RawShaped, "-")
	row("push (batches)", p.phaseStats, mib(p.PeakRSSMiB))
	for _, pr := range r.Pull.Rounds {
		row(fmt.Sprintf("pull %d (pages)", pr.Round), pr.phaseStats, mib(pr.PeakRSSMiB))
	}
	if len(r.Pull.Rounds) > 0 {
		row(fmt.Sprintf("pull best (%d)", r.Pull.Best.Round), r.Pull.Best.phaseStats, mib(r.Pull.Best.PeakRSSMiB))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\npush vs raw PostgreSQL: %.2f (%d clients; raw PostgreSQL inserts each batch in one transaction into a plain table)\n",
		p.VsRawPostgres, p.Clients)
	fmt.Fprintf(w, "pushes per commit: %.1f; load average as the push phase began: %.2f\n", p.PushesPerCommit, p.LoadAverage)
	fmt.Fprintf(w, "raw PostgreSQL into a copy of observations (its indexes, the server's values, no lock) vs plain: %.2f\n", p.ShapedVsRaw)
	fmt.Fprintf(w, "CPU ms per batch: push: server %.3f, PostgreSQL %.3f, synkbench %.3f (machine %.0f%% busy)\n",
		p.CPU.ServerMS, p.CPU.PostgresMS, p.CPU.BenchMS, 100*p.CPU.MachineBusy)
	_, err := fmt.Fprintf(w, "  raw PostgreSQL: PostgreSQL %.3f, synkbench %.3f (machine %.0f%% busy); observations' shape: PostgreSQL %.3f, synkbench %.3f (machine %.0f%% busy)\n",
		p.RawCPU.PostgresMS, p.RawCPU.BenchMS, 100*p.RawCPU.MachineBusy, p.RawShapedCPU.PostgresMS, p.RawShapedCPU.BenchMS, 100*p.RawShapedCPU.MachineBusy)
	return err
}
