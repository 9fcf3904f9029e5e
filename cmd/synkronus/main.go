// Command synkronus is the ODE sync server: it prepares the database, then serves the API
// until SIGINT or SIGTERM, and exits non-zero with a clear message when it cannot start.
package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/joho/godotenv"
	"golang.org/x/term"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/appbundle"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/buildinfo"
	"github.com/opendataensemble/synkronus/server/passwords"
	"github.com/opendataensemble/synkronus/server/portal"
)

const usage = `synkronus: the ODE sync server. It is configured by environment variables (or a .env file): DATABASE_URL, PORT, HOST, JWT_SECRET, JWT_SECRET_FILE,
ADMIN_USERNAME, ADMIN_PASSWORD, DATA_DIR, BLOB_URL, LOG_LEVEL, LOG_FORMAT, PUBLIC_URL, ACCESS_TOKEN_TTL,
REFRESH_TOKEN_TTL, SYNC_CONFLICT_POLICY, PUSH_RECEIPT_TTL, MAX_PUSH_BYTES, MAX_JSON_BYTES,
MAX_ATTACHMENT_BYTES, IMAGE_PROCESSING, IMAGE_MAX_WIDTH, IMAGE_MAX_HEIGHT, IMAGE_JPEG_QUALITY,
IMAGE_MAX_PIXELS, MAX_VERSIONS_KEPT, MAX_BUNDLE_BYTES, MAX_BUNDLE_UNCOMPRESSED_BYTES, MAX_BUNDLE_FILES,
DB_MAX_CONNS, BCRYPT_COST, EXPORT_MAX_CONCURRENT, PPROF_ADDR, METRICS_ADDR, METRICS_TOKEN, TRUSTED_PROXIES, BODY_READ_TIMEOUT,
MIN_UPLOAD_RATE, SHUTDOWN_TIMEOUT, PORTAL_IDLE_TIMEOUT, PORTAL_SESSION_MAX_AGE. See the README for their meaning and defaults.

"synkronus healthcheck" asks the server configured by the same variables for /health and
exits 0 when it answers 200 (for container health checks, where no HTTP client is installed).
`

func main() {
	if len(os.Args) == 2 && os.Args[1] == "healthcheck" {
		os.Exit(healthcheck())
	}
	if len(os.Args) > 1 {
		fmt.Fprint(os.Stderr, usage)
		if a := os.Args[1]; a == "-h" || a == "-help" || a == "--help" {
			os.Exit(0)
		}
		os.Exit(2)
	}
	// A .env file supplies defaults; variables already set in the environment win.
	if err := godotenv.Load(); err != nil && !errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(os.Stderr, "synkronus: error reading .env: %v\n", err)
		os.Exit(2)
	}
	cfg, err := loadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "synkronus: invalid configuration:\n%v\n", err)
		os.Exit(2)
	}
	log := newLogger(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("synkronus stopped", "error", err)
		os.Exit(1)
	}
}

