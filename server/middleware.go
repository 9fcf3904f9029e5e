package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

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
	ctxKeySent
	ctxKeyRequest
	ctxKeyOrigin
	ctxKeyFacts
)

func requestID(c echo.Context) string {
	return c.Response().Header().Get(echo.HeaderXRequestID)
}

// withRequestContext puts what strict handlers need of the request (they only see its
// context) on that context: the client's address, the origin the client
// addressed (for absolute links) and the request itself (for http.ServeContent, which
// reads its conditional and range headers).
func withRequestContext(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		ctx := context.WithValue(req.Context(), ctxKeyClientAddr, c.RealIP())
		ctx = context.WithValue(ctx, ctxKeyOrigin, c.Scheme()+"://"+req.Host)
		ctx = context.WithValue(ctx, ctxKeyRequest, req)
		c.SetRequest(req.WithContext(ctx))
		return next(c)
	}
}

// requestFrom returns the request a strict handler serves.
func requestFrom(ctx context.Context) *http.Request {
	r, _ := ctx.Value(ctxKeyRequest).(*http.Request)
	return r
}

func clientAddr(ctx context.Context) string {
	addr, _ := ctx.Value(ctxKeyClientAddr).(string)
	return addr
}

// sentRequest is what the client sent before normalizePath rewrote the request, so that
// the access log tells older clients (root paths, no version header) from newer ones.
type sentRequest struct {
	path    string
	version string
}

func sentFrom(ctx context.Context) sentRequest {
	sent, _ := ctx.Value(ctxKeySent).(sentRequest)
	return sent
}

// maxLoggedVersion bounds the client version copied into the log.
const maxLoggedVersion = 64

// requestOrigin is the scheme and host the client sent its request to, such as
// https://sync.example.org. Forwarding headers are honoured only as far as Echo's scheme
// extractor trusts them; a client that fakes them only misleads itself, as the links
// built from this go back to it alone.
func requestOrigin(ctx context.Context) string {
	o, _ := ctx.Value(ctxKeyOrigin).(string)
	return o
}

// httpRequest is the request a strict handler serves (its headers, method and URL).
func httpRequest(ctx context.Context) *http.Request {
	r, _ := ctx.Value(ctxKeyRequest).(*http.Request)
	return r
}

// accessLog writes one structured line per request: the path as the client sent it, the
// operation it reached, the client's version and the outcome (the request id, user and
// client id are added by requestLogHandler), and records the request's metrics. It puts
// the request id on the request's context first, so that every line logged while serving
// the request carries it. Server failures are errors; operations not implemented yet and
// unavailable dependencies are warnings.
func (s *Server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		req := c.Request()
		ctx := context.WithValue(req.Context(), ctxKeyRequestID, requestID(c))
		ctx = context.WithValue(ctx, ctxKeyFacts, &requestFacts{})
		setClientID(ctx, req.Header.Get("X-Ode-Client-Id"))
		req = req.WithContext(ctx)
		operation := s.operations[req.Method+" "+c.Path()]
		var upload *countingBody
		if operation == "uploadAttachment" {
			upload = &countingBody{ReadCloser: req.Body}
			req.Body = upload
		}
		c.SetRequest(req)
		err := next(c)
		if err != nil {
			c.Error(err) // render now, so that the logged status is the one sent
		}
		req, res := c.Request(), c.Response()
		took := time.Since(start)
		s.metrics.ObserveRequest(operation, res.Status, took)
		switch {
		case upload != nil:
			s.metrics.AttachmentBytes.WithLabelValues("in").Add(float64(upload.n))
		case operation == "downloadAttachment" && res.Status < http.StatusMultipleChoices: // not a problem body
			s.metrics.AttachmentBytes.WithLabelValues("out").Add(float64(res.Size))
		}
		sent := sentFrom(req.Context())
		attrs := []any{
			"method", req.Method, "path", sent.path, "operation", operation, "status", res.Status,
			"duration_ms", float64(took.Microseconds()) / 1000, "bytes", res.Size,
			"client", c.RealIP(), "client_version", sent.version,
		}
		level := slog.LevelInfo
		switch {
		case res.Status == http.StatusNotImplemented || res.Status == http.StatusServiceUnavailable:
			level = slog.LevelWarn
		case res.Status >= 500:
			level = slog.LevelError
		}
		s.log.Log(req.Context(), level, "request", attrs...)
		return nil
	}
}

