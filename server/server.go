// Package server is the hand-written side of the contract: one file per spec tag
// implements the generated strict interface, plus the middleware, error rendering and
// background jobs that surround it.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	echomiddleware "github.com/oapi-codegen/echo-middleware"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/authlimit"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/buildinfo"
	"github.com/opendataensemble/synkronus/server/export"
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
	// CleanupInterval is how often expired push receipts and refresh tokens are removed.
	CleanupInterval time.Duration
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
	export         *export.Service
	presence       *presenceRecorder
	portal         *portal.Portal
	spec           *openapi3.T
	version        string
	echo           *echo.Echo
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
	q := dbgen.New(deps.Pool)
	s := &Server{
		pool:           deps.Pool,
		blobs:          deps.Blobs,
		q:              q,
		log:            deps.Log,
		opts:           opts,
		hasher:         deps.Hasher,
		issuer:         issuer,
		accounts:       newAccountCache(q, opts.AccountCacheTTL),
		limiter:        authlimit.New(*opts.LoginLimits),
		refreshLimiter: authlimit.New(authlimit.Config{PerAddr: opts.LoginLimits.PerAddr}),
		sync:           obsync.NewService(deps.Pool, opts.ConflictPolicy),
		export:         export.NewService(deps.Pool, opts.MaxExports),
		presence:       newPresenceRecorder(q, deps.Log),
		spec:           spec,
		version:        version,
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

// Start runs the background jobs until ctx ends; Wait on the result returns once they
// have stopped (the presence recorder flushes what it holds first).
func (s *Server) Start(ctx context.Context) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.presence.run(ctx) }()
	go func() { defer wg.Done(); s.cleanupLoop(ctx) }()
	return &wg
}

func (s *Server) routes(e *echo.Echo) {
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = s.handleError
	e.IPExtractor = echo.ExtractIPDirect() // forwarding headers are not trusted
	e.Pre(normalizePath(s.version))
	e.Use(middleware.RequestID())
	e.Use(s.accessLog)
	e.Use(middleware.RecoverWithConfig(middleware.RecoverConfig{LogErrorFunc: func(c echo.Context, err error, stack []byte) error {
		s.log.ErrorContext(c.Request().Context(), "panic", "error", err, "stack", string(stack), "request_id", requestID(c))
		return err
	}}))
	e.Use(middleware.CORSWithConfig(corsConfig))
	e.Use(withRequestContext)
	e.Use(s.bodyLimit)
	e.Use(odeVersionCheck(s.version))
	e.Use(s.requestValidator())
	e.Use(s.presence.middleware)

	api.RegisterHandlers(e, api.NewStrictHandler(s, nil))
	e.GET("/openapi/synkronus.yaml", serveSpec)
	e.GET("/docs", s.serveDocs)
	s.portal.Register(e)
}

// bodylessOperations are validated without their body: their handlers check the body
// themselves (a push validates each record on its own so that one bad record does not
// fail the batch), and buffering it for the validator would double its cost.
var bodylessOperations = map[string]bool{
	"/api/sync/push": true,
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
		withBody := full(next)
		return func(c echo.Context) error {
			if !bodylessOperations[c.Path()] {
				return withBody(c)
			}
			// Validate a body-less clone, then hand the handler the real body together
			// with the context the authentication step produced.
			orig := c.Request()
			clone := orig.Clone(orig.Context())
			clone.Body, clone.ContentLength = http.NoBody, 0
			c.SetRequest(clone)
			return bodyless(func(c echo.Context) error {
				c.SetRequest(orig.WithContext(c.Request().Context()))
				return next(c)
			})(c)
		}
	}
}

var errNotImplemented = newProblem(http.StatusNotImplemented, codeNotImplemented, "this operation is part of the contract but not implemented by this server yet")
