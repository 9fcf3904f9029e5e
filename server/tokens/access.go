package tokens

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"
)

// IssuerName is the `iss` claim of every token this server signs. Verification
// insists on it so that a JWT minted by another service sharing the secret is
// not accepted here.
const IssuerName = "synkronus"

// MinSecretBytes is the shortest HMAC secret NewIssuer accepts. RFC 7518 asks
// for a key at least as long as the hash output (32 bytes for HS256); anything
// shorter makes offline brute force of the secret, and thus token forgery,
// realistic.
const MinSecretBytes = 32

// ClockSkew is how far past `exp` (and before `iat`/`nbf`) a token is still
// accepted, to absorb clock drift between server processes.
const ClockSkew = 30 * time.Second

// maxTokenBytes bounds the input VerifyAccess will parse. Our tokens are a few
// hundred bytes; refusing anything much larger keeps a hostile Authorization
// header from costing parse time and memory.
const maxTokenBytes = 8 << 10

const (
	claimUsername   = "username"
	claimRole       = "role"
	claimTokenUse   = "token_use"
	claimGeneration = "gen"

	tokenUseAccess = "access"
)

// ErrInvalidToken is wrapped by every error VerifyAccess returns, so callers can
// answer 401 with errors.Is without caring which check failed.
var ErrInvalidToken = errors.New("invalid token")

// Claims is what a verified access token says about its bearer.
type Claims struct {
	// UserID is the user's stable identifier (the `sub` claim).
	UserID string
	// Username is the login name at the time the token was issued.
	Username string
	// Role is the user's role at the time the token was issued.
	Role string
	// Generation is the generation of the user's credentials the token was issued in
	// (the `gen` claim, 0 when absent): a password or role change starts a new one, and
	// the server refuses tokens of earlier generations.
	Generation int64
	// IssuedAt is the `iat` claim.
	IssuedAt time.Time
	// ExpiresAt is the `exp` claim.
	ExpiresAt time.Time
}

// Issuer signs and verifies access tokens with one HMAC secret.
type Issuer struct {
	secret    []byte
	accessTTL time.Duration
}

// NewIssuer returns an Issuer that signs with secret and gives access tokens a
// lifetime of accessTTL. It refuses a secret shorter than MinSecretBytes and a
// non-positive lifetime, because either would make every token it issues
// unsafe or useless.
func NewIssuer(secret []byte, accessTTL time.Duration) (*Issuer, error) {
	if len(secret) < MinSecretBytes {
		return nil, fmt.Errorf("token secret is %d bytes; at least %d bytes are required", len(secret), MinSecretBytes)
	}
	if accessTTL <= 0 {
		return nil, fmt.Errorf("access token lifetime must be positive, got %s", accessTTL)
	}
	// Copy so a caller reusing its buffer cannot change our key afterwards.
	return &Issuer{secret: append([]byte(nil), secret...), accessTTL: accessTTL}, nil
}

// IssueAccess signs an access token for the given user and credential generation,
// valid from now for the issuer's lifetime, and returns it with its expiry. JWT times
// have one-second resolution, so expiresAt is truncated to the second to match what
// VerifyAccess will later report.
func (i *Issuer) IssueAccess(userID, username, role string, generation int64, now time.Time) (token string, expiresAt time.Time, err error) {
	expiresAt = now.UTC().Add(i.accessTTL).Truncate(time.Second)
	token, err = i.IssueAccessWindow(userID, username, role, generation, now, expiresAt)
	return token, expiresAt, err
}