// securityHeaders tells browsers not to guess content types: a JSON answer that echoes
// what a client sent must never be run as a page.
func securityHeaders(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set("X-Content-Type-Options", "nosniff")
		return next(c)
	}
}

// bodyLimitFor is the largest body the route accepts.
func (s *Server) bodyLimitFor(c echo.Context) int64 {
	switch {
	case c.Path() == "/api/sync/push" || c.Path() == "/api/admin/quarantine/:quarantine_id/retry":
		return s.opts.MaxPushBytes
	case c.Path() == uploadRoute && c.Request().Method == http.MethodPut:
		return s.attachments.MaxUploadBytes() + multipartOverhead
	case c.Path() == "/api/app-bundle/push":
		return s.bundles.Limits().MaxUploadBytes + multipartOverhead
	}
	return s.opts.MaxJSONBytes
}

// multipartOverhead is what an upload body may hold beyond the file itself: part headers,
// boundaries and small form fields.
const multipartOverhead = 1 << 20

// bodyLimit bounds every request body (see bodyLimitFor; an upload's file is bounded exactly
// while it streams). JSON bodies must be UTF-8, as RFC 8259 requires: the decoder would silently replace bad
// bytes, so they are refused while reading. The push body is checked record by record
// by the sync service instead, so that one bad record does not cost the others. The
// portal's uploads are streamed on to an API operation, which applies its own limit.
func (s *Server) bodyLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if portal.StreamsBody(c.Request().Method, c.Path()) {
			return next(c)
		}
		limit := s.bodyLimitFor(c)
		req := c.Request()
		if req.ContentLength > limit {
			return newProblem(http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("the request body exceeds the limit of %d bytes", limit))
		}
		req.Body = http.MaxBytesReader(c.Response(), req.Body, limit)
		switch mt, _, _ := mime.ParseMediaType(req.Header.Get(echo.HeaderContentType)); {
		case c.Path() == uploadRoute && req.Method == http.MethodPut:
			// The multipart reader reads 4 KiB at a time; this buffer lets the connection be
			// read in large chunks instead (one system call per 128 KiB of an upload).
			req.Body = bufferedBody{bufio.NewReaderSize(req.Body, 128<<10), req.Body}
		case c.Path() != "/api/sync/push" && (mt == echo.MIMEApplicationJSON || strings.HasSuffix(mt, "+json")):
			req.Body = &utf8Body{ReadCloser: req.Body}
		}
		return next(c)
	}
}

// errInvalidUTF8 is a text body that is not UTF-8.
var errInvalidUTF8 = errors.New("the request body is not valid UTF-8")

// utf8Body fails with errInvalidUTF8 as soon as what it has read is not UTF-8. It holds
// back at most the few bytes of a character split between two reads.
type utf8Body struct {
	io.ReadCloser
	partial []byte
}

func (b *utf8Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	chunk := p[:n]
	if len(b.partial) > 0 {
		chunk = append(b.partial, chunk...)
	}
	// Keep back an incomplete character at the end; it is checked with the next read.
	cut := len(chunk)
	for i := len(chunk) - 1; i >= 0 && i >= len(chunk)-(utf8.UTFMax-1); i-- {
		if utf8.RuneStart(chunk[i]) {
			if !utf8.FullRune(chunk[i:]) {
				cut = i
			}
			break
		}
	}
	if !utf8.Valid(chunk[:cut]) {
		return 0, errInvalidUTF8
	}
	b.partial = append(b.partial[:0], chunk[cut:]...)
	if errors.Is(err, io.EOF) && len(b.partial) > 0 {
		return 0, errInvalidUTF8
	}
	return n, err
}