func newLogger(cfg config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "text" || (cfg.LogFormat == "" && term.IsTerminal(int(os.Stderr.Fd()))) {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

func run(ctx context.Context, cfg config, log *slog.Logger) error {
	version, commit, _ := buildinfo.Info()
	log.Info("starting synkronus", "version", version, "commit", commit)

	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := db.EnsureDatabase(startCtx, cfg.DatabaseURL); err != nil {
		return fmt.Errorf("database unavailable (check DATABASE_URL): %w", err)
	}
	pool, err := db.Connect(startCtx, cfg.DatabaseURL, cfg.DBMaxConns)
	if err != nil {
		return fmt.Errorf("database unavailable (check DATABASE_URL): %w", err)
	}
	defer pool.Close()
	if err := db.Migrate(startCtx, pool, log); err != nil {
		return err
	}
	secret, err := signingKey(startCtx, pool, cfg, log)
	if err != nil {
		return err
	}
	blobs, err := blobstore.Open(startCtx, cfg.BlobURL)
	if err != nil {
		return fmt.Errorf("file storage unavailable (check BLOB_URL and DATA_DIR): %w", err)
	}
	defer blobs.Close()
	hasher := passwords.NewHasher(cfg.BcryptCost, 1)
	if err := bootstrapAdmin(startCtx, pool, hasher, cfg, log); err != nil {
		return err
	}

	srv, err := server.New(server.Deps{Pool: pool, Log: log, Hasher: hasher, SigningKey: secret, Blobs: blobs}, server.Options{
		AccessTokenTTL:  cfg.AccessTokenTTL,
		RefreshTokenTTL: cfg.RefreshTokenTTL,
		ConflictPolicy:  cfg.ConflictPolicy,
		ReceiptTTL:      cfg.ReceiptTTL,
		MaxJSONBytes:    cfg.MaxJSONBytes,
		MaxPushBytes:    cfg.MaxPushBytes,
		PublicURL:       cfg.PublicURL,
		DataDir:         cfg.DataDir,
		TrustedProxies:  cfg.TrustedProxies,
		BodyReadTimeout: cfg.BodyReadTimeout,
		MinUploadRate:   cfg.MinUploadRate,
		Attachments:     cfg.Attachments,
		MaxExports:      cfg.MaxExports,
		MaxVersionsKept: cfg.MaxVersionsKept,
		BundleLimits: appbundle.Limits{MaxUploadBytes: cfg.MaxBundleBytes, MaxUncompressedBytes: cfg.MaxBundleUncompressedBytes,
			MaxFiles: cfg.MaxBundleFiles},
		Portal: portal.Options{
			IdleTimeout: cfg.PortalIdleTimeout, MaxAge: cfg.PortalMaxAge,
			SecureCookies: strings.HasPrefix(cfg.PublicURL, "https://"),
		},
	})
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s (is the port in use? set PORT): %w", addr, err)
	}
	handler := srv.Handler()
	var metricsSrv *http.Server
	switch {
	case cfg.MetricsAddr != "":
		if metricsSrv, err = serveMetrics(cfg.MetricsAddr, srv.MetricsHandler(cfg.MetricsToken), log); err != nil {
			return err
		}
	case cfg.MetricsToken != "":
		// No address of their own: the metrics share the API's port, behind the token.
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", srv.MetricsHandler(cfg.MetricsToken))
		mux.Handle("/", handler)
		handler = mux
	}
	// Request bodies get their own deadline, sized by their length (see server.Options
	// MinUploadRate); headers must arrive promptly, and idle connections are closed.
	httpSrv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	if cfg.PprofAddr != "" {
		go servePprof(cfg.PprofAddr, log)
	}
	bg := srv.Start(ctx)
	log.Info("synkronus listening", "addr", ln.Addr().String(), "admin_portal", portalURL(cfg, ln.Addr()))
	serveErr := make(chan error, 1)
	go func() { serveErr <- httpSrv.Serve(ln) }()

	select {
	case err := <-serveErr:
		return fmt.Errorf("error serving HTTP: %w", err)
	case <-ctx.Done():
	}
	// Draining: no new connections; requests under way finish (bodies still arriving get
	// a few seconds); what still runs when SHUTDOWN_TIMEOUT ends is cut off. A stop asked
	// for is a clean stop either way.
	log.Info("shutting down")
	shutdownCtx, cancelShutdown := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelShutdown()
	if err := httpSrv.Shutdown(shutdownCtx); err != nil {
		log.Warn("requests still running at the end of the shutdown timeout were cut off", "timeout", cfg.ShutdownTimeout, "error", err)
		_ = httpSrv.Close()
	}
	if metricsSrv != nil {
		_ = metricsSrv.Close()
	}
	bg.Wait()
	log.Info("stopped")
	return nil
}

// portalURL is where a browser on this machine (or anywhere, given PUBLIC_URL) finds the
// admin portal.
func portalURL(cfg config, addr net.Addr) string {
	if cfg.PublicURL != "" {
		return cfg.PublicURL + portal.Base
	}
	host := cfg.Host
	if host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
		host = "localhost"
	}
	_, port, _ := net.SplitHostPort(addr.String())
	return "http://" + net.JoinHostPort(host, port) + portal.Base
}

