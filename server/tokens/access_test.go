package tokens_test

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/tokens"
)

var (
	testSecret = []byte("0123456789abcdef0123456789abcdef")
	testNow    = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

func newIssuer(t *testing.T) *tokens.Issuer {
	t.Helper()
	iss, err := tokens.NewIssuer(testSecret, time.Hour)
	require.NoError(t, err)
	return iss
}

// validClaims are the claims of a correct access token; tests delete or change
// one to build a token that must be refused.
func validClaims() map[string]any {
	return map[string]any{
		jwt.SubjectKey:    "9b1deb4d-3b7d-4bad-9bdd-2b0d7b3dcb6d",
		jwt.IssuerKey:     tokens.IssuerName,
		jwt.IssuedAtKey:   testNow.Unix(),
		jwt.ExpirationKey: testNow.Add(time.Hour).Unix(),
		jwt.JwtIDKey:      "test-jti",
		"username":        "alice",
		"role":            "read-write",
		"token_use":       "access",
	}
}

// signClaims signs arbitrary claims the way an attacker or a sibling service
// with the same secret could, bypassing IssueAccess's own checks.
func signClaims(t *testing.T, alg jwa.SignatureAlgorithm, key []byte, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range claims {
		require.NoError(t, tok.Set(k, v))
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(alg, key))
	require.NoError(t, err)
	return string(signed)
}

func requireInvalid(t *testing.T, iss *tokens.Issuer, token string, now time.Time) {
	t.Helper()
	claims, err := iss.VerifyAccess(token, now)
	require.Error(t, err)
	require.ErrorIs(t, err, tokens.ErrInvalidToken)
	require.Equal(t, tokens.Claims{}, claims)
}

func TestNewIssuer(t *testing.T) {
	t.Parallel()

	t.Run("ShortSecretRefused", func(t *testing.T) {
		t.Parallel()
		_, err := tokens.NewIssuer(testSecret[:31], time.Hour)
		require.ErrorContains(t, err, "at least 32 bytes")
	})

	t.Run("EmptySecretRefused", func(t *testing.T) {
		t.Parallel()
		_, err := tokens.NewIssuer(nil, time.Hour)
		require.ErrorContains(t, err, "at least 32 bytes")
	})

	t.Run("NonPositiveTTLRefused", func(t *testing.T) {
		t.Parallel()
		_, err := tokens.NewIssuer(testSecret, 0)
		require.Error(t, err)
		_, err = tokens.NewIssuer(testSecret, -time.Second)
		require.Error(t, err)
	})

	t.Run("SecretIsCopied", func(t *testing.T) {
		t.Parallel()
		secret := append([]byte(nil), testSecret...)
		iss, err := tokens.NewIssuer(secret, time.Hour)
		require.NoError(t, err)
		token, _, err := iss.IssueAccess("id", "alice", "admin", 0, testNow)
		require.NoError(t, err)

		secret[0] ^= 0xff
		_, err = iss.VerifyAccess(token, testNow)
		require.NoError(t, err)
	})
}

func TestIssueAccess(t *testing.T) {
	t.Parallel()

	t.Run("RoundTrip", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		now := testNow.Add(500 * time.Millisecond)

		token, expiresAt, err := iss.IssueAccess("user-1", "alice", "admin", 7, now)
		require.NoError(t, err)
		require.Equal(t, testNow.Add(time.Hour), expiresAt)

		claims, err := iss.VerifyAccess(token, now)
		require.NoError(t, err)
		require.Equal(t, tokens.Claims{
			UserID:     "user-1",
			Username:   "alice",
			Role:       "admin",
			Generation: 7,
			IssuedAt:   testNow,
			ExpiresAt:  expiresAt,
		}, claims)
	})

	t.Run("TokenWithoutGenerationIsGenerationZero", func(t *testing.T) {
		t.Parallel()
		// Tokens issued before generations existed carry none.
		claims, err := newIssuer(t).VerifyAccess(signClaims(t, jwa.HS256, testSecret, validClaims()), testNow)
		require.NoError(t, err)
		require.Zero(t, claims.Generation)
	})

	t.Run("CarriesIssuerUseAndUniqueJTI", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		first, _, err := iss.IssueAccess("user-1", "alice", "admin", 0, testNow)
		require.NoError(t, err)
		second, _, err := iss.IssueAccess("user-1", "alice", "admin", 0, testNow)
		require.NoError(t, err)
		require.NotEqual(t, first, second, "same-second tokens must differ by jti")

		header, payload := decodeParts(t, first)
		require.Equal(t, "HS256", header["alg"])
		require.Equal(t, tokens.IssuerName, payload["iss"])
		require.Equal(t, "access", payload["token_use"])
		require.NotEmpty(t, payload["jti"])
	})

	t.Run("WindowKeepsAnEarlierIssuedAt", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		signedIn := testNow.Add(-3 * time.Hour)
		token, err := iss.IssueAccessWindow("user-1", "alice", "admin", 3, signedIn, testNow.Add(time.Minute))
		require.NoError(t, err)
		claims, err := iss.VerifyAccess(token, testNow)
		require.NoError(t, err)
		require.Equal(t, signedIn, claims.IssuedAt)
		require.EqualValues(t, 3, claims.Generation)
		require.Equal(t, testNow.Add(time.Minute), claims.ExpiresAt)
		requireInvalid(t, iss, token, testNow.Add(time.Minute+tokens.ClockSkew+time.Second))
	})

	t.Run("EmptyIdentityRefused", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		_, _, err := iss.IssueAccess("", "alice", "admin", 0, testNow)
		require.Error(t, err)
		_, _, err = iss.IssueAccess("id", "", "admin", 0, testNow)
		require.Error(t, err)
		_, _, err = iss.IssueAccess("id", "alice", "", 0, testNow)
		require.Error(t, err)
	})
}

