package server_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/authlimit"
	"github.com/opendataensemble/synkronus/server/passwords"
	"github.com/opendataensemble/synkronus/server/servertest"
	"github.com/opendataensemble/synkronus/server/tokens"
)

func login(t *testing.T, env *servertest.Env, username, password string) *servertest.Response {
	t.Helper()
	return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: map[string]string{"username": username, "password": password}})
}

// loginPair logs in and returns the whole token pair.
func loginPair(t *testing.T, env *servertest.Env, username, password string) api.AuthResponse {
	t.Helper()
	res := login(t, env, username, password)
	require.Equal(t, http.StatusOK, res.Status, "login as %s: %s", username, res.Body)
	var pair api.AuthResponse
	res.JSON(t, &pair)
	return pair
}

func refresh(t *testing.T, env *servertest.Env, refreshToken string) *servertest.Response {
	t.Helper()
	return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/refresh", Body: map[string]string{"refreshToken": refreshToken}})
}

// callVersion calls an operation every role may use, to see whether a token is accepted.
func callVersion(t *testing.T, env *servertest.Env, token string) *servertest.Response {
	t.Helper()
	return env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/version", Token: token})
}

func requireTokenRefused(t *testing.T, res *servertest.Response) {
	t.Helper()
	requireProblem(t, res, http.StatusUnauthorized, "unauthorized")
	require.True(t, strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer"), "WWW-Authenticate: %q", res.Header.Get("WWW-Authenticate"))
}

func jwtClaims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3, "a compact JWT")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	var claims map[string]any
	require.NoError(t, json.Unmarshal(payload, &claims))
	return claims
}

func userID(t *testing.T, env *servertest.Env, username string) uuid.UUID {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: env.AdminToken()})
	require.Equal(t, http.StatusOK, res.Status)
	var users []api.UserListItem
	res.JSON(t, &users)
	for _, u := range users {
		if u.Username == username {
			return u.Id
		}
	}
	t.Fatalf("no user %s", username)
	return uuid.Nil
}

func TestLoginIssuesAccessToken(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	before := time.Now()
	pair := loginPair(t, env, "admin", servertest.AdminPassword)
	after := time.Now()

	require.NotEmpty(t, pair.RefreshToken)
	require.NotEqual(t, pair.Token, pair.RefreshToken)
	claims := jwtClaims(t, pair.Token)
	require.Equal(t, userID(t, env, "admin").String(), claims["sub"])
	require.Equal(t, "admin", claims["username"])
	require.Equal(t, "admin", claims["role"])
	require.Equal(t, "synkronus", claims["iss"])
	require.Equal(t, "access", claims["token_use"])
	iat, exp := claims["iat"].(float64), claims["exp"].(float64)
	require.InDelta(t, float64(before.Unix()), iat, 1)
	require.Equal(t, int64(exp), pair.ExpiresAt, "expiresAt is the token's exp in Unix seconds")
	require.GreaterOrEqual(t, pair.ExpiresAt, before.Add(24*time.Hour).Unix()-1)
	require.LessOrEqual(t, pair.ExpiresAt, after.Add(24*time.Hour).Unix()+1)

	require.Equal(t, http.StatusOK, callVersion(t, env, pair.Token).Status)
}

func TestLoginRequiresUsernameAndPassword(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	for _, body := range []map[string]string{
		{"username": "", "password": servertest.AdminPassword},
		{"username": "admin", "password": ""},
	} {
		requireProblem(t, login(t, env, body["username"], body["password"]), http.StatusBadRequest, "validation_failed")
	}
}

func TestLoginRefusesBadCredentialsAlike(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	wrongPassword := login(t, env, "admin", "not-the-password")
	requireProblem(t, wrongPassword, http.StatusUnauthorized, "unauthorized")
	unknownUser := login(t, env, "nobody", "not-the-password")
	requireProblem(t, unknownUser, http.StatusUnauthorized, "unauthorized")
	require.JSONEq(t, string(wrongPassword.Body), string(unknownUser.Body), "the answer must not reveal which usernames exist")
}

func TestLoginRefusesMalformedJSON(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	for _, body := range []string{`{"username": "admin", "password": `, `[]`, `"admin"`} {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: body})
		requireProblem(t, res, http.StatusBadRequest, "validation_failed")
	}
}

// lengthless hides a body's length, so that it is sent chunked.
type lengthless struct{ io.Reader }