// signingKey returns the JWT key: the configured one, or else a strong random key
// generated once and stored in the database, where every process of this database finds it.
func signingKey(ctx context.Context, pool *pgxpool.Pool, cfg config, log *slog.Logger) ([]byte, error) {
	if cfg.JWTSecret != nil {
		return cfg.JWTSecret, nil
	}
	fresh := make([]byte, 64)
	if _, err := rand.Read(fresh); err != nil {
		return nil, fmt.Errorf("error generating JWT key: %w", err)
	}
	q := dbgen.New(db.Conn(pool))
	for range 2 { // a concurrent first start may have inserted it under our statement's snapshot
		key, err := q.ServerSecretEnsure(ctx, dbgen.ServerSecretEnsureParams{Name: "jwt_signing_key", Value: fresh})
		if errors.Is(err, db.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("error loading the stored JWT key: %w", err)
		}
		log.Info("no JWT_SECRET set: signing tokens with the key generated for this database (table server_secrets); set JWT_SECRET or JWT_SECRET_FILE to choose one")
		return key, nil
	}
	return nil, errors.New("error loading the stored JWT key: not found after insert")
}

// bootstrapAdmin creates the first admin when there are no users. With no ADMIN_PASSWORD
// it generates one and prints it once.
func bootstrapAdmin(ctx context.Context, pool *pgxpool.Pool, hasher *passwords.Hasher, cfg config, log *slog.Logger) error {
	password, generated := cfg.AdminPassword, false
	if password == "" {
		b := make([]byte, 18)
		if _, err := rand.Read(b); err != nil {
			return fmt.Errorf("error generating admin password: %w", err)
		}
		password, generated = base64.RawURLEncoding.EncodeToString(b), true
	}
	if err := passwords.Validate(password); err != nil {
		return fmt.Errorf("ADMIN_PASSWORD: %w", err)
	}
	hash, err := hasher.Hash(ctx, password)
	if err != nil {
		return fmt.Errorf("error hashing admin password: %w", err)
	}
	err = db.InTx(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := dbgen.New(tx)
		if err := q.UserBootstrapLock(ctx); err != nil {
			return err
		}
		_, err := q.UserCreateIfNoneExist(ctx, dbgen.UserCreateIfNoneExistParams{Username: cfg.AdminUsername, PasswordHash: hash})
		return err
	})
	if errors.Is(err, db.ErrNotFound) {
		return nil // users exist already
	}
	if err != nil {
		return fmt.Errorf("error creating the first admin: %w", err)
	}
	if generated {
		fmt.Fprintf(os.Stderr, "\n  Created admin account %q with password: %s\n  (shown once; set ADMIN_PASSWORD to choose it)\n  Sign in to the admin portal at %s\n\n",
			cfg.AdminUsername, password, portalURL(cfg, &net.TCPAddr{Port: cfg.Port}))
	}
	log.Info("created the first admin account", "username", cfg.AdminUsername, "password_generated", generated)
	return nil
}

// serveMetrics serves the Prometheus metrics at /metrics on an address of their own, which
// can stay unreachable from outside (a private network, loopback with a local agent).
func serveMetrics(addr string, h http.Handler, log *slog.Logger) (*http.Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot listen on METRICS_ADDR %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	log.Info("serving metrics", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	return srv, nil
}

// healthcheck asks the local server for /health, at the address the configuration gives it.
func healthcheck() int {
	_ = godotenv.Load()
	cfg, err := loadConfig(os.LookupEnv)
	if err != nil {
		fmt.Fprintf(os.Stderr, "synkronus healthcheck: invalid configuration:\n%v\n", err)
		return 2
	}
	host := cfg.Host
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1" // listening on every interface: loopback is one of them
	}
	client := &http.Client{Timeout: 5 * time.Second}
	res, err := client.Get("http://" + net.JoinHostPort(host, strconv.Itoa(cfg.Port)) + "/health")
	if err != nil {
		fmt.Fprintf(os.Stderr, "synkronus healthcheck: %v\n", err)
		return 1
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		fmt.Fprintf(os.Stderr, "synkronus healthcheck: /health answered %s\n", res.Status)
		return 1
	}
	return 0
}

// servePprof serves the Go profiler on its own address, for diagnosing performance.
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Warn("serving the Go profiler", "addr", addr)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	if err := srv.ListenAndServe(); err != nil {
		log.Error("profiler stopped", "error", err)
	}
}
