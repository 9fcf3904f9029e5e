package portal

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

// clientID is the x-ode-client-id of the portal's calls: the devices page shows the
// portal as a client of its users, like any other.
const clientID = "web-portal"

// maxAnswerBytes bounds an API answer the portal reads into memory to render (downloads
// are streamed instead).
const maxAnswerBytes = 64 << 20

// apiRequest is one call of a contract operation.
type apiRequest struct {
	Method string
	// Path is the operation's path with its parameters already escaped (url.PathEscape).
	Path  string
	Query url.Values
	// JSON, when set, is sent as the JSON body; else Body with ContentType.
	JSON        any
	Body        io.Reader
	ContentType string
}

// apiError is an answer of the API other than success: its status and problem document.
type apiError struct {
	Status     int
	Detail     string
	Code       string
	Errors     []api.ProblemFieldError
	RetryAfter string
}

func (e *apiError) Error() string { return fmt.Sprintf("API answered %d: %s", e.Status, e.Detail) }

// Message is the text a person sees for this answer.
func (e *apiError) Message() string {
	switch e.Status {
	case http.StatusForbidden:
		return "Your role does not allow this: " + e.Detail
	}
	return e.Detail
}

func (p *Portal) newRequest(c echo.Context, s *session, req apiRequest) (*http.Request, error) {
	body, contentType := req.Body, req.ContentType
	if req.JSON != nil {
		b, err := json.Marshal(req.JSON)
		if err != nil {
			return nil, fmt.Errorf("error encoding API request: %w", err)
		}
		body, contentType = bytes.NewReader(b), "application/json"
	}
	target := req.Path
	if len(req.Query) > 0 {
		target += "?" + req.Query.Encode()
	}
	outer := c.Request()
	r, err := http.NewRequestWithContext(outer.Context(), req.Method, target, body)
	if err != nil {
		return nil, fmt.Errorf("error building API request: %w", err)
	}
	if r.Body == nil {
		r.Body = http.NoBody // what the server hands handlers for a request without a body
	}
	// The API sees the browser's address (login throttling is per address) through
	// whatever the server trusts to tell it.
	r.RemoteAddr = outer.RemoteAddr
	for _, h := range []string{"X-Forwarded-For", "X-Real-Ip", "Forwarded", "User-Agent"} {
		if v := outer.Header.Values(h); len(v) > 0 {
			r.Header[h] = v
		}
	}
	r.Header.Set(echo.HeaderXRequestID, c.Response().Header().Get(echo.HeaderXRequestID))
	r.Header.Set("X-Ode-Version", p.version)
	r.Header.Set("X-Ode-Client-Id", clientID)
	r.Header.Set("Accept", "application/json")
	if contentType != "" {
		r.Header.Set("Content-Type", contentType)
	}
	if s != nil {
		token, err := p.callToken(s)
		if err != nil {
			return nil, err
		}
		r.Header.Set("Authorization", "Bearer "+token)
	}
	return r, nil
}

// call runs one operation in process and decodes a successful JSON answer into out (when
// not nil). Any other answer is an *apiError. s is nil for the anonymous login.
func (p *Portal) call(c echo.Context, s *session, req apiRequest, out any) error {
	r, err := p.newRequest(c, s, req)
	if err != nil {
		return err
	}
	w := &bufferedAnswer{header: http.Header{}}
	p.api.ServeHTTP(w, r)
	if w.overflow {
		return fmt.Errorf("error reading API answer of %s %s: larger than %d bytes", req.Method, req.Path, maxAnswerBytes)
	}
	status := w.statusCode()
	if status < 200 || status > 299 {
		return answerError(status, w.header, w.body.Bytes())
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(w.body.Bytes(), out); err != nil {
		return fmt.Errorf("error decoding API answer of %s %s: %w", req.Method, req.Path, err)
	}
	return nil
}

// stream runs one operation in process and streams a successful answer (a download)
// straight to the browser with the headers that describe it, which rewrite (when not nil)
// may change. Any other answer is an *apiError and nothing has been sent.
func (p *Portal) stream(c echo.Context, s *session, req apiRequest, rewrite func(http.Header)) error {
	r, err := p.newRequest(c, s, req)
	if err != nil {
		return err
	}
	w := &passthrough{out: c.Response(), header: http.Header{}, rewrite: rewrite}
	p.api.ServeHTTP(w, r)
	if w.passing {
		return nil
	}
	return answerError(w.statusCode(), w.header, w.failure.Bytes())
}

func answerError(status int, h http.Header, body []byte) *apiError {
	e := &apiError{Status: status, Detail: http.StatusText(status), RetryAfter: h.Get("Retry-After")}
	var prob api.ProblemDetail
	if json.Unmarshal(body, &prob) == nil && prob.Detail != "" {
		e.Detail = prob.Detail
		if prob.Code != nil {
			e.Code = *prob.Code
		}
		if prob.Errors != nil {
			e.Errors = *prob.Errors
		}
	}
	return e
}

// bufferedAnswer collects an in-process answer, up to maxAnswerBytes.
type bufferedAnswer struct {
	header   http.Header
	status   int
	body     bytes.Buffer
	overflow bool
}

func (w *bufferedAnswer) Header() http.Header { return w.header }

func (w *bufferedAnswer) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *bufferedAnswer) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.body.Len()+len(b) > maxAnswerBytes {
		w.overflow = true
		return 0, errors.New("answer too large for the portal to render")
	}
	return w.body.Write(b)
}

