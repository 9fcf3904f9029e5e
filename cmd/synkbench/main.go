// Command synkbench measures a synkronus server under load, as a separate process.
//
// It builds the server (or takes -server-bin), starts it on a fresh database, creates a
// read-write user per client, has PostgreSQL alone insert the batches about to be pushed
// (the reference the push rate is given as a ratio to), pushes new observations from
// several concurrent clients, has several other clients pull everything back page by
// page, optionally downloads the exports and pushes an app bundle and loads its manifest
// (-bundle), samples the server's resident memory throughout, and prints a summary (or,
// with -json, one JSON object). With -mode attachments it instead uploads and downloads
// files of each size in -attachment-sizes from several concurrent clients, and writes and
// reads the same bytes straight to disk as a reference. With -mode mixed it runs pushers,
// continuously syncing pullers, attachment uploads and downloads and logins all at once,
// and reports each kind's throughput, latency and errors, and the records a puller missed.
// The server is stopped and the database dropped at the end, also after an error or an
// interrupt. Progress goes to stderr. Linux only: memory is read from /proc.
//
//	go run ./cmd/synkbench [-clients 4] [-push-records 20000] [-pull-rounds 3] [-export] [-json]
//	go run ./cmd/synkbench -large   # memory with the largest records: ~1 MiB each, ~31 MiB pushes
//	go run ./cmd/synkbench -mode attachments [-attachment-sizes 100000,5000000] [-attachment-bytes 400000000]
//	go run ./cmd/synkbench -push-records 0 -bundle [-bundle-files 2000] [-bundle-bytes 50000000]
//	go run ./cmd/synkbench -mode mixed [-push-records 20000] [-attachment-clients 2] [-login-clients 1] [-file-bytes 200000]
package main

import (
	"context"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
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
	large          bool
	mode           string
	attachments    attachmentOptions
	mixed          mixedOptions
	export         bool
	bundle         bool
	bundleFiles    int
	bundleBytes    int64
	// manifestClients share manifestRequests requests per read load.
	manifestClients  int
	manifestRequests int
}

