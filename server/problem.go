package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"os"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/api"
)

// retryAfterSeconds is the Retry-After of a 503: long enough for a restarting database
// or a failover, short enough that a device syncing in the field tries again soon.
const retryAfterSeconds = 5

// Problem codes clients may react to.
const (
	codeBadRequest       = "bad_request"
	codeValidation       = "validation_failed"
	codeUnauthorized     = "unauthorized"
	codeForbidden        = "forbidden"
	codeNotFound         = "not_found"
	codeConflict         = "conflict"
	codeTooLarge         = "request_too_large"
	codeTimeout          = "request_timeout"
	codeRateLimited      = "rate_limited"
	codeInternal         = "internal_error"
	codeUnavailable      = "service_unavailable"
	codeResetRequired    = "repository_reset_required"
	codeNotImplemented   = "not_implemented"
	codeMethodNotAllowed = "method_not_allowed"
)

// problemError is an error that renders as a given problem. Handlers return it for outcomes
// the contract has no typed response for; the central error handler renders it.
type problemError struct {
	status  int
	code    string
	detail  string
	headers map[string]string
}

func (p *problemError) Error() string { return p.detail }

func newProblem(status int, code, detail string) *problemError {
	return &problemError{status: status, code: code, detail: detail}
}

// unavailable is a 503: something the server needs is busy or down for now.
func unavailable(detail string) *problemError {
	return &problemError{status: http.StatusServiceUnavailable, code: codeUnavailable, detail: detail,
		headers: map[string]string{"Retry-After": strconv.Itoa(retryAfterSeconds)}}
}

// problemBody builds the problem+json body: RFC 9457 members plus error, message and code,
// which real clients read.
func problemBody(status int, code, detail string) api.ProblemDetail {
	title := http.StatusText(status)
	if title == "" {
		title = "Error"
	}
	typ := "about:blank"
	if code != "" {
		typ = "urn:synkronus:problem:" + code
	}
	errText := strings.ToLower(title)
	p := api.ProblemDetail{Type: typ, Title: title, Status: status, Detail: detail, Error: &errText, Message: &detail}
	if code != "" {
		p.Code = &code
	}
	return p
}

// handleError is Echo's error handler: every error becomes a problem+json response.
// Unexpected errors are logged with the request id and never sent to the client.
func (s *Server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		s.log.WarnContext(c.Request().Context(), "error after response started", "error", err)
		return
	}
	p := s.toProblem(err, c)
	for k, v := range p.headers {
		c.Response().Header().Set(k, v)
	}
	body, _ := json.Marshal(problemBody(p.status, p.code, p.detail))
	c.Response().Header().Set(echo.HeaderContentType, "application/problem+json")
	c.Response().WriteHeader(p.status)
	if c.Request().Method != http.MethodHead {
		_, _ = c.Response().Write(body)
	}
}

func (s *Server) toProblem(err error, c echo.Context) *problemError {
	var p *problemError
	if errors.As(err, &p) {
		return p
	}
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return newProblem(http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("the request body exceeds the limit of %d bytes", tooLarge.Limit))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		// bodyDeadline's deadline passed: the client is too slow, or gone.
		return &problemError{status: http.StatusRequestTimeout, code: codeTimeout,
			detail: "the request body did not arrive in time", headers: map[string]string{"Connection": "close"}}
	}
	if errors.Is(err, errInvalidUTF8) {
		return newProblem(http.StatusBadRequest, codeValidation, errInvalidUTF8.Error())
	}
	if errors.Is(err, db.ErrUnavailable) {
		if he, ok := err.(*echo.HTTPError); ok && he.Internal != nil {
			err = he.Internal // from authentication
		}
		s.log.WarnContext(c.Request().Context(), "database unavailable", "error", err)
		return unavailable("the database is unavailable; try again in a few seconds")
	}
	var dataErr *db.DataError
	if errors.As(err, &dataErr) {
		// A data exception or program limit names the offending value; an integrity
		// constraint's message would name tables, so it is not passed on.
		detail := "the database cannot store a value of this request"
		if !strings.HasPrefix(dataErr.Code, "23") {
			detail += ": " + dataErr.Message
		}
		return newProblem(http.StatusBadRequest, codeValidation, detail)
	}
	if errors.Is(err, http.ErrNotMultipart) || errors.Is(err, http.ErrMissingBoundary) || errors.Is(err, multipart.ErrMessageTooLarge) {
		return newProblem(http.StatusBadRequest, codeBadRequest, "the request body must be multipart/form-data: "+err.Error())
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return s.httpErrorProblem(he, c)
	}
	if errors.Is(err, context.Canceled) && c.Request().Context().Err() != nil {
		// The client went away; nobody reads this answer.
		return newProblem(499, codeBadRequest, "the client closed the request")
	}
	s.log.ErrorContext(c.Request().Context(), "internal error", "error", err,
		"method", c.Request().Method, "path", c.Request().URL.Path)
	return newProblem(http.StatusInternalServerError, codeInternal, "an internal error occurred; it has been logged with request id "+requestID(c))
}