// IssueAccessWindow signs an access token with an explicit issued-at and expiry. The web
// portal uses it to mint a short-lived token per request for a session, in the credential
// generation the session signed in with, so that a password or role change since ends the
// session as it ends every other token.
func (i *Issuer) IssueAccessWindow(userID, username, role string, generation int64, issuedAt, expiresAt time.Time) (string, error) {
	if userID == "" || username == "" || role == "" {
		return "", errors.New("error issuing access token: user id, username and role are required")
	}
	jti, err := randomID()
	if err != nil {
		return "", fmt.Errorf("error issuing access token: %w", err)
	}
	tok, err := jwt.NewBuilder().
		Subject(userID).
		Issuer(IssuerName).
		IssuedAt(issuedAt.UTC().Truncate(time.Second)).
		Expiration(expiresAt.UTC().Truncate(time.Second)).
		JwtID(jti).
		Claim(claimUsername, username).
		Claim(claimRole, role).
		Claim(claimTokenUse, tokenUseAccess).
		Claim(claimGeneration, generation).
		Build()
	if err != nil {
		return "", fmt.Errorf("error building access token: %w", err)
	}
	signed, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256, i.secret))
	if err != nil {
		return "", fmt.Errorf("error signing access token: %w", err)
	}
	return string(signed), nil
}

// VerifyAccess checks an access token as of now and returns its claims. Only
// compact HS256 tokens signed with this issuer's secret, carrying an unexpired
// `exp`, `iss` = IssuerName, `token_use` = "access" and non-empty subject,
// username and role are accepted. Every failure wraps ErrInvalidToken.
func (i *Issuer) VerifyAccess(token string, now time.Time) (Claims, error) {
	if token == "" || len(token) > maxTokenBytes {
		return Claims{}, fmt.Errorf("%w: empty or oversized", ErrInvalidToken)
	}
	// jwx also parses the JWS JSON serialisation, which can carry several
	// signatures; we only ever issue the compact form, so accept only that.
	if strings.Count(token, ".") != 2 {
		return Claims{}, fmt.Errorf("%w: not a compact JWS", ErrInvalidToken)
	}

	// WithKey pins both the key and the algorithm: a header naming `none`,
	// HS512 or any other algorithm finds no matching key and fails.
	tok, err := jwt.ParseString(token,
		jwt.WithKey(jwa.HS256, i.secret),
		jwt.WithValidate(true),
		jwt.WithClock(jwt.ClockFunc(func() time.Time { return now })),
		jwt.WithAcceptableSkew(ClockSkew),
		jwt.WithRequiredClaim(jwt.ExpirationKey),
		jwt.WithIssuer(IssuerName),
		jwt.WithClaimValue(claimTokenUse, tokenUseAccess),
	)
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}

	gen, ok := generationClaim(tok)
	if !ok {
		return Claims{}, fmt.Errorf("%w: the generation is not a whole number", ErrInvalidToken)
	}
	claims := Claims{
		UserID:     tok.Subject(),
		Username:   stringClaim(tok, claimUsername),
		Role:       stringClaim(tok, claimRole),
		Generation: gen,
		IssuedAt:   tok.IssuedAt(),
		ExpiresAt:  tok.Expiration(),
	}
	if claims.UserID == "" || claims.Username == "" || claims.Role == "" {
		return Claims{}, fmt.Errorf("%w: subject, username and role are required", ErrInvalidToken)
	}
	return claims, nil
}

// generationClaim returns the `gen` claim: 0 when absent (tokens issued before
// generations existed), and not ok unless it is a non-negative whole number.
func generationClaim(tok jwt.Token) (int64, bool) {
	v, ok := tok.Get(claimGeneration)
	if !ok {
		return 0, true
	}
	f, ok := v.(float64) // how JSON numbers decode
	if !ok || f < 0 || f != math.Trunc(f) || f > 1<<53 {
		return 0, false
	}
	return int64(f), true
}

// stringClaim returns a private claim if it is a string and "" otherwise, so a
// token with a non-string username or role fails the emptiness check.
func stringClaim(tok jwt.Token, name string) string {
	v, ok := tok.Get(name)
	if !ok {
		return ""
	}
	s, _ := v.(string)
	return s
}

// randomID returns 128 random bits, base64url-encoded, for the `jti` claim; it
// makes every token unique even when two are issued in the same second.
func randomID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("error reading random bytes: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}
