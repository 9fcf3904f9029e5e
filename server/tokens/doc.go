// Package tokens issues and verifies the credentials a client presents after
// logging in: short-lived access tokens, which are HS256 JWTs checked without a
// database round trip, and refresh tokens, which are opaque random strings the
// server stores only as hashes so that they can be rotated and revoked.
package tokens