// drainGrace is how long a body still arriving when the server starts shutting down may
// take at most.
const drainGrace = 5 * time.Second

// bodyDeadline gives reading the request body a deadline: BodyReadTimeout plus its length
// (or, when it is unknown, the route's limit) at MinUploadRate. A client that
// stalls mid-body cannot hold a connection, and a file descriptor, for ever. Once the
// server drains, a body still arriving gets drainGrace more at most, so that shutting
// down waits for no slow upload.
func (s *Server) bodyDeadline(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		if req.Body == nil || req.Body == http.NoBody || req.ContentLength == 0 {
			// Bodiless: the server already watches the connection, a deadline would end it.
			return next(c)
		}
		size := req.ContentLength
		if size < 0 {
			size = s.bodyLimitFor(c)
		}
		deadline := time.Now().Add(s.opts.BodyReadTimeout + time.Duration(size/s.opts.MinUploadRate)*time.Second)
		rc := http.NewResponseController(c.Response())
		if err := rc.SetReadDeadline(deadline); err != nil {
			return next(c) // a writer without deadlines: not a network connection
		}
		body := &trackedBody{ReadCloser: req.Body}
		req.Body = body
		stop := context.AfterFunc(s.draining, func() {
			if body.state.CompareAndSwap(bodyReading, bodyCut) {
				if last := time.Now().Add(drainGrace); last.Before(deadline) {
					_ = rc.SetReadDeadline(last)
				}
			}
		})
		defer stop()
		return next(c)
	}
}

// States of a trackedBody.
const (
	bodyReading int32 = iota
	bodyDone          // read to its end (or failed): the server now watches the connection
	bodyCut           // the server is draining and shortened the deadline
)

// trackedBody records when a body has been read to its end: from then on the connection
// belongs to the server's own watch for a closed connection, and a shortened deadline
// would cancel the request instead of ending an upload.
type trackedBody struct {
	io.ReadCloser
	state atomic.Int32
}

func (b *trackedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.state.CompareAndSwap(bodyReading, bodyDone)
	}
	return n, err
}

// countingBody counts the bytes read from a request body.
type countingBody struct {
	io.ReadCloser
	n int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	return n, err
}

// bufferedBody is a request body read through a buffer.
type bufferedBody struct {
	*bufio.Reader
	io.Closer
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
// raw path are rewritten, so an encoded slash (%2F) inside a segment survives; when the
// path has an encoded form, the decoded path is derived from it, so that the router
// (which matches the raw path) and the request validator (which matches the decoded one)
// always see the same path: "%2F%2Fx" must stay one segment for both.
func normalizePath(version string) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			sent := sentRequest{path: req.URL.EscapedPath(), version: req.Header.Get("X-Ode-Version")}
			if sent.version == "" {
				sent.version = req.Header.Get("X-Api-Version") // the 2025 synk CLI
			}
			if len(sent.version) > maxLoggedVersion {
				sent.version = sent.version[:maxLoggedVersion]
			}
			req = req.WithContext(context.WithValue(req.Context(), ctxKeySent, sent))
			c.SetRequest(req)
			if req.URL.RawPath == "" {
				req.URL.Path = cleanSlashes(req.URL.Path)
			} else {
				req.URL.RawPath = cleanSlashes(req.URL.RawPath)
				if p, err := url.PathUnescape(req.URL.RawPath); err == nil {
					req.URL.Path = p
				}
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
			if sent == "" && versionOptional[req.URL.Path] {
				return next(c)
			}
			var msg string
			switch major, ok := parseMajor(sent); {
			case !serverOK:
				msg = "The server's version is not configured, so client versions cannot be checked."
			case strings.TrimSpace(sent) == "":
				msg = "The x-ode-version header is missing: send the app's semantic version, such as 1.0.0."
			case !ok || !utf8.ValidString(sent) || strings.IndexByte(sent, 0) >= 0:
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

// versionOptional are the /api paths that may be called without x-ode-version: the forms
// list, which the product documentation's quick start calls with a bearer token alone.
var versionOptional = map[string]bool{"/api/v1/data/forms": true}

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
