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

// noStore is the Cache-Control of answers carrying credentials.
const noStore = "no-store"

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
	wait, limited, err := s.limiter.Check(ctx, addr, body.Username, time.Now())
	if err != nil {
		return nil, err
	}
	if limited {
		return api.Login429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: tooManyAttempts(wait)}, nil
	}
	user, ok, err := s.checkPassword(ctx, body.Username, body.Password)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := s.limiter.Failure(ctx, addr, body.Username, time.Now()); err != nil {
			return nil, err
		}
		return api.Login401ApplicationProblemPlusJSONResponse{UnauthorizedApplicationProblemPlusJSONResponse: unauthorized(errInvalidCredentials)}, nil
	}
	if err := s.limiter.Success(ctx, addr, body.Username); err != nil {
		return nil, err
	}
	pair, err := s.issuePair(ctx, s.q, user, uuid.New())
	if err != nil {
		return nil, err
	}
	return api.Login200JSONResponse{Body: pair, Headers: api.Login200ResponseHeaders{CacheControl: noStore}}, nil
}

// checkPassword reports whether password is the named user's, at the same cost whether
// or not the user exists.
func (s *Server) checkPassword(ctx context.Context, username, password string) (dbgen.User, bool, error) {
	hashCtx, cancel := context.WithTimeout(ctx, hashWait)
	defer cancel()
	user, err := s.q.UserGetByName(ctx, username)
	ok := false
	switch {
	case errors.Is(err, db.ErrNotFound):
		err = s.hasher.VerifyUnknownUser(hashCtx, password) // same cost as a known user
	case err == nil:
		ok, err = s.hasher.Verify(hashCtx, user.PasswordHash, password)
	}
	if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		return dbgen.User{}, false, unavailable("the server is busy verifying other logins; try again shortly")
	}
	if err != nil {
		return dbgen.User{}, false, fmt.Errorf("error verifying credentials: %w", err)
	}
	return user, ok, nil
}

// tooManyAttempts is the 429 of every rate-limited operation.
func tooManyAttempts(wait time.Duration) api.TooManyRequestsApplicationProblemPlusJSONResponse {
	secs := int(wait.Round(time.Second) / time.Second)
	body := problemBody(http.StatusTooManyRequests, codeRateLimited, fmt.Sprintf("too many failed attempts; try again in %d seconds", secs))
	return api.TooManyRequestsApplicationProblemPlusJSONResponse{Body: body, Headers: api.TooManyRequestsResponseHeaders{RetryAfter: secs}}
}

// Why a refresh token is refused.
var (
	// errRefreshInvalid is a token that is unknown, expired, spent, or of an ended token
	// generation.
	errRefreshInvalid = errors.New("invalid refresh token")
	// errRefreshReplayed is a spent token presented again after its successor was used or
	// after the grace period: it was copied, and its family is revoked.
	errRefreshReplayed = errors.New("refresh token replayed")
)

// rotation is the outcome of presenting a refresh token: a new pair, or why the token
// is refused (the transaction commits either way, so that a replay's revocation holds).
type rotation struct {
	pair    api.AuthResponse
	refused error
}

// RefreshToken rotates a refresh token: the one presented is spent and a new pair issued
// in its family. A spent token presented again means it was copied, so its whole family
// is revoked, unless it is the retry of a refresh whose answer was lost: spent within
// the grace period, and its successor never used. That retry gets a new pair in place of
// the lost one.
func (s *Server) RefreshToken(ctx context.Context, req api.RefreshTokenRequestObject) (api.RefreshTokenResponseObject, error) {
	plain := req.Body.RefreshToken
	if plain == "" || len(plain) > maxRefreshTokenBytes {
		return api.RefreshToken400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("refreshToken is required")}, nil
	}
	addr := clientAddr(ctx)
	wait, limited, err := s.refreshLimiter.Check(ctx, addr, "", time.Now())
	if err != nil {
		return nil, err
	}
	if limited {
		return api.RefreshToken429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: tooManyAttempts(wait)}, nil
	}
	rot, err := db.InTxValue(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) (rotation, error) {
		return s.rotate(ctx, s.q.WithTx(tx), tokens.HashRefreshToken(plain))
	})
	if err != nil {
		return nil, err
	}
	if rot.refused != nil {
		if errors.Is(rot.refused, errRefreshReplayed) {
			s.log.WarnContext(ctx, "a spent refresh token was presented again; its token family is revoked", "client", addr)
		}
		if err := s.refreshLimiter.Failure(ctx, addr, "", time.Now()); err != nil {
			return nil, err
		}
		return api.RefreshToken401ApplicationProblemPlusJSONResponse{UnauthorizedApplicationProblemPlusJSONResponse: unauthorized("the refresh token is invalid, expired or already used: log in again")}, nil
	}
	return api.RefreshToken200JSONResponse{Body: rot.pair, Headers: api.RefreshToken200ResponseHeaders{CacheControl: noStore}}, nil
}