func TestVerifyAccess(t *testing.T) {
	t.Parallel()

	t.Run("Expired", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		token, expiresAt, err := iss.IssueAccess("user-1", "alice", "admin", 0, testNow)
		require.NoError(t, err)

		_, err = iss.VerifyAccess(token, expiresAt.Add(tokens.ClockSkew-time.Second))
		require.NoError(t, err, "within the allowed clock skew")
		requireInvalid(t, iss, token, expiresAt.Add(tokens.ClockSkew+time.Second))
	})

	t.Run("IssuedInTheFuture", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		token, _, err := iss.IssueAccess("user-1", "alice", "admin", 0, testNow.Add(10*time.Minute))
		require.NoError(t, err)
		requireInvalid(t, iss, token, testNow)
	})

	t.Run("WrongKey", func(t *testing.T) {
		t.Parallel()
		other, err := tokens.NewIssuer([]byte("another-secret-another-secret-xx"), time.Hour)
		require.NoError(t, err)
		token, _, err := other.IssueAccess("user-1", "alice", "admin", 0, testNow)
		require.NoError(t, err)
		requireInvalid(t, newIssuer(t), token, testNow)
	})

	t.Run("AlgNone", func(t *testing.T) {
		t.Parallel()
		enc := func(v any) string {
			b, err := json.Marshal(v)
			require.NoError(t, err)
			return base64.RawURLEncoding.EncodeToString(b)
		}
		body := enc(validClaims())
		iss := newIssuer(t)
		for _, alg := range []string{"none", "None", "NONE"} {
			header := enc(map[string]string{"alg": alg, "typ": "JWT"})
			requireInvalid(t, iss, header+"."+body+".", testNow)
		}
	})

	t.Run("HS512WithSameKey", func(t *testing.T) {
		t.Parallel()
		token := signClaims(t, jwa.HS512, testSecret, validClaims())
		requireInvalid(t, newIssuer(t), token, testNow)
	})

	t.Run("HS256ByHandIsAccepted", func(t *testing.T) {
		t.Parallel()
		// Guards the negative cases below: they fail because of the one claim
		// they change, not because signClaims builds bad tokens.
		token := signClaims(t, jwa.HS256, testSecret, validClaims())
		_, err := newIssuer(t).VerifyAccess(token, testNow)
		require.NoError(t, err)
	})

	claimCases := []struct {
		name   string
		mutate func(map[string]any)
	}{
		{"RefreshTokenUse", func(c map[string]any) { c["token_use"] = "refresh" }},
		{"MissingTokenUse", func(c map[string]any) { delete(c, "token_use") }},
		{"OtherIssuer", func(c map[string]any) { c[jwt.IssuerKey] = "someone-else" }},
		{"MissingIssuer", func(c map[string]any) { delete(c, jwt.IssuerKey) }},
		{"MissingExp", func(c map[string]any) { delete(c, jwt.ExpirationKey) }},
		{"MissingSubject", func(c map[string]any) { delete(c, jwt.SubjectKey) }},
		{"MissingUsername", func(c map[string]any) { delete(c, "username") }},
		{"EmptyRole", func(c map[string]any) { c["role"] = "" }},
		{"NonStringRole", func(c map[string]any) { c["role"] = 42 }},
		{"NegativeGeneration", func(c map[string]any) { c["gen"] = -1 }},
		{"FractionalGeneration", func(c map[string]any) { c["gen"] = 1.5 }},
		{"StringGeneration", func(c map[string]any) { c["gen"] = "1" }},
		{"NotYetValid", func(c map[string]any) { c[jwt.NotBeforeKey] = testNow.Add(time.Hour).Unix() }},
	}
	for _, tc := range claimCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			claims := validClaims()
			tc.mutate(claims)
			requireInvalid(t, newIssuer(t), signClaims(t, jwa.HS256, testSecret, claims), testNow)
		})
	}

	t.Run("Garbage", func(t *testing.T) {
		t.Parallel()
		iss := newIssuer(t)
		valid, _, err := iss.IssueAccess("user-1", "alice", "admin", 0, testNow)
		require.NoError(t, err)
		parts := strings.Split(valid, ".")

		for _, token := range []string{
			"",
			"garbage",
			"a.b.c",
			"..",
			"...",
			"Bearer " + valid,
			valid + ".",
			parts[0] + "." + parts[1],
			parts[0] + "." + parts[1] + ".",
			parts[0] + "." + parts[1] + "." + parts[2] + "x",
			"eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24." + parts[2],
			`{"payload":"e30","signatures":[]}`,
			strings.Repeat("a", 1<<20),
			"\x00\xff.\x00\xff.\x00\xff",
		} {
			requireInvalid(t, iss, token, testNow)
		}
	})
}

func FuzzVerifyAccess(f *testing.F) {
	iss, err := tokens.NewIssuer(testSecret, time.Hour)
	require.NoError(f, err)
	valid, _, err := iss.IssueAccess("user-1", "alice", "admin", 0, testNow)
	require.NoError(f, err)
	f.Add(valid)
	f.Add("a.b.c")
	f.Add("")

	f.Fuzz(func(t *testing.T, token string) {
		claims, err := iss.VerifyAccess(token, testNow)
		if err != nil {
			require.True(t, errors.Is(err, tokens.ErrInvalidToken))
			return
		}
		require.NotEmpty(t, claims.UserID)
	})
}

func decodeParts(t *testing.T, token string) (header, payload map[string]any) {
	t.Helper()
	parts := strings.Split(token, ".")
	require.Len(t, parts, 3)
	for i, dst := range []*map[string]any{&header, &payload} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(raw, dst))
	}
	return header, payload
}
