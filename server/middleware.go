package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/portal"
)

type ctxKey int

const (
	ctxKeyPrincipal ctxKey = iota
	ctxKeyClientAddr
	ctxKeyRequestID
)

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}

// withRequestContext puts what strict handlers need of the request (they only see its
// context) on that context: the request id and the client's address.
func withRequestContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		ctx := context.WithValue(c.Request().Context(), ctxKeyRequestID, requestID(c))
		ctx = context.WithValue(ctx, ctxKeyClientAddr, c.RealIP())
		c.SetRequest(c.Request().WithContext(ctx))
		return next(c)
	}
}

func clientAddr(ctx context.Context) string {
	addr, _ := ctx.Value(ctxKeyClientAddr).(string)
	return addr
}

// accessLog writes one structured line per request.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		if err != nil {
			c.Error(err) // render now, so that the logged status is the one sent
		}
		req, res := c.Request(), c.Response()
		attrs := []any{
			"method", req.Method, "path", req.URL.Path, "status", res.Status,
			"duration_ms", float64(time.Since(start).Microseconds()) / 1000, "bytes", res.Size,
			"request_id", requestID(c), "client", c.RealIP(),
		}
		if p, ok := principalFrom(req.Context()); ok {
			attrs = append(attrs, "user", p.Username)
		}
		level := slog.LevelInfo
		if res.Status >= 500 {
			level = slog.LevelError
		}
		s.log.Log(req.Context(), level, "request", attrs...)
		return nil
	}
}

// bodyLimit bounds every request body: the push route has its own, larger limit. The
// portal's uploads are streamed on to an API operation, which applies its own.
func (s *Server) bodyLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if portal.StreamsBody(c.Request().Method, c.Path()) {
			return next(c)
		}
		limit := s.opts.MaxJSONBytes
		if c.Path() == "/api/sync/push" {
			limit = s.opts.MaxPushBytes
		}
		req := c.Request()
		if req.ContentLength > limit {
			return newProblem(http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("the request body exceeds the limit of %d bytes", limit))
		}
		req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
		return next(c)
	}
}

// legacyPrefixes are the first path segments older clients call at the root, without /api.
var legacyPrefixes = map[string]bool{
	"auth": true, "sync": true, "attachments": true, "app-bundle": true, "users": true,
	"dataexport": true, "version": true, "versions": true, "admin": true, "stats": true,
	"observations": true,
}

const legacyHeader = "X-Synkronus-Legacy-Path"

// normalizePath runs before routing. It folds repeated and trailing slashes (older clients
// build URLs by concatenation and Echo would route them nowhere), and maps the root paths
// of older clients (/auth/login, /sync/pull, ...) onto /api. Those clients never send
// x-ode-version, so the server's own version stands in for it. Both the decoded and the
// raw path are rewritten, so an encoded slash (%2F) inside a segment survives.
func normalizePath(version string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			req.URL.Path = cleanSlashes(req.URL.Path)
			if req.URL.RawPath != "" {
				req.URL.RawPath = cleanSlashes(req.URL.RawPath)
			}
			req.Header.Del(legacyHeader) // only this middleware may set it
			first, _, _ := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
			if legacyPrefixes[first] {
				req.URL.Path = "/api" + req.URL.Path
				if req.URL.RawPath != "" {
					req.URL.RawPath = "/api" + req.URL.RawPath
				}
				req.Header.Set(legacyHeader, "1")
				req.Header.Set("X-Ode-Version", version)
			}
			return next(c)
		}
	}
}

func cleanSlashes(p string) string {
	for strings.Contains(p, "//") {
		p = strings.ReplaceAll(p, "//", "/")
	}
	if len(p) > 1 {
		p = strings.TrimSuffix(p, "/")
	}
	return p
}

// odeVersionCheck is the x-ode-version handshake on /api: a missing or unreadable header,
// or a major version other than the server's, is 426 with the server's version, before
// authentication, as upstream clients expect.
func odeVersionCheck(serverVersion string) echo.MiddlewareFunc {
	serverMajor, serverOK := parseMajor(serverVersion)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			if !strings.HasPrefix(req.URL.Path, "/api/") || req.Header.Get(legacyHeader) != "" || req.Method == http.MethodOptions {
				return next(c)
			}
			sent := req.Header.Get("X-Ode-Version")
			var msg string
			switch major, ok := parseMajor(sent); {
			case !serverOK:
				msg = "The server's version is not configured, so client versions cannot be checked."
			case strings.TrimSpace(sent) == "":
				msg = "The x-ode-version header is missing: send the app's semantic version, such as 1.0.0."
			case !ok:
				msg = "x-ode-version must be a valid semantic version (e.g. 1.0.0)."
			case major != serverMajor:
				msg = fmt.Sprintf("This app (version %s) cannot sync with this server (version %s): please update the app.", sent, serverVersion)
			default:
				return next(c)
			}
			c.Response().Header().Set("X-Synkronus-Version", serverVersion)
			return c.JSON(http.StatusUpgradeRequired, api.VersionMismatch{Message: msg, SynkronusVersion: serverVersion})
		}
	}
}

// parseMajor reads the major version the way upstream does: trim, drop one leading v, and
// read the digits before the first dot.
func parseMajor(v string) (int, bool) {
	v = strings.TrimSpace(v)
	v = strings.TrimPrefix(strings.TrimPrefix(v, "v"), "V")
	head, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(head)
	if err != nil || n < 0 || head == "" || head[0] == '+' || head[0] == '-' {
		return 0, false
	}
	return n, true
}

// corsConfig lets the admin portal, served from another origin, send its headers and read
// the ones it needs. Requests carry bearer tokens, not cookies, so no credentials mode.
var corsConfig = middleware.CORSConfig{
	AllowOrigins: []string{"*"},
	AllowMethods: []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete, http.MethodOptions},
	AllowHeaders: []string{"accept", "authorization", "content-type", "x-csrf-token", "x-ode-version",
		"x-ode-client-id", "x-repository-generation", "if-none-match", "if-modified-since", "range"},
	ExposeHeaders: []string{"etag", "x-repository-generation", "x-synkronus-version", "link",
		"content-disposition", "retry-after", "x-request-id", "x-export-version"},
	MaxAge: 300,
}
