// Package server is the hand-written side of the contract: one file per spec tag
// implements the generated strict interface, plus the middleware, error rendering and
// background jobs that surround it.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	echomiddleware "github.com/oapi-codegen/echo-middleware"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/appbundle"
	"github.com/opendataensemble/synkronus/server/attachments"
	"github.com/opendataensemble/synkronus/server/authlimit"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/buildinfo"
	"github.com/opendataensemble/synkronus/server/export"
	"github.com/opendataensemble/synkronus/server/metrics"
	"github.com/opendataensemble/synkronus/server/obsync"
	"github.com/opendataensemble/synkronus/server/passwords"
	"github.com/opendataensemble/synkronus/server/portal"
	"github.com/opendataensemble/synkronus/server/tokens"
)

// Deps are the server's collaborators.
type Deps struct {
	Pool       *pgxpool.Pool
	Log        *slog.Logger
	Hasher     *passwords.Hasher
	SigningKey []byte
	// Blobs keeps attachments and app bundle files.
	Blobs *blobstore.Store
}

// Options are the server's settings; zero values take the defaults.
type Options struct {
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	ConflictPolicy  obsync.Policy
	ReceiptTTL      time.Duration
	MaxJSONBytes    int64
	MaxPushBytes    int64
	PublicURL       string
	DataDir         string
	LoginLimits     *authlimit.Config
	// AccountCacheTTL bounds how long another process may honour a token after its
	// account changed.
	AccountCacheTTL time.Duration
	// CleanupInterval is how often expired push receipts and refresh tokens, and the files
	// of deleted and abandoned attachment uploads, are removed.
	CleanupInterval time.Duration
	// RefreshGrace is how long after a refresh token was spent a retry presenting it again
	// still gets a new pair (the answer to the first use may have been lost), provided the
	// token it was exchanged for was never used.
	RefreshGrace time.Duration
	// TrustedProxies are the networks of the reverse proxies in front of the server: only
	// a request arriving from one of them has its client address taken from
	// X-Forwarded-For. Without any, the connection's address is the client's.
	TrustedProxies []*net.IPNet
	// BodyReadTimeout and MinUploadRate (bytes per second) make the deadline for reading
	// a request body: BodyReadTimeout plus the body's length (or, when unknown, the
	// route's limit) at MinUploadRate.
	BodyReadTimeout time.Duration
	MinUploadRate   int64
	// Attachments tune uploads, the manifest and image processing.
	Attachments attachments.Options
	// BundleLimits bound app bundle uploads; zero fields take appbundle's defaults.
	BundleLimits appbundle.Limits
	// MaxVersionsKept is how many app bundle versions retention keeps besides the
	// active one (default 5).
	MaxVersionsKept int
	// MaxExports is how many data exports run at once; more wait for a turn.
	MaxExports int
	// Portal are the web portal's settings.
	Portal portal.Options
}

func (o *Options) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.AccessTokenTTL, 24*time.Hour)
	def(&o.RefreshTokenTTL, 30*24*time.Hour)
	def(&o.ReceiptTTL, 24*time.Hour)
	def(&o.AccountCacheTTL, 5*time.Second)
	def(&o.CleanupInterval, 10*time.Minute)
	def(&o.RefreshGrace, time.Minute)
	def(&o.BodyReadTimeout, 30*time.Second)
	if o.MinUploadRate <= 0 {
		o.MinUploadRate = 16 << 10
	}
	if o.MaxJSONBytes <= 0 {
		o.MaxJSONBytes = 1 << 20
	}
	if o.MaxPushBytes <= 0 {
		o.MaxPushBytes = 32 << 20
	}
	if o.MaxExports <= 0 {
		o.MaxExports = 2
	}
	if o.ConflictPolicy == "" {
		o.ConflictPolicy = obsync.PolicyNewest
	}
	if o.LoginLimits == nil {
		cfg := authlimit.DefaultConfig()
		o.LoginLimits = &cfg
	}
}