// largePreset is -large: records of about 1 MiB (the largest a record may be), pushed 31 to
// a request (about 31 MiB, just under the default push limit) and pulled with the largest
// page, to show the server's peak memory with the largest data.
var largePreset = map[string]string{
	"record-bytes": "1000000", "batch": "31", "push-records": "300", "clients": "2",
	"pull-clients": "3", "pull-rounds": "1", "pull-limit": "500",
}

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
	flag.BoolVar(&o.large, "large", false, "measure memory with ~1 MiB records: sets -record-bytes 1000000 -batch 31 -push-records 300 "+
		"-clients 2 -pull-clients 3 -pull-rounds 1 (flags given explicitly still win)")
	flag.StringVar(&o.mode, "mode", "sync", "what to measure: sync (push, then pull observations), attachments (upload, then download files) "+
		"or mixed (pushes, pulls, uploads, downloads and logins all at once)")
	flag.IntVar(&o.mixed.attachmentClients, "attachment-clients", 2, "mixed mode: clients uploading and downloading files")
	flag.IntVar(&o.mixed.loginClients, "login-clients", 1, "mixed mode: clients logging in again and again")
	flag.IntVar(&o.mixed.fileBytes, "file-bytes", 200_000, "mixed mode: size of each uploaded file")
	sizes := flag.String("attachment-sizes", "100000,5000000", "attachment mode: file sizes in bytes, comma-separated")
	flag.Int64Var(&o.attachments.totalBytes, "attachment-bytes", 400_000_000, "attachment mode: bytes uploaded per file size, shared among the clients")
	flag.BoolVar(&o.export, "export", false, "after the pulls, download the Parquet, JSON and CSV exports of everything pushed")
	flag.BoolVar(&o.bundle, "bundle", false, "at the end, push an app bundle twice and load its manifest with and without If-None-Match")
	flag.IntVar(&o.bundleFiles, "bundle-files", 2000, "files in the pushed app bundle")
	flag.Int64Var(&o.bundleBytes, "bundle-bytes", 50_000_000, "total size of the app bundle's files")
	flag.IntVar(&o.manifestClients, "manifest-clients", 4, "concurrent clients fetching the manifest")
	flag.IntVar(&o.manifestRequests, "manifest-requests", 2000, "requests per read load, shared by the clients")
	flag.Parse()
	if o.large {
		set := map[string]bool{}
		flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
		for name, value := range largePreset {
			if !set[name] {
				_ = flag.Set(name, value) // the preset's values parse
			}
		}
	}
	var err error
	if o.attachments.sizes, err = parseSizes(*sizes); err != nil {
		fmt.Fprintf(os.Stderr, "synkbench: %v\n", err)
		os.Exit(2)
	}
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
	if o.pushRecords < 0 {
		errs = append(errs, errors.New("-push-records must not be negative (0 skips pushing, pulling and exporting)"))
	}
	if o.bundle {
		positive("bundle-files above 3", o.bundleFiles-3)
		positive("manifest-clients", o.manifestClients)
		positive("manifest-requests", o.manifestRequests)
	}
	positive("pull-clients", o.pullClients)
	if o.pullRounds < 0 {
		errs = append(errs, errors.New("-pull-rounds must not be negative"))
	}
	if o.pullLimit < 1 || o.pullLimit > 500 {
		errs = append(errs, errors.New("-pull-limit must be from 1 to 500"))
	}
	if o.recordBytes < 0 {
		errs = append(errs, errors.New("-record-bytes must not be negative"))
	}
	switch o.mode {
	case "sync", "attachments":
	case "mixed":
		positive("push-records", o.pushRecords)
		if o.mixed.attachmentClients < 0 || o.mixed.loginClients < 0 || o.mixed.fileBytes < 1 {
			errs = append(errs, errors.New("-attachment-clients and -login-clients must not be negative, -file-bytes must be positive"))
		}
	default:
		errs = append(errs, errors.New("-mode must be sync, attachments or mixed"))
	}
	if o.attachments.totalBytes < 1 {
		errs = append(errs, errors.New("-attachment-bytes must be positive"))
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
	if o.mode != "attachments" && o.pushRecords > 0 {
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

	c := newClient(srv.baseURL, o.clients+o.pullClients+o.manifestClients+o.mixed.attachmentClients+o.mixed.loginClients, o.requestTimeout)
	admin, tokens, err := setupUsers(ctx, c, adminPassword, max(o.clients, o.pullClients, o.mixed.attachmentClients))
	if err != nil {
		return err
	}
	if o.mode == "attachments" {
		arep := attachmentReport{Machine: rep.Machine, Database: db.name, Clients: o.clients}
		if err := runAttachments(ctx, o, srv.pid(), c, tokens, work, &arep); err != nil {
			return err
		}
		if o.jsonOut {
			return printJSON(os.Stdout, arep)
		}
		return printAttachmentText(os.Stdout, arep)
	}
	if o.mode == "mixed" {
		mrep := mixedReport{Machine: rep.Machine, Database: db.name}
		if err := runMixed(ctx, o, srv.pid(), c, adminPassword, tokens, plan, &mrep); err != nil {
			return err
		}
		if o.jsonOut {
			return printJSON(os.Stdout, mrep)
		}
		return printMixedText(os.Stdout, mrep)
	}
	if err := measure(ctx, o, srv.pid(), db.serverURL, c, tokens, plan, &rep); err != nil {
		return err
	}
	if o.export && o.pushRecords > 0 {
		phase, err := runExports(ctx, c, tokens[0], db.serverURL, work, srv.pid(), o.pushRecords, o.rssInterval)
		if err != nil {
			return err
		}
		rep.Export = &phase
		if kib, err := readProcKiB(srv.pid(), "VmHWM"); err == nil {
			rep.Memory.HWMMiB = mib(kib)
		}
	}
	if o.bundle {
		phase, err := runBundle(ctx, o, srv.pid(), c, admin)
		if err != nil {
			return fmt.Errorf("bundle phase: %w", err)
		}
		rep.Bundle = &phase
		if kib, err := readProcKiB(srv.pid(), "VmHWM"); err == nil {
			rep.Memory.HWMMiB = mib(kib)
		}
	}
	if o.jsonOut {
		return printJSON(os.Stdout, rep)
	}
	return printText(os.Stdout, rep)
}

// measure runs the raw PostgreSQL reference of the push phase on the benchmark database,
// then the push phase and the pull rounds against the server process pid, sampling its
// memory, and fills in rep.
func measure(ctx context.Context, o options, pid int, databaseURL string, c *client, tokens []string, plan pushPlan, rep *report) error {
	kib, err := readProcKiB(pid, "VmRSS")
	if err != nil {
		return fmt.Errorf("error reading the server's memory: %w", err)
	}
	rep.Memory.StartRSSMiB = mib(kib)
	if o.pushRecords == 0 {
		return nil
	}

	logf("raw PostgreSQL: %d clients inserting the same batches", o.clients)
	plain, shaped, err := runRawPush(ctx, databaseURL, plan)
	if err != nil {
		return fmt.Errorf("raw PostgreSQL reference: %w", err)
	}
	rep.Push.RawPostgres, rep.Push.RawCPU, rep.Push.RawShaped, rep.Push.RawShapedCPU = plain.stats, plain.cpu, shaped.stats, shaped.cpu
	logf("push: %d clients, %d records in batches of %d", o.clients, o.pushRecords, o.batch)
	if rep.Push.LoadAverage, err = loadAverage(); err != nil {
		return err
	}
	stopRSS, stopCPU := sampleRSS(pid, o.rssInterval), measureCPU(pid)
	rep.Push.phaseStats, err = runPush(ctx, c, tokens, plan)
	rep.Push.PeakRSSMiB, rep.Push.CPU = stopRSS(), stopCPU(rep.Push.Requests)
	if err != nil {
		return fmt.Errorf("push phase: %w", err)
	}
	rep.Push.VsRawPostgres = round(rep.Push.RecordsPerSec/rep.Push.RawPostgres.RecordsPerSec, 3)
	rep.Push.ShapedVsRaw = round(rep.Push.RawShaped.RecordsPerSec/rep.Push.RawPostgres.RecordsPerSec, 3)
	if rep.Push.PushesPerCommit, err = pushesPerCommit(ctx, databaseURL); err != nil {
		return err
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

	if kib, err = readProcKiB(pid, "VmHWM"); err != nil {
		return fmt.Errorf("error reading the server's memory: %w", err)
	}
	// The phases reset the kernel's mark where they can: the overall peak is the highest.
	rep.Memory.PushPeakRSSMiB, rep.Memory.PullPeakRSSMiB = rep.Push.PeakRSSMiB, rep.Pull.PeakRSSMiB
	rep.Memory.HWMMiB = max(mib(kib), rep.Push.PeakRSSMiB, rep.Pull.PeakRSSMiB)
	return nil
}
