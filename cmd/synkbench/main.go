// Command synkbench measures a synkronus server under load, as a separate process.
//
// It builds the server (or takes -server-bin), starts it on a fresh database, creates a
// read-write user per client, and runs the phases chosen with -phases: push (new
// observations from several concurrent clients), pull (several other clients pull
// everything back page by page) and bundle (push a large app bundle, then serve its
// manifest with and without If-None-Match). It samples the server's resident memory
// throughout and prints a summary (or, with -json, one JSON object).
// The server is stopped and the database dropped at the end, also after an error or an
// interrupt. Progress goes to stderr. Linux only: memory is read from /proc.
//
//	go run ./cmd/synkbench [-clients 4] [-push-records 20000] [-pull-rounds 3] [-json]
//	go run ./cmd/synkbench -phases bundle [-bundle-files 2000] [-bundle-bytes 50000000]
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	serverBin      string
	dbHostURL      string
	keepDB         bool
	clients        int
	batch          int
	pushRecords    int
	recordBytes    int
	pullClients    int
	pullRounds     int
	pullLimit      int
	dbMaxConns     int
	maxPushBytes   int64
	serverEnv      envList
	startTimeout   time.Duration
	requestTimeout time.Duration
	rssInterval    time.Duration
	seed           uint64
	jsonOut        bool
	phases         []string
	bundleFiles    int
	bundleBytes    int64
	// manifestClients share manifestRequests requests per read load.
	manifestClients  int
	manifestRequests int
}

// runs reports whether phase was chosen.
func (o options) runs(phase string) bool { return slices.Contains(o.phases, phase) }

// envList collects repeated -server-env KEY=VALUE flags.
type envList []string

func (e *envList) String() string { return strings.Join(*e, ",") }

func (e *envList) Set(v string) error {
	if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
		return fmt.Errorf("%q is not KEY=VALUE", v)
	}
	*e = append(*e, v)
	return nil
}

func parseFlags() options {
	var o options
	flag.StringVar(&o.serverBin, "server-bin", "", "server binary to run; empty builds ./cmd/synkronus from the module root")
	flag.StringVar(&o.dbHostURL, "db-host-url", "postgres://postgres@127.0.0.1:5432", "PostgreSQL server URL without a database name")
	flag.BoolVar(&o.keepDB, "keep-db", false, "keep the benchmark database instead of dropping it")
	flag.IntVar(&o.clients, "clients", 4, "concurrent pushing clients")
	flag.IntVar(&o.batch, "batch", 50, "observations per push request")
	flag.IntVar(&o.pushRecords, "push-records", 20000, "observations pushed in total")
	flag.IntVar(&o.recordBytes, "record-bytes", 1500, "approximate size of each observation's data, in bytes of JSON")
	flag.IntVar(&o.pullClients, "pull-clients", 4, "concurrent pulling clients, each pulling everything")
	flag.IntVar(&o.pullRounds, "pull-rounds", 3, "times the pull phase is repeated")
	flag.IntVar(&o.pullLimit, "pull-limit", 500, "records per pull page (the limit query parameter, 1-500)")
	flag.IntVar(&o.dbMaxConns, "db-max-conns", 0, "server DB_MAX_CONNS; 0 keeps the server's default")
	flag.Int64Var(&o.maxPushBytes, "max-push-bytes", 0, "server MAX_PUSH_BYTES; 0 keeps the server's default")
	flag.Var(&o.serverEnv, "server-env", "extra server environment variable KEY=VALUE, such as GOMEMLIMIT=48MiB (repeatable)")
	flag.DurationVar(&o.startTimeout, "start-timeout", time.Minute, "how long the server may take to become healthy")
	flag.DurationVar(&o.requestTimeout, "request-timeout", 2*time.Minute, "timeout of one HTTP request")
	flag.DurationVar(&o.rssInterval, "rss-interval", 50*time.Millisecond, "how often the server's RSS is sampled")
	flag.Uint64Var(&o.seed, "seed", 1, "seed of the generated observation content")
	flag.BoolVar(&o.jsonOut, "json", false, "print the results as one JSON object instead of a table")
	phases := flag.String("phases", "push,pull", "comma-separated phases to run: push, pull (needs push), bundle")
	flag.IntVar(&o.bundleFiles, "bundle-files", 2000, "files in the pushed app bundle")
	flag.Int64Var(&o.bundleBytes, "bundle-bytes", 50_000_000, "total size of the app bundle's files")
	flag.IntVar(&o.manifestClients, "manifest-clients", 4, "concurrent clients fetching the manifest")
	flag.IntVar(&o.manifestRequests, "manifest-requests", 2000, "requests per read load, shared by the clients")
	flag.Parse()
	o.phases = strings.Split(*phases, ",")
	return o
}