// Server implements api.StrictServerInterface.
type Server struct {
	pool     *pgxpool.Pool
	blobs    *blobstore.Store
	q        *dbgen.Queries
	log      *slog.Logger
	opts     Options
	hasher   *passwords.Hasher
	issuer   *tokens.Issuer
	accounts *accountCache
	limiter  *authlimit.Limiter
	// refreshLimiter throttles failed refreshes per client address: refresh tokens are
	// unguessable, but a client hammering with bad ones is refused cheaply.
	refreshLimiter *authlimit.Limiter
	sync           *obsync.Service
	attachments    *attachments.Service
	bundles        *appbundle.Service
	manifestBodies encodedManifests
	export         *export.Service
	presence       *presenceRecorder
	metrics        *metrics.Metrics
	portal         *portal.Portal
	spec           *openapi3.T
	// operations maps an Echo route (method and path) to the contract's operation id.
	operations map[string]string
	version    string
	echo       *echo.Echo
	// draining ends when the server starts shutting down: bodies still being received
	// then get a short last deadline, so that shutdown does not wait on slow uploads.
	draining     context.Context
	stopDraining context.CancelFunc
}

var _ api.StrictServerInterface = (*Server)(nil)

// New builds the server and its HTTP stack.
func New(deps Deps, opts Options) (*Server, error) {
	opts.setDefaults()
	issuer, err := tokens.NewIssuer(deps.SigningKey, opts.AccessTokenTTL)
	if err != nil {
		return nil, fmt.Errorf("error creating token issuer: %w", err)
	}
	spec, err := api.GetSwagger()
	if err != nil {
		return nil, fmt.Errorf("error loading embedded spec: %w", err)
	}
	spec.Servers = nil // validation must not depend on the host the server is reached at
	version, _, _ := buildinfo.Info()
	log := slog.New(requestLogHandler{deps.Log.Handler()})
	q := dbgen.New(db.Conn(deps.Pool))
	bundleCfg := appbundle.Config{Limits: opts.BundleLimits, KeepVersions: opts.MaxVersionsKept}
	if opts.DataDir != "" {
		// Uploads wait for validation beside the data rather than in the OS temporary
		// directory, which may be a small in-memory file system.
		bundleCfg.TempDir = filepath.Join(opts.DataDir, "tmp")
		if err := os.MkdirAll(bundleCfg.TempDir, 0o750); err != nil {
			return nil, fmt.Errorf("error creating the upload directory: %w", err)
		}
	}
	draining, stopDraining := context.WithCancel(context.Background())
	s := &Server{
		pool:           deps.Pool,
		blobs:          deps.Blobs,
		q:              q,
		log:            log,
		opts:           opts,
		hasher:         deps.Hasher,
		issuer:         issuer,
		accounts:       newAccountCache(q, opts.AccountCacheTTL),
		limiter:        authlimit.New(deps.Pool, "login", *opts.LoginLimits),
		refreshLimiter: authlimit.New(deps.Pool, "refresh", authlimit.Config{PerAddr: opts.LoginLimits.PerAddr}),
		sync:           obsync.NewService(deps.Pool, opts.ConflictPolicy),
		attachments:    attachments.NewService(deps.Pool, deps.Blobs, log, opts.Attachments),
		bundles:        appbundle.NewService(deps.Pool, deps.Blobs, log, bundleCfg),
		export:         export.NewService(deps.Pool, opts.MaxExports),
		presence:       newPresenceRecorder(q, log),
		metrics:        metrics.New(deps.Pool),
		spec:           spec,
		operations:     operationIDs(spec),
		version:        version,
		draining:       draining,
		stopDraining:   stopDraining,
	}
	s.echo = echo.New()
	s.portal, err = portal.New(portal.Deps{API: s.echo, Pool: deps.Pool, Log: deps.Log, Tokens: issuer, Version: version}, opts.Portal)
	if err != nil {
		return nil, err
	}
	s.routes(s.echo)
	return s, nil
}

// Handler returns the HTTP handler serving the whole API.
func (s *Server) Handler() http.Handler { return s.echo }

// MetricsHandler serves the server's Prometheus metrics; with a token, only to requests
// bearing it.
func (s *Server) MetricsHandler(token string) http.Handler { return s.metrics.Handler(token) }

// Start runs the background jobs until ctx ends; Wait on the result returns once they
// have stopped (the presence recorder flushes what it holds first). The end of ctx also
// starts draining: request bodies still arriving get a last few seconds.
func (s *Server) Start(ctx context.Context) *sync.WaitGroup {
	context.AfterFunc(ctx, s.stopDraining)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.presence.run(ctx) }()
	go func() { defer wg.Done(); s.cleanupLoop(ctx) }()
	return &wg
}

