// Package portal is the administrators' web portal, served by the server itself under
// /portal. Its pages are rendered on the server from templates embedded in the binary, and
// it is a client of the API in process: every page and form turns into calls of the
// contract's operations through the server's own HTTP handler (validation, authentication,
// roles and handlers included), so no rule of the API has a second implementation here.
//
// A browser session is a row of portal_sessions named by a random token in an HttpOnly,
// SameSite=Strict cookie. Each in-process call carries a short-lived access token minted
// for the session with the credential generation the session signed in with: the API's
// own token checks then end the session when the user's password or role changes or the
// user is deleted. Every state-changing form carries the session's synchronizer token.
package portal

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/tokens"
)

// Base is the path the portal is served under.
const Base = "/portal"

// Minter issues and reads the access tokens the portal's in-process calls carry.
type Minter interface {
	IssueAccessWindow(userID, username, role string, generation int64, issuedAt, expiresAt time.Time) (string, error)
	VerifyAccess(token string, now time.Time) (tokens.Claims, error)
}

// Deps are the portal's collaborators.
type Deps struct {
	// API is the server's whole HTTP handler; the portal calls its operations through it.
	API  http.Handler
	Pool *pgxpool.Pool
	Log  *slog.Logger
	// Tokens mints the per-request access tokens of sessions.
	Tokens Minter
	// Version is the server's version, sent as x-ode-version on in-process calls.
	Version string
}

// Options are the portal's settings; zero values take the defaults.
type Options struct {
	// IdleTimeout ends a session not used for this long (default 1 hour).
	IdleTimeout time.Duration
	// MaxAge ends a session this long after sign-in, however busy (default 12 hours).
	MaxAge time.Duration
	// SecureCookies marks cookies Secure even on plain-HTTP requests, for a server behind
	// a TLS-terminating proxy (set when PUBLIC_URL is https). Requests that arrive over
	// TLS always get Secure cookies.
	SecureCookies bool
}

func (o *Options) setDefaults() {
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = time.Hour
	}
	if o.MaxAge <= 0 {
		o.MaxAge = 12 * time.Hour
	}
}

// Portal serves the web portal.
type Portal struct {
	api     http.Handler
	q       *dbgen.Queries
	log     *slog.Logger
	tokens  Minter
	version string
	opts    Options
	pages   *pages
}

// New prepares the portal; Register serves it.
func New(deps Deps, opts Options) (*Portal, error) {
	opts.setDefaults()
	pg, err := parsePages()
	if err != nil {
		return nil, fmt.Errorf("error parsing portal templates: %w", err)
	}
	return &Portal{api: deps.API, q: dbgen.New(db.Conn(deps.Pool)), log: deps.Log, tokens: deps.Tokens, version: deps.Version, opts: opts, pages: pg}, nil
}

// Register adds the portal's routes to e, and sends browsers that ask for HTML at / to it.
func (p *Portal) Register(e *echo.Echo) {
	e.Pre(p.rootForBrowsers)
	g := e.Group(Base, p.securityHeaders, p.recoverHTML)
	g.GET("/static/:name", serveStatic)
	g.GET("/login", p.loginForm)
	g.POST("/login", p.login)
	g.POST("/logout", p.action(p.logout))

	g.GET("", p.page(p.overview))
	g.GET("/account", p.page(p.account))
	g.POST("/account/password", p.action(p.changeOwnPassword))

	g.GET("/users", p.page(p.users))
	g.POST("/users", p.action(p.createUser))
	g.POST("/users/role", p.action(p.changeRole))
	g.POST("/users/password", p.action(p.resetPassword))
	g.POST("/users/delete", p.action(p.deleteUser))
	g.GET("/devices", p.page(p.devices))

	g.GET("/observations", p.page(p.observations))
	g.GET("/observations/record", p.page(p.observation))

	g.GET("/quarantine", p.page(p.quarantine))
	g.GET("/quarantine/record", p.page(p.quarantined))
	g.POST("/quarantine/retry", p.action(p.retryQuarantined))
	g.POST("/quarantine/discard", p.action(p.discardQuarantined))

	g.GET("/bundles", p.page(p.bundles))
	g.POST("/bundles", p.upload(p.uploadBundle))
	g.POST("/bundles/activate", p.action(p.activateBundle))
	g.GET("/bundles/changes", p.page(p.bundleChanges))

	g.GET("/attachments", p.page(p.attachments))
	g.GET("/attachments/file", p.page(p.attachmentFile))

	g.GET("/exports", p.page(p.exports))
	g.GET("/exports/download", p.page(p.downloadExport))

	g.GET("/reset", p.page(p.resetForm))
	g.POST("/reset", p.action(p.reset))
}

// StreamsBody reports the portal routes whose bodies (uploads) are streamed on to an API
// operation, which applies its own size limit, rather than read here.
func StreamsBody(method, route string) bool {
	return method == http.MethodPost && route == Base+"/bundles"
}

// Cleanup removes expired sessions; the server's cleanup loop calls it.
func (p *Portal) Cleanup(ctx context.Context) (int64, error) {
	return p.q.PortalSessionDeleteExpired(ctx, p.opts.IdleTimeout.Seconds())
}

// rootForBrowsers sends a browser that asks for / preferring HTML to the portal; API
// clients asking for JSON (or anything) keep whatever / serves them.
func (p *Portal) rootForBrowsers(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		r := c.Request()
		if r.URL.Path == "/" && (r.Method == http.MethodGet || r.Method == http.MethodHead) && prefersHTML(r.Header.Get("Accept")) {
			c.Response().Header().Set("Vary", "Accept")
			return c.Redirect(http.StatusSeeOther, Base)
		}
		return next(c)
	}
}

// contentSecurityPolicy allows only the portal's own files: no inline script or style, no
// framing, forms posting only here.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// securityHeaders sets the headers every portal response carries.
func (p *Portal) securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		h := c.Response().Header()
		h.Set("Content-Security-Policy", contentSecurityPolicy)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=()")
		return next(c)
	}
}

// recoverHTML turns a panic in a portal handler into an error page instead of a problem
// document; the server's own recovery logs it with the stack.
func (p *Portal) recoverHTML(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) (err error) {
		defer func() {
			if r := recover(); r != nil {
				p.log.ErrorContext(c.Request().Context(), "portal panic", "panic", r, "path", c.Request().URL.Path)
				err = p.renderError(c, nil, http.StatusInternalServerError, "Something went wrong on the server. It has been logged; try again.")
			}
		}()
		return next(c)
	}
}