// Flush is a no-op: Echo's response insists on a flushable writer.
func (w *bufferedAnswer) Flush() {}

func (w *bufferedAnswer) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// streamedHeaders are the headers of a download the browser needs.
var streamedHeaders = []string{"Content-Type", "Content-Disposition", "Content-Length", "Etag", "Last-Modified", "Accept-Ranges", "Content-Range"}

// passthrough forwards a successful in-process answer to the browser as it is written,
// and keeps a failed one (a small problem document) for the portal to render.
type passthrough struct {
	out     http.ResponseWriter
	header  http.Header
	status  int
	passing bool
	failure bytes.Buffer
	rewrite func(http.Header)
}

func (w *passthrough) Header() http.Header { return w.header }

func (w *passthrough) WriteHeader(status int) {
	if w.status != 0 {
		return
	}
	w.status = status
	if status < 200 || status > 299 {
		return
	}
	w.passing = true
	for _, h := range streamedHeaders {
		if v := w.header.Values(h); len(v) > 0 {
			w.out.Header()[h] = v
		}
	}
	w.out.Header().Set("Cache-Control", "no-store")
	if w.rewrite != nil {
		w.rewrite(w.out.Header())
	}
	w.out.WriteHeader(status)
}

func (w *passthrough) Write(b []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	if w.passing {
		return w.out.Write(b)
	}
	if w.failure.Len()+len(b) > 1<<20 {
		return 0, errors.New("error answer too large")
	}
	return w.failure.Write(b)
}

func (w *passthrough) Flush() {
	if w.passing {
		_ = http.NewResponseController(w.out).Flush()
	}
}

func (w *passthrough) statusCode() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// escape escapes one path segment of an operation's path.
func escape(segment string) string { return url.PathEscape(segment) }

// prefersHTML reports whether an Accept header ranks text/html above application/json,
// as a browser's does and an API client's (or a missing one) does not.
func prefersHTML(accept string) bool {
	return acceptQuality(accept, "text", "html") > acceptQuality(accept, "application", "json")
}

// acceptQuality is the q-value the most specific matching media range gives a type.
func acceptQuality(accept, typ, sub string) float64 {
	best, bestSpecificity := 0.0, -1
	for _, part := range strings.Split(accept, ",") {
		fields := strings.Split(part, ";")
		mt := strings.ToLower(strings.TrimSpace(fields[0]))
		t, s, ok := strings.Cut(mt, "/")
		if !ok {
			continue
		}
		specificity := -1
		switch {
		case t == typ && s == sub:
			specificity = 2
		case t == typ && s == "*":
			specificity = 1
		case t == "*" && s == "*":
			specificity = 0
		}
		if specificity < bestSpecificity || specificity < 0 {
			continue
		}
		q := 1.0
		for _, f := range fields[1:] {
			k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
			if strings.EqualFold(k, "q") {
				if _, err := fmt.Sscanf(v, "%g", &q); err != nil {
					q = 0
				}
			}
		}
		best, bestSpecificity = q, specificity
	}
	return best
}