func (s *Server) routes(e *echo.Echo) {
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.JSONSerializer = jsonSerializer{}
	e.IPExtractor = ipExtractor(s.opts.TrustedProxies)
	e.Pre(normalizePath(s.version))
	e.Use(middleware.RequestID())
	e.Use(securityHeaders)
	e.Use(s.accessLog)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.ErrorContext(c.Request().Context(), "panic", "error", err, "stack", string(stack))
		return err
	}}))
	e.Use(middleware.CORSWithConfig(corsConfig))
	e.Use(withRequestContext)
	e.Use(s.bodyLimit)
	e.Use(s.bodyDeadline)
	e.Use(odeVersionCheck(s.version))
	e.Use(s.requestValidator())
	e.Use(s.presence.middleware)

	api.RegisterHandlers(e, api.NewStrictHandler(s, []api.StrictMiddlewareFunc{refuseUnstorableText}))
	e.GET("/openapi/synkronus.yaml", serveSpec)
	e.GET("/docs", s.serveDocs)
	s.portal.Register(e)
}

// uploadRoute is the route of attachment uploads (and downloads).
const uploadRoute = "/api/attachments/:attachment_id"

// bodylessOperations are validated without their body: their handlers check the body
// themselves: a push validates each record on its own so that one bad record does not
// fail the batch (it reads its body as it arrives; buffering it for the validator would
// hold it whole, and the records reach the handler as their text was sent), and uploads
// (attachments, app bundles) stream to storage.
var bodylessOperations = map[string]bool{
	"/api/sync/push": true,
	"/api/admin/quarantine/:quarantine_id/retry": true,
	"/api/app-bundle/push":                       true,
	uploadRoute:                                  true,
}

// requestValidator checks every API request against the embedded spec (parameters,
// headers, bodies and security) before a handler runs.
func (s *Server) requestValidator() echo.MiddlewareFunc {
	opts := func(excludeBody bool) *echomiddleware.Options {
		return &echomiddleware.Options{
			Options: openapi3filter.Options{
				AuthenticationFunc: s.authenticate,
				ExcludeRequestBody: excludeBody,
				MultiError:         false,
				// Handlers bind the value the validator checked, not a second decode of
				// the body (which would match member names case-insensitively).
				KeepValidatedValue: true,
			},
			DoNotValidateServers: true,
			Skipper: func(c echo.Context) bool {
				p := c.Request().URL.Path
				return c.Request().Method == http.MethodOptions || (!strings.HasPrefix(p, "/api/") && p != "/health")
			},
		}
	}
	full := echomiddleware.OapiRequestValidatorWithOptions(s.spec, opts(false))
	bodyless := echomiddleware.OapiRequestValidatorWithOptions(s.spec, opts(true))
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			orig := c.Request()
			validate := full
			if bodylessOperations[c.Path()] {
				// Validate a body-less clone; the handler reads the real body.
				clone := orig.Clone(orig.Context())
				clone.Body, clone.ContentLength = http.NoBody, 0
				c.SetRequest(clone)
				validate = bodyless
			}
			return validate(func(c echo.Context) error {
				// Authentication put the caller on a copy of the request, while the
				// validated body was left on the original: hand the handler both.
				c.SetRequest(orig.WithContext(c.Request().Context()))
				return next(c)
			})(c)
		}
	}
}

// ipExtractor decides whose address a request comes from. Behind trusted proxies it is
// the nearest address in X-Forwarded-For that is not one of them; otherwise forwarding
// headers, which anyone can send, are ignored.
func ipExtractor(trusted []*net.IPNet) echo.IPExtractor {
	if len(trusted) == 0 {
		return echo.ExtractIPDirect()
	}
	opts := []echo.TrustOption{echo.TrustLoopback(false), echo.TrustLinkLocal(false), echo.TrustPrivateNet(false)}
	for _, n := range trusted {
		opts = append(opts, echo.TrustIPRange(n))
	}
	return echo.ExtractIPFromXFFHeader(opts...)
}

// operationIDs maps each operation's Echo route to its operation id.
func operationIDs(spec *openapi3.T) map[string]string {
	ids := make(map[string]string)
	for path, item := range spec.Paths.Map() {
		route := strings.NewReplacer("{", ":", "}", "").Replace(path)
		for method, op := range item.Operations() {
			ids[method+" "+route] = op.OperationID
		}
	}
	return ids
}