func (o options) validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v < 1 {
			errs = append(errs, fmt.Errorf("-%s must be at least 1", name))
		}
	}
	positive("clients", o.clients)
	positive("batch", o.batch)
	positive("push-records", o.pushRecords)
	positive("pull-clients", o.pullClients)
	positive("pull-rounds", o.pullRounds)
	if o.pullLimit < 1 || o.pullLimit > 500 {
		errs = append(errs, errors.New("-pull-limit must be from 1 to 500"))
	}
	if o.recordBytes < 0 {
		errs = append(errs, errors.New("-record-bytes must not be negative"))
	}
	for _, p := range o.phases {
		if !slices.Contains([]string{"push", "pull", "bundle"}, p) {
			errs = append(errs, fmt.Errorf("-phases: unknown phase %q", p))
		}
	}
	if o.runs("pull") && !o.runs("push") {
		errs = append(errs, errors.New("-phases: pull needs push (it pulls what was pushed)"))
	}
	if o.runs("bundle") {
		positive("bundle-files", o.bundleFiles-3)
		positive("manifest-clients", o.manifestClients)
		positive("manifest-requests", o.manifestRequests)
	}
	return errors.Join(errs...)
}

func main() {
	o := parseFlags()
	if err := o.validate(); err != nil {
		fmt.Fprintf(os.Stderr, "synkbench: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "synkbench: %v\n", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "synkbench: "+format+"\n", args...)
}

// run sets up the server, runs both phases and prints the report. Every resource it
// acquires is released by a deferred call, so an error or interrupt cleans up too.
func run(ctx context.Context, o options) (err error) {
	work, err := os.MkdirTemp("", "synkbench-")
	if err != nil {
		return fmt.Errorf("error creating a work directory: %w", err)
	}
	defer os.RemoveAll(work)

	rep := report{Push: pushResult{Clients: o.clients, BatchSize: o.batch}, Pull: pullResult{Clients: o.pullClients, Limit: o.pullLimit}}
	rep.Machine, err = describeMachine(ctx, o.dbHostURL)
	if err != nil {
		return err
	}
	bin := o.serverBin
	if bin == "" {
		logf("building the server")
		if bin, err = buildServer(ctx, work); err != nil {
			return err
		}
	}

	var plan pushPlan
	if o.runs("push") {
		logf("generating %d observations", o.pushRecords)
		if plan, err = planPush(o); err != nil {
			return err
		}
		rep.Push.AvgRecordBytes, rep.Push.AvgDataBytes, rep.Push.AvgRequestBytes = plan.avgRecordBytes, plan.avgDataBytes, plan.avgRequestBytes
	}

	db, err := newDatabase(o.dbHostURL)
	if err != nil {
		return err
	}
	rep.Database = db.name
	if err := db.create(ctx); err != nil {
		return err
	}
	defer func() {
		if o.keepDB {
			logf("kept database %s", db.name)
			return
		}
		dropCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		err = errors.Join(err, db.drop(dropCtx))
	}()

	adminPassword, jwtSecret := rand.Text(), rand.Text()+rand.Text()
	env := []string{"JWT_SECRET=" + jwtSecret, "ADMIN_USERNAME=admin", "ADMIN_PASSWORD=" + adminPassword}
	if o.dbMaxConns > 0 {
		env = append(env, fmt.Sprintf("DB_MAX_CONNS=%d", o.dbMaxConns))
	}
	if o.maxPushBytes > 0 {
		env = append(env, fmt.Sprintf("MAX_PUSH_BYTES=%d", o.maxPushBytes))
	}
	logf("starting %s on database %s", bin, db.name)
	srv, err := startServer(ctx, bin, work, db.serverURL, append(env, o.serverEnv...), o.startTimeout)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.stop(20*time.Second)) }()

	c := newClient(srv.baseURL, o.clients+o.pullClients+o.manifestClients, o.requestTimeout)
	admin, tokens, err := setupUsers(ctx, c, adminPassword, max(o.clients, o.pullClients))
	if err != nil {
		return err
	}
	if err := measure(ctx, o, srv.pid(), c, admin, tokens, plan, &rep); err != nil {
		return err
	}
	if o.jsonOut {
		return printJSON(os.Stdout, rep)
	}
	return printText(os.Stdout, rep)
}