// rotate spends the refresh token with the given hash and issues its successor.
func (s *Server) rotate(ctx context.Context, q *dbgen.Queries, hash []byte) (rotation, error) {
	tok, err := q.RefreshTokenUse(ctx, hash)
	if errors.Is(err, db.ErrNotFound) {
		var refused error
		if tok, refused, err = s.reuse(ctx, q, hash); refused != nil {
			return rotation{refused: refused}, err
		}
	}
	if err != nil {
		return rotation{}, err
	}
	user, err := q.UserGetByID(ctx, tok.UserID)
	if errors.Is(err, db.ErrNotFound) {
		return rotation{refused: errRefreshInvalid}, nil
	}
	if err != nil {
		return rotation{}, fmt.Errorf("error loading the token's account: %w", err)
	}
	if user.TokenGeneration != tok.UserGeneration {
		return rotation{refused: errRefreshInvalid}, nil // the password or role changed since
	}
	pair, err := s.issuePair(ctx, q, user, tok.FamilyID)
	return rotation{pair: pair}, err
}

// reuse decides about a token RefreshTokenUse did not accept: unknown or expired
// (refused), the retry of a refresh whose answer was lost (accepted, in place of the
// lost successor), or a replay (refused, its family revoked).
func (s *Server) reuse(ctx context.Context, q *dbgen.Queries, hash []byte) (tok dbgen.RefreshToken, refused, err error) {
	tok, err = q.RefreshTokenGetForUpdate(ctx, hash)
	if errors.Is(err, db.ErrNotFound) {
		return tok, errRefreshInvalid, nil
	}
	if err != nil {
		return tok, nil, fmt.Errorf("error reading refresh token: %w", err)
	}
	if tok.UsedAt == nil || !tok.ExpiresAt.After(time.Now()) {
		return tok, errRefreshInvalid, nil // expired
	}
	successorUsed, err := q.RefreshTokenFamilyUsedSince(ctx, dbgen.RefreshTokenFamilyUsedSinceParams{FamilyID: tok.FamilyID, UsedAt: tok.UsedAt})
	if err != nil {
		return tok, nil, fmt.Errorf("error reading refresh token family: %w", err)
	}
	if !successorUsed && time.Since(*tok.UsedAt) <= s.opts.RefreshGrace {
		// The successor never reached the client: replace it.
		if err := q.RefreshTokenDeleteUnused(ctx, tok.FamilyID); err != nil {
			return tok, nil, fmt.Errorf("error replacing the lost refresh token: %w", err)
		}
		return tok, nil, nil
	}
	if err := q.RefreshTokenRevokeFamily(ctx, tok.FamilyID); err != nil {
		return tok, nil, fmt.Errorf("error revoking a replayed refresh token's family: %w", err)
	}
	return tok, errRefreshReplayed, nil
}

// issuePair issues an access token and stores a new refresh token in the given family,
// both of the user's present token generation.
func (s *Server) issuePair(ctx context.Context, q *dbgen.Queries, user dbgen.User, family uuid.UUID) (api.AuthResponse, error) {
	now := time.Now()
	access, expiresAt, err := s.issuer.IssueAccess(user.ID.String(), user.Username, user.Role, user.TokenGeneration, now)
	if err != nil {
		return api.AuthResponse{}, fmt.Errorf("error issuing access token: %w", err)
	}
	refresh, hash, err := tokens.NewRefreshToken()
	if err != nil {
		return api.AuthResponse{}, fmt.Errorf("error issuing refresh token: %w", err)
	}
	err = q.RefreshTokenCreate(ctx, dbgen.RefreshTokenCreateParams{
		TokenHash: hash, UserID: user.ID, FamilyID: family, UserGeneration: user.TokenGeneration, ExpiresAt: now.Add(s.opts.RefreshTokenTTL),
	})
	if err != nil {
		return api.AuthResponse{}, fmt.Errorf("error storing refresh token: %w", err)
	}
	return api.AuthResponse{Token: access, RefreshToken: refresh, ExpiresAt: expiresAt.Unix()}, nil
}