func TestLoginRefusesBodyOverLimit(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) { o.MaxJSONBytes = 1024 })
	big := map[string]string{"username": "admin", "password": strings.Repeat("p", 2000)}
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: big})
	requireProblem(t, res, http.StatusRequestEntityTooLarge, "request_too_large")

	// Without a Content-Length the limit applies while reading.
	b, err := json.Marshal(big)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, env.HTTP.URL+"/api/auth/login", lengthless{strings.NewReader(string(b))})
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Ode-Version", servertest.Version)
	raw, err := env.HTTP.Client().Do(req)
	require.NoError(t, err)
	defer raw.Body.Close()
	body, err := io.ReadAll(raw.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestEntityTooLarge, raw.StatusCode, "body: %s", body)
	requireProblemBody(t, raw.Header, body, http.StatusRequestEntityTooLarge, "request_too_large")

	// A body within the limit still works.
	require.Equal(t, http.StatusOK, login(t, env, "admin", servertest.AdminPassword).Status)
}

func TestLoginThrottlesRepeatedFailures(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) {
		o.LoginLimits = &authlimit.Config{PerAddrAccount: authlimit.Window{Failures: 3, Period: time.Hour}}
	})
	env.CreateUser("other", "read-only")
	for range 3 {
		requireProblem(t, login(t, env, "admin", "guess"), http.StatusUnauthorized, "unauthorized")
	}
	// Even the right password is refused now, without being checked.
	res := login(t, env, "admin", servertest.AdminPassword)
	requireProblem(t, res, http.StatusTooManyRequests, "rate_limited")
	retry, err := strconv.Atoi(res.Header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After: %q", res.Header.Get("Retry-After"))
	require.Positive(t, retry)
	require.LessOrEqual(t, retry, 3600)

	// The limit is per account: another account from the same address is not held back.
	require.Equal(t, http.StatusOK, login(t, env, "other", "pw-other").Status)
}

func TestLoginSuccessClearsFailures(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) {
		o.LoginLimits = &authlimit.Config{PerAddrAccount: authlimit.Window{Failures: 2, Period: time.Hour}}
	})
	requireProblem(t, login(t, env, "admin", "guess"), http.StatusUnauthorized, "unauthorized")
	require.Equal(t, http.StatusOK, login(t, env, "admin", servertest.AdminPassword).Status)
	requireProblem(t, login(t, env, "admin", "guess"), http.StatusUnauthorized, "unauthorized")
	require.Equal(t, http.StatusOK, login(t, env, "admin", servertest.AdminPassword).Status, "a success resets the count")
}

func TestRefreshThrottlesRepeatedFailures(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) {
		o.LoginLimits = &authlimit.Config{PerAddr: authlimit.Window{Failures: 2, Period: time.Hour}}
	})
	pair := loginPair(t, env, "admin", servertest.AdminPassword)
	for range 2 {
		requireProblem(t, refresh(t, env, "rt_not-a-token"), http.StatusUnauthorized, "unauthorized")
	}
	// Even a valid token is refused now, with a time to wait.
	res := refresh(t, env, pair.RefreshToken)
	requireProblem(t, res, http.StatusTooManyRequests, "rate_limited")
	require.NotEmpty(t, res.Header.Get("Retry-After"))
}

func TestRefreshRotatesTokens(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	first := loginPair(t, env, "admin", servertest.AdminPassword)

	res := refresh(t, env, first.RefreshToken)
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	require.Equal(t, "no-store", res.Header.Get("Cache-Control"), "tokens must not be cached")
	var second api.AuthResponse
	res.JSON(t, &second)
	require.NotEqual(t, first.RefreshToken, second.RefreshToken)
	require.NotEmpty(t, second.Token)
	require.Equal(t, "admin", jwtClaims(t, second.Token)["username"])
	require.Equal(t, http.StatusOK, callVersion(t, env, second.Token).Status)

	res = refresh(t, env, second.RefreshToken)
	require.Equal(t, http.StatusOK, res.Status, "the new refresh token works: %s", res.Body)
	var third api.AuthResponse
	res.JSON(t, &third)
	require.Equal(t, http.StatusOK, refresh(t, env, third.RefreshToken).Status)

	// The client moved on twice: second is a replay now, grace period or not.
	requireProblem(t, refresh(t, env, second.RefreshToken), http.StatusUnauthorized, "unauthorized")
}