// measure runs the chosen phases against the server process pid, sampling its memory,
// and fills in rep.
func measure(ctx context.Context, o options, pid int, c *client, admin string, tokens []string, plan pushPlan, rep *report) error {
	kib, err := readProcKiB(pid, "VmRSS")
	if err != nil {
		return fmt.Errorf("error reading the server's memory: %w", err)
	}
	rep.Memory.StartRSSMiB = mib(kib)
	if o.runs("push") {
		if err := measureSync(ctx, o, pid, c, tokens, plan, rep); err != nil {
			return err
		}
	}
	if o.runs("bundle") {
		b, err := runBundle(ctx, o, pid, c, admin)
		if err != nil {
			return fmt.Errorf("bundle phase: %w", err)
		}
		rep.Bundle = &b
	}
	if kib, err = readProcKiB(pid, "VmHWM"); err != nil {
		return fmt.Errorf("error reading the server's memory: %w", err)
	}
	rep.Memory.HWMMiB = mib(kib)
	return nil
}

// measureSync runs the push phase and, when chosen, the pull rounds.
func measureSync(ctx context.Context, o options, pid int, c *client, tokens []string, plan pushPlan, rep *report) error {
	var err error
	logf("push: %d clients, %d records in batches of %d", o.clients, o.pushRecords, o.batch)
	stopRSS := sampleRSS(pid, o.rssInterval)
	rep.Push.phaseStats, err = runPush(ctx, c, tokens, plan)
	rep.Push.PeakRSSMiB = stopRSS()
	if err != nil {
		return fmt.Errorf("push phase: %w", err)
	}

	rep.Memory.PushPeakRSSMiB = rep.Push.PeakRSSMiB
	if !o.runs("pull") {
		return nil
	}
	for round := 1; round <= o.pullRounds; round++ {
		logf("pull round %d/%d: %d clients, limit %d", round, o.pullRounds, o.pullClients, o.pullLimit)
		stopRSS := sampleRSS(pid, o.rssInterval)
		r, err := runPull(ctx, c, tokens, o.pullClients, o.pullLimit, o.pushRecords)
		r.Round, r.PeakRSSMiB = round, stopRSS()
		if err != nil {
			return fmt.Errorf("pull round %d: %w", round, err)
		}
		rep.Pull.Rounds = append(rep.Pull.Rounds, r)
		rep.Pull.PeakRSSMiB = max(rep.Pull.PeakRSSMiB, r.PeakRSSMiB)
	}
	rep.Pull.Best = bestRound(rep.Pull.Rounds)
	rep.Memory.PullPeakRSSMiB = rep.Pull.PeakRSSMiB
	return nil
}
