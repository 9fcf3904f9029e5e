package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	echomiddleware "github.com/oapi-codegen/echo-middleware"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
)

// principal is the authenticated caller of a request.
type principal struct {
	UserID   uuid.UUID
	Username string
	Role     api.Role
}

func principalFrom(ctx context.Context) (principal, bool) {
	p, ok := ctx.Value(ctxKeyPrincipal).(principal)
	return p, ok
}

// authenticate is the request validator's AuthenticationFunc. It receives the scopes
// (roles) of the operation's security requirement: a missing or bad token is 401, a role
// not among the scopes is 403, and admin may call everything. The token must still match
// its account: a deleted user, or a token generation ended by a password or role change,
// make it invalid at once. Every error is an *echo.HTTPError: the validator would turn
// any other error, with its text, into a 403.
func (s *Server) authenticate(ctx context.Context, in *openapi3filter.AuthenticationInput) error {
	ec, ok := ctx.Value(echomiddleware.EchoContextKey).(echo.Context)
	if !ok {
		return echo.NewHTTPError(http.StatusInternalServerError).SetInternal(errors.New("authentication without an Echo context"))
	}
	if in.SecuritySchemeName != "bearerAuth" {
		return echo.NewHTTPError(http.StatusInternalServerError).SetInternal(fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName))
	}
	header := in.RequestValidationInput.Request.Header.Get("Authorization")
	scheme, token, found := strings.Cut(header, " ")
	if !found || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return echo.NewHTTPError(http.StatusUnauthorized, "a bearer token is required: log in at /api/auth/login")
	}
	claims, err := s.issuer.VerifyAccess(strings.TrimSpace(token), time.Now())
	if err != nil {
		return echo.NewHTTPError(http.StatusUnauthorized, "the access token is invalid or expired")
	}
	id, err := uuid.Parse(claims.UserID)
	if err != nil {
		return echo.NewHTTPError(http.StatusUnauthorized, "the access token is invalid or expired")
	}
	acct, err := s.accounts.get(ec.Request().Context(), id)
	if errors.Is(err, db.ErrNotFound) {
		return echo.NewHTTPError(http.StatusUnauthorized, "the account of this token no longer exists")
	}
	if err != nil {
		// Rendered from its cause: 503 when the database is unavailable, else 500.
		return echo.NewHTTPError(http.StatusInternalServerError).SetInternal(fmt.Errorf("error loading the token's account: %w", err))
	}
	if acct.role != claims.Role || claims.Generation != acct.tokenGeneration {
		return echo.NewHTTPError(http.StatusUnauthorized, "the account changed since this token was issued: log in again")
	}
	role := api.Role(acct.role)
	if role != api.RoleAdmin && !slices.Contains(in.Scopes, string(role)) {
		return echo.NewHTTPError(http.StatusForbidden, fmt.Sprintf("the role %s may not call this operation (allowed: %s)", role, strings.Join(in.Scopes, ", ")))
	}
	p := principal{UserID: id, Username: acct.username, Role: role}
	ec.SetRequest(ec.Request().WithContext(context.WithValue(ec.Request().Context(), ctxKeyPrincipal, p)))
	return nil
}

// accountCache keeps what token checks need of each account for a few seconds, so that a
// request costs no database round trip while a deleted account or a changed role or
// password still takes effect within the TTL on every server process (and at once on this
// one, which forgets an account when it changes it).
type accountCache struct {
	q   *dbgen.Queries
	ttl time.Duration

	mu      sync.Mutex
	entries map[uuid.UUID]cachedAccount
}

type cachedAccount struct {
	username        string
	role            string
	tokenGeneration int64
	fetched         time.Time
}

func newAccountCache(q *dbgen.Queries, ttl time.Duration) *accountCache {
	return &accountCache{q: q, ttl: ttl, entries: make(map[uuid.UUID]cachedAccount)}
}

func (a *accountCache) get(ctx context.Context, id uuid.UUID) (cachedAccount, error) {
	a.mu.Lock()
	e, ok := a.entries[id]
	a.mu.Unlock()
	if ok && time.Since(e.fetched) < a.ttl {
		return e, nil
	}
	u, err := a.q.UserGetByID(ctx, id)
	if err != nil {
		a.forget(id)
		return cachedAccount{}, err
	}
	e = cachedAccount{username: u.Username, role: u.Role, tokenGeneration: u.TokenGeneration, fetched: time.Now()}
	a.mu.Lock()
	if len(a.entries) > 10000 {
		clear(a.entries)
	}
	a.entries[id] = e
	a.mu.Unlock()
	return e, nil
}

func (a *accountCache) forget(id uuid.UUID) {
	a.mu.Lock()
	delete(a.entries, id)
	a.mu.Unlock()
}