func TestRefreshReplayRevokesTheFamily(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	stolen := loginPair(t, env, "admin", servertest.AdminPassword)
	otherSession := loginPair(t, env, "admin", servertest.AdminPassword)

	var rotated, next api.AuthResponse
	res := refresh(t, env, stolen.RefreshToken)
	require.Equal(t, http.StatusOK, res.Status)
	res.JSON(t, &rotated)
	res = refresh(t, env, rotated.RefreshToken)
	require.Equal(t, http.StatusOK, res.Status)
	res.JSON(t, &next)

	// The owner used the successor, so the old token presented again was copied.
	requireProblem(t, refresh(t, env, stolen.RefreshToken), http.StatusUnauthorized, "unauthorized")
	requireProblem(t, refresh(t, env, next.RefreshToken), http.StatusUnauthorized, "unauthorized")
	// Only that family: the user's other session keeps working.
	require.Equal(t, http.StatusOK, refresh(t, env, otherSession.RefreshToken).Status)
}

func TestRefreshReplayAfterGraceRevokesTheFamily(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) { o.RefreshGrace = time.Nanosecond })
	stolen := loginPair(t, env, "admin", servertest.AdminPassword)
	var rotated api.AuthResponse
	res := refresh(t, env, stolen.RefreshToken)
	require.Equal(t, http.StatusOK, res.Status)
	res.JSON(t, &rotated)

	requireProblem(t, refresh(t, env, stolen.RefreshToken), http.StatusUnauthorized, "unauthorized")
	requireProblem(t, refresh(t, env, rotated.RefreshToken), http.StatusUnauthorized, "unauthorized")
}

func TestRefreshRetryWithinGraceGetsANewPair(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	first := loginPair(t, env, "admin", servertest.AdminPassword)
	var lost, retried api.AuthResponse
	res := refresh(t, env, first.RefreshToken)
	require.Equal(t, http.StatusOK, res.Status)
	res.JSON(t, &lost) // the answer never reached the client

	res = refresh(t, env, first.RefreshToken)
	require.Equal(t, http.StatusOK, res.Status, "a retry within the grace period is not a replay: %s", res.Body)
	res.JSON(t, &retried)
	require.NotEqual(t, lost.RefreshToken, retried.RefreshToken)
	require.Equal(t, http.StatusOK, callVersion(t, env, retried.Token).Status)
	// The pair the client never saw is replaced, not added: one live refresh token.
	requireProblem(t, refresh(t, env, lost.RefreshToken), http.StatusUnauthorized, "unauthorized")
	res = refresh(t, env, retried.RefreshToken)
	require.Equal(t, http.StatusOK, res.Status, "the family lives on: %s", res.Body)
}

func TestRefreshDoesNotSwallowAFailedRevocation(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) { o.RefreshGrace = time.Nanosecond })
	stolen := loginPair(t, env, "admin", servertest.AdminPassword)
	require.Equal(t, http.StatusOK, refresh(t, env, stolen.RefreshToken).Status)
	// Make the family's revocation fail.
	_, err := env.Pool.Exec(t.Context(), `
		CREATE FUNCTION refuse_delete() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$;
		CREATE TRIGGER refuse_delete BEFORE DELETE ON refresh_tokens FOR EACH ROW EXECUTE FUNCTION refuse_delete();`)
	require.NoError(t, err)

	// Answering 401 would tell the client all is well while the copied family lives on.
	requireProblem(t, refresh(t, env, stolen.RefreshToken), http.StatusInternalServerError, "internal_error")
}

func TestRefreshRefusesBadInput(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	requireProblem(t, refresh(t, env, ""), http.StatusBadRequest, "validation_failed")
	requireProblem(t, refresh(t, env, "not-a-refresh-token"), http.StatusUnauthorized, "unauthorized")
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/refresh", Body: `{"refreshToken":`})
	requireProblem(t, res, http.StatusBadRequest, "validation_failed")
	// An access token is not a refresh token.
	requireProblem(t, refresh(t, env, env.AdminToken()), http.StatusUnauthorized, "unauthorized")
}

