package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/passwords"
	"github.com/opendataensemble/synkronus/server/tokens"
)

// Limits on credentials, checked before any hashing.
const (
	maxUsernameBytes     = 255
	maxRefreshTokenBytes = 1024
	// hashWait bounds how long a login waits for a hashing slot: under a login storm the
	// excess is refused quickly instead of piling up.
	hashWait = 10 * time.Second
)

const errInvalidCredentials = "invalid username or password"

// Login exchanges a username and password for an access and a refresh token.
func (s *Server) Login(ctx context.Context, req api.LoginRequestObject) (api.LoginResponseObject, error) {
	body := req.Body
	if body.Username == "" || body.Password == "" {
		return api.Login400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("username and password are required")}, nil
	}
	if len(body.Username) > maxUsernameBytes || len(body.Password) > passwords.MaxPasswordBytes {
		return api.Login400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("username or password is too long")}, nil
	}
	addr := clientAddr(ctx)
	if wait, limited := s.limiter.Check(addr, body.Username, time.Now()); limited {
		return tooManyAttempts(wait), nil
	}
	hashCtx, cancel := context.WithTimeout(ctx, hashWait)
	defer cancel()
	user, err := s.q.UserGetByName(ctx, body.Username)
	ok := false
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		err = s.hasher.VerifyUnknownUser(hashCtx, body.Password) // same cost as a known user
	case err == nil:
		ok, err = s.hasher.Verify(hashCtx, user.PasswordHash, body.Password)
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return nil, newProblem(http.StatusServiceUnavailable, codeUnavailable, "the server is busy verifying other logins; try again shortly")
	}
	if err != nil {
		return nil, fmt.Errorf("error verifying credentials: %w", err)
	}
	if !ok {
		s.limiter.Failure(addr, body.Username, time.Now())
		return api.Login401ApplicationProblemPlusJSONResponse{UnauthorizedApplicationProblemPlusJSONResponse: unauthorized(errInvalidCredentials)}, nil
	}
	s.limiter.Success(addr, body.Username)
	pair, err := s.issuePair(ctx, s.q, user, uuid.New())
	if err != nil {
		return nil, err
	}
	return api.Login200JSONResponse(pair), nil
}

func tooManyAttempts(wait time.Duration) api.Login429ApplicationProblemPlusJSONResponse {
	secs := int(wait.Round(time.Second) / time.Second)
	body := problemBody(http.StatusTooManyRequests, codeRateLimited, fmt.Sprintf("too many failed attempts; try again in %d seconds", secs))
	return api.Login429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: api.TooManyRequestsApplicationProblemPlusJSONResponse{
		Body: body, Headers: api.TooManyRequestsResponseHeaders{RetryAfter: secs},
	}}
}

// RefreshToken rotates a refresh token: the one presented is spent and a new pair issued.
// Presenting a spent token again means it was copied, so its whole family is revoked.
func (s *Server) RefreshToken(ctx context.Context, req api.RefreshTokenRequestObject) (api.RefreshTokenResponseObject, error) {
	plain := req.Body.RefreshToken
	if plain == "" || len(plain) > maxRefreshTokenBytes {
		return api.RefreshToken400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("refreshToken is required")}, nil
	}
	addr := clientAddr(ctx)
	if wait, limited := s.refreshLimiter.Check(addr, "", time.Now()); limited {
		return api.RefreshToken429ApplicationProblemPlusJSONResponse(tooManyAttempts(wait)), nil
	}
	invalid := api.RefreshToken401ApplicationProblemPlusJSONResponse{UnauthorizedApplicationProblemPlusJSONResponse: unauthorized("the refresh token is invalid, expired or already used: log in again")}
	hash := tokens.HashRefreshToken(plain)
	var pair api.AuthResponse
	replayed := false
	err := db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		used, err := q.RefreshTokenUse(ctx, hash)
		if errors.Is(err, pgx.ErrNoRows) {
			old, getErr := q.RefreshTokenGet(ctx, hash)
			if getErr == nil && old.UsedAt != nil {
				replayed = true
				return q.RefreshTokenRevokeFamily(ctx, old.FamilyID)
			}
			return db.ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("error using refresh token: %w", err)
		}
		user, err := q.UserGetByID(ctx, used.UserID)
		if err != nil {
			return db.Translate(err)
		}
		pair, err = s.issuePair(ctx, q, user, used.FamilyID)
		return err
	})
	switch {
	case replayed:
		s.log.WarnContext(ctx, "a spent refresh token was presented again; its token family is revoked", "client", addr)
		s.refreshLimiter.Failure(addr, "", time.Now())
		return invalid, nil
	case errors.Is(err, db.ErrNotFound):
		s.refreshLimiter.Failure(addr, "", time.Now())
		return invalid, nil
	case err != nil:
		return nil, err
	}
	return api.RefreshToken200JSONResponse(pair), nil
}

// issuePair issues an access token and stores a new refresh token in the given family.
func (s *Server) issuePair(ctx context.Context, q *dbgen.Queries, user dbgen.User, family uuid.UUID) (api.AuthResponse, error) {
	now := time.Now()
	access, expiresAt, err := s.issuer.IssueAccess(user.ID.String(), user.Username, user.Role, now)
	if err != nil {
		return api.AuthResponse{}, fmt.Errorf("error issuing access token: %w", err)
	}
	refresh, hash, err := tokens.NewRefreshToken()
	if err != nil {
		return api.AuthResponse{}, fmt.Errorf("error issuing refresh token: %w", err)
	}
	err = q.RefreshTokenCreate(ctx, dbgen.RefreshTokenCreateParams{
		TokenHash: hash, UserID: user.ID, FamilyID: family, ExpiresAt: now.Add(s.opts.RefreshTokenTTL),
	})
	if err != nil {
		return api.AuthResponse{}, fmt.Errorf("error storing refresh token: %w", err)
	}
	return api.AuthResponse{Token: access, RefreshToken: refresh, ExpiresAt: expiresAt.Unix()}, nil
}
