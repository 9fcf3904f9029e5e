package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
)

// RefreshTokenPrefix starts every refresh token. It lets a human, a log
// scrubber or a secret scanner recognise one, and lets the server tell a
// refresh token from an upstream-style JWT at a glance.
const RefreshTokenPrefix = "rt_"

// refreshTokenBytes is the entropy of a refresh token: 256 bits cannot be
// guessed, which is why a fast unsalted hash is enough to store it.
const refreshTokenBytes = 32

// NewRefreshToken returns a fresh refresh token to hand to the client and the
// hash to store in its place. The server never keeps the plain token, so a
// leaked database does not yield usable refresh tokens.
func NewRefreshToken() (plain string, hash []byte, err error) {
	var b [refreshTokenBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, fmt.Errorf("error generating refresh token: %w", err)
	}
	plain = RefreshTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
	return plain, HashRefreshToken(plain), nil
}

// HashRefreshToken returns the SHA-256 digest under which a refresh token is
// stored and looked up. A slow password hash is unnecessary because the token
// is 256 random bits, and a deterministic hash allows lookup by equality.
func HashRefreshToken(plain string) []byte {
	sum := sha256.Sum256([]byte(plain))
	return sum[:]
}