func TestRefreshStopsWhenAccountChanges(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	changes := map[string]func(t *testing.T, username, token string){
		"deleted": func(t *testing.T, username, _ string) {
			res := env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/users/" + username, Token: admin})
			require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
		},
		"password changed": func(t *testing.T, username, token string) {
			res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/change-password", Token: token,
				Body: map[string]string{"currentPassword": "pw-" + username, "newPassword": "a-new-password"}})
			require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
		},
		"password reset": func(t *testing.T, username, _ string) {
			res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/reset-password", Token: admin,
				Body: map[string]string{"username": username, "newPassword": "a-new-password"}})
			require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
		},
		"role changed": func(t *testing.T, username, _ string) {
			res := env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/" + username, Token: admin,
				Body: map[string]string{"role": "read-only"}})
			require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
		},
	}
	i := 0
	for name, change := range changes {
		i++
		username := "user" + strconv.Itoa(i)
		t.Run(name, func(t *testing.T) {
			env.CreateUser(username, "read-write")
			pair := loginPair(t, env, username, "pw-"+username)
			change(t, username, pair.Token)
			requireProblem(t, refresh(t, env, pair.RefreshToken), http.StatusUnauthorized, "unauthorized")
		})
	}
}

func TestAccessTokenStopsWhenAccountChanges(t *testing.T) {
	t.Parallel()
	// A long cache proves that the process changing an account forgets it at once.
	env := servertest.New(t, func(o *server.Options) { o.AccountCacheTTL = time.Hour })
	admin := env.AdminToken()

	deleted := env.CreateUser("deleted", "read-write")
	require.Equal(t, http.StatusOK, callVersion(t, env, deleted).Status)
	res := env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/users/deleted", Token: admin})
	require.Equal(t, http.StatusOK, res.Status)
	requireTokenRefused(t, callVersion(t, env, deleted))

	demoted := env.CreateUser("demoted", "read-write")
	require.Equal(t, http.StatusOK, callVersion(t, env, demoted).Status)
	res = env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/demoted", Token: admin, Body: map[string]string{"role": "read-only"}})
	require.Equal(t, http.StatusOK, res.Status)
	requireTokenRefused(t, callVersion(t, env, demoted))
	// A new login carries the new role.
	require.Equal(t, "read-only", jwtClaims(t, env.Login("demoted", "pw-demoted"))["role"])

	promoted := env.CreateUser("promoted", "read-only")
	require.Equal(t, http.StatusOK, callVersion(t, env, promoted).Status)
	res = env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/promoted", Token: admin, Body: map[string]string{"role": "admin"}})
	require.Equal(t, http.StatusOK, res.Status)
	requireTokenRefused(t, callVersion(t, env, promoted))
}

func TestAccessTokenStopsOnOtherProcessAfterCacheTTL(t *testing.T) {
	t.Parallel()
	changing := servertest.New(t)
	other := servertest.NewOnPool(t, changing.Pool, func(o *server.Options) { o.AccountCacheTTL = time.Nanosecond })
	token := changing.CreateUser("roaming", "read-write")
	require.Equal(t, http.StatusOK, callVersion(t, other, token).Status, "a token issued by one process is accepted by another")

	res := changing.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/users/roaming", Token: changing.AdminToken()})
	require.Equal(t, http.StatusOK, res.Status)
	requireTokenRefused(t, callVersion(t, other, token))
}

func TestForeignTokenIsRefused(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	id := userID(t, env, "admin").String()
	otherKey := make([]byte, 32)
	_, _ = rand.Read(otherKey)
	issuer, err := tokens.NewIssuer(otherKey, time.Hour)
	require.NoError(t, err)
	forged, _, err := issuer.IssueAccess(id, "admin", "admin", 0, time.Now())
	require.NoError(t, err)
	requireTokenRefused(t, callVersion(t, env, forged))
}

func TestMissingOrMalformedTokenIsRefused(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	requireTokenRefused(t, callVersion(t, env, ""))
	requireTokenRefused(t, callVersion(t, env, "not.a.jwt"))
	for _, header := range []string{"Bearer ", "Basic YWRtaW46YWRtaW4=", env.AdminToken()} {
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/version", Header: map[string]string{"Authorization": header}})
		requireTokenRefused(t, res)
	}
}

// keyedServer runs a second server on env's database with a signing key the test knows,
// so that the test can mint tokens for it.
func keyedServer(t *testing.T, env *servertest.Env, key []byte) string {
	t.Helper()
	srv, err := server.New(server.Deps{Pool: env.Pool, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Hasher: passwords.NewHasher(4, 1), SigningKey: key}, server.Options{})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs.URL
}