func (s *Server) httpErrorProblem(he *echo.HTTPError, c echo.Context) *problemError {
	msg := fmt.Sprint(he.Message)
	if he.Message == nil {
		msg = http.StatusText(he.Code)
	}
	switch he.Code {
	case http.StatusBadRequest:
		return newProblem(he.Code, codeValidation, msg)
	case http.StatusUnauthorized:
		return &problemError{status: he.Code, code: codeUnauthorized, detail: msg, headers: map[string]string{"WWW-Authenticate": `Bearer realm="synkronus"`}}
	case http.StatusForbidden:
		return newProblem(he.Code, codeForbidden, msg)
	case http.StatusNotFound:
		return newProblem(he.Code, codeNotFound, "no operation at "+c.Request().Method+" "+c.Request().URL.Path)
	case http.StatusMethodNotAllowed:
		// The validator refuses the method before Echo's own handler could set Allow,
		// which RFC 9110 requires; the router left the allowed methods on the context.
		p := newProblem(he.Code, codeMethodNotAllowed, "method "+c.Request().Method+" is not allowed here")
		if allow, ok := c.Get(echo.ContextKeyHeaderAllow).(string); ok && allow != "" {
			p.headers = map[string]string{"Allow": allow}
		}
		return p
	case http.StatusUnsupportedMediaType:
		// Echo's binder answers 415 where the validator does not look at the body (push);
		// the contract, like the validator elsewhere, declares 400 for a wrong content type.
		return newProblem(http.StatusBadRequest, codeValidation, "the request body must be application/json")
	case http.StatusRequestEntityTooLarge:
		return newProblem(he.Code, codeTooLarge, msg)
	case http.StatusInternalServerError:
		s.log.ErrorContext(c.Request().Context(), "internal error", "error", he.Internal, "message", msg)
		return newProblem(he.Code, codeInternal, "an internal error occurred; it has been logged with request id "+requestID(c))
	}
	if he.Code >= 500 {
		return newProblem(he.Code, codeInternal, msg)
	}
	return newProblem(he.Code, codeBadRequest, msg)
}

// Shared problem bodies, to embed in the operations' typed responses.

func badRequest(detail string) api.BadRequestApplicationProblemPlusJSONResponse {
	return api.BadRequestApplicationProblemPlusJSONResponse(problemBody(http.StatusBadRequest, codeValidation, detail))
}

func unauthorized(detail string) api.UnauthorizedApplicationProblemPlusJSONResponse {
	return api.UnauthorizedApplicationProblemPlusJSONResponse(problemBody(http.StatusUnauthorized, codeUnauthorized, detail))
}

func notFound(detail string) api.NotFoundApplicationProblemPlusJSONResponse {
	return api.NotFoundApplicationProblemPlusJSONResponse(problemBody(http.StatusNotFound, codeNotFound, detail))
}

func conflict(detail string) api.ConflictApplicationProblemPlusJSONResponse {
	return api.ConflictApplicationProblemPlusJSONResponse(problemBody(http.StatusConflict, codeConflict, detail))
}
