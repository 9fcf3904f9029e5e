package tokens_test

import (
	"crypto/sha256"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/tokens"
)

func TestNewRefreshToken(t *testing.T) {
	t.Parallel()

	t.Run("Shape", func(t *testing.T) {
		t.Parallel()
		plain, hash, err := tokens.NewRefreshToken()
		require.NoError(t, err)
		require.True(t, strings.HasPrefix(plain, tokens.RefreshTokenPrefix))

		raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(plain, tokens.RefreshTokenPrefix))
		require.NoError(t, err)
		require.Len(t, raw, 32)
		require.NotContains(t, plain, "=")
		require.Equal(t, tokens.HashRefreshToken(plain), hash)
	})

	t.Run("Unique", func(t *testing.T) {
		t.Parallel()
		seen := make(map[string]bool)
		for range 1000 {
			plain, hash, err := tokens.NewRefreshToken()
			require.NoError(t, err)
			require.False(t, seen[plain], "duplicate refresh token")
			require.False(t, seen[string(hash)], "duplicate refresh token hash")
			seen[plain] = true
			seen[string(hash)] = true
		}
	})

	t.Run("NotAJWT", func(t *testing.T) {
		t.Parallel()
		plain, _, err := tokens.NewRefreshToken()
		require.NoError(t, err)
		_, err = newIssuer(t).VerifyAccess(plain, testNow)
		require.ErrorIs(t, err, tokens.ErrInvalidToken)
	})
}

func TestHashRefreshToken(t *testing.T) {
	t.Parallel()

	want := sha256.Sum256([]byte("rt_example"))
	require.Equal(t, want[:], tokens.HashRefreshToken("rt_example"))
	require.Equal(t, tokens.HashRefreshToken("rt_example"), tokens.HashRefreshToken("rt_example"))
	require.NotEqual(t, tokens.HashRefreshToken("rt_example"), tokens.HashRefreshToken("rt_examplf"))
	require.Len(t, tokens.HashRefreshToken(""), sha256.Size)
}