func TestExpiredTokenIsRefused(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	url := keyedServer(t, env, key)
	issuer, err := tokens.NewIssuer(key, time.Hour)
	require.NoError(t, err)
	id := userID(t, env, "admin").String()

	get := func(token string) (*http.Response, []byte) {
		req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url+"/api/version", nil)
		require.NoError(t, err)
		req.Header.Set("X-Ode-Version", servertest.Version)
		req.Header.Set("Authorization", "Bearer "+token)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		return res, b
	}
	fresh, _, err := issuer.IssueAccess(id, "admin", "admin", 0, time.Now())
	require.NoError(t, err)
	res, body := get(fresh)
	require.Equal(t, http.StatusOK, res.StatusCode, "a current token from the same key works: %s", body)

	expired, _, err := issuer.IssueAccess(id, "admin", "admin", 0, time.Now().Add(-2*time.Hour))
	require.NoError(t, err)
	res, body = get(expired)
	require.Equal(t, http.StatusUnauthorized, res.StatusCode, "body: %s", body)
	require.True(t, strings.HasPrefix(res.Header.Get("WWW-Authenticate"), "Bearer"))
	requireProblemBody(t, res.Header, body, http.StatusUnauthorized, "unauthorized")
}

func TestRolesAreEnforced(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	reader := env.CreateUser("reader", "read-only")
	writer := env.CreateUser("writer", "read-write")
	push := func(token, transmission string) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: token,
			Body: map[string]any{"transmission_id": transmission, "client_id": "device-1", "records": []any{}}})
	}

	requireProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: reader}), http.StatusForbidden, "forbidden")
	requireProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: writer}), http.StatusForbidden, "forbidden")
	requireProblem(t, env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/create", Token: writer,
		Body: map[string]string{"username": "x", "password": "y", "role": "admin"}}), http.StatusForbidden, "forbidden")
	requireProblem(t, push(reader, "t-reader"), http.StatusForbidden, "forbidden")

	res := push(writer, "t-writer")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	// The contract lists only read-write on push; admin may still call every operation.
	res = push(env.AdminToken(), "t-admin")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
}

// loginFrom logs in as admin from the given client address (the test server trusts its
// own loopback address as a proxy).
func loginFrom(t *testing.T, env *servertest.Env, addr, password string) *servertest.Response {
	t.Helper()
	return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Header: map[string]string{"X-Forwarded-For": addr},
		Body: map[string]string{"username": "admin", "password": password}})
}

func TestLoginThrottlingDoesNotLockOutTheOwner(t *testing.T) {
	t.Parallel()
	_, loopback, _ := net.ParseCIDR("127.0.0.0/8")
	env := servertest.New(t, func(o *server.Options) { o.TrustedProxies = []*net.IPNet{loopback} })
	// 50 wrong passwords from 5 addresses.
	for i := range 5 {
		for range 10 {
			requireProblem(t, loginFrom(t, env, fmt.Sprintf("198.51.100.%d", i), "guess"), http.StatusUnauthorized, "unauthorized")
		}
	}
	// The guessers are held back, even with the right password.
	requireProblem(t, loginFrom(t, env, "198.51.100.0", servertest.AdminPassword), http.StatusTooManyRequests, "rate_limited")
	requireProblem(t, loginFrom(t, env, "198.51.100.4", servertest.AdminPassword), http.StatusTooManyRequests, "rate_limited")
	// The owner, from an address with no failures, gets in.
	require.Equal(t, http.StatusOK, loginFrom(t, env, "203.0.113.7", servertest.AdminPassword).Status)
}

// sameSecond runs f until it starts and ends within one wall-clock second, so that what f
// issues and changes carries the same whole-second timestamps.
func sameSecond(t *testing.T, f func()) {
	t.Helper()
	for range 20 {
		start := time.Now()
		f()
		if start.Unix() == time.Now().Unix() {
			return
		}
	}
	t.Fatal("could not run within one second")
}

func TestTokensIssuedInTheSecondOfAChangeStop(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	env.CreateUser("victim", "read-write")
	var stale string
	password := "pw-victim"

	sameSecond(t, func() {
		stale = env.Login("victim", password)
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/reset-password", Token: admin,
			Body: map[string]string{"username": "victim", "newPassword": "reset-" + password}})
		require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
		password = "reset-" + password
	})
	requireTokenRefused(t, callVersion(t, env, stale))
	require.Equal(t, http.StatusOK, callVersion(t, env, env.Login("victim", password)).Status, "a login after the reset works")

	// A role changed away and back within the second: the stale token's role claim
	// matches again, its generation does not.
	sameSecond(t, func() {
		stale = env.Login("victim", password)
		for _, role := range []string{"read-only", "read-write"} {
			res := env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/victim", Token: admin, Body: map[string]string{"role": role}})
			require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
		}
	})
	requireTokenRefused(t, callVersion(t, env, stale))
}
