package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/attachments"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// fakeEnv is an environment holding exactly the given variables.
func fakeEnv(vars map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := vars[name]
		return v, ok
	}
}

const secret32 = "0123456789abcdef0123456789abcdef"

func TestConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(fakeEnv(nil))
	require.NoError(t, err)
	require.Equal(t, defaultDatabaseURL, c.DatabaseURL)
	require.Equal(t, "", c.Host)
	require.Equal(t, 8080, c.Port)
	require.Nil(t, c.JWTSecret, "no secret: the server generates and stores one")
	require.Equal(t, "admin", c.AdminUsername)
	require.Equal(t, "", c.AdminPassword)
	require.Equal(t, "data", c.DataDir)
	require.Equal(t, slog.LevelInfo, c.LogLevel)
	require.Equal(t, 24*time.Hour, c.AccessTokenTTL)
	require.Equal(t, 30*24*time.Hour, c.RefreshTokenTTL)
	require.Equal(t, 24*time.Hour, c.ReceiptTTL)
	require.Equal(t, obsync.PolicyNewest, c.ConflictPolicy)
	require.Equal(t, int64(32<<20), c.MaxPushBytes)
	require.Equal(t, int64(1<<20), c.MaxJSONBytes)
	require.Equal(t, 5, c.MaxVersionsKept, "upstream's default")
	require.Equal(t, int64(128<<20), c.MaxBundleBytes)
	require.Equal(t, int64(512<<20), c.MaxBundleUncompressedBytes)
	require.Equal(t, 10000, c.MaxBundleFiles)
	require.Equal(t, int32(16), c.DBMaxConns)
	require.Equal(t, 10, c.BcryptCost)
	require.Equal(t, time.Hour, c.PortalIdleTimeout)
	require.Equal(t, 12*time.Hour, c.PortalMaxAge)
	require.Equal(t, "data", c.DataDir)
	require.True(t, strings.HasPrefix(c.BlobURL, "file:///") && strings.Contains(c.BlobURL, "/data/blobs?"),
		"files go to a directory under DATA_DIR: %s", c.BlobURL)
	require.Empty(t, c.TrustedProxies, "forwarding headers are not believed unless configured")
	require.Equal(t, 30*time.Second, c.BodyReadTimeout)
	require.Equal(t, int64(16<<10), c.MinUploadRate)
	require.Equal(t, 20*time.Second, c.ShutdownTimeout)
	require.Equal(t, int64(128<<20), c.Attachments.MaxUploadBytes)
	require.Equal(t, attachments.ImageOptions{Enabled: false, MaxWidth: 2048, MaxHeight: 2048, JPEGQuality: 85, MaxPixels: 40_000_000}, c.Attachments.Images)
}

func TestConfigReadsEveryVariable(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(fakeEnv(map[string]string{
		"DATABASE_URL": "postgres://u@db:5432/x", "HOST": "127.0.0.1", "PORT": " 9090 ", "JWT_SECRET": secret32,
		"ADMIN_USERNAME": "root", "ADMIN_PASSWORD": "pw", "DATA_DIR": "/var/lib/synkronus", "LOG_LEVEL": "debug",
		"LOG_FORMAT": "text", "PUBLIC_URL": "https://sync.example.org/", "ACCESS_TOKEN_TTL": "1h", "REFRESH_TOKEN_TTL": "48h",
		"PUSH_RECEIPT_TTL": "2h", "SYNC_CONFLICT_POLICY": "incoming", "MAX_PUSH_BYTES": "2048", "MAX_JSON_BYTES": "4096",
		"DB_MAX_CONNS": "4", "BCRYPT_COST": "12", "BLOB_URL": "s3://field-files?region=eu-west-1",
		"PORTAL_IDLE_TIMEOUT": "20m", "PORTAL_SESSION_MAX_AGE": "8h",
		"TRUSTED_PROXIES": "10.0.0.0/8, 192.0.2.7,2001:db8::/32", "MIN_UPLOAD_RATE": "65536", "SHUTDOWN_TIMEOUT": "5s", "BODY_READ_TIMEOUT": "1m",
		"MAX_ATTACHMENT_BYTES": "1048576", "IMAGE_PROCESSING": "true", "IMAGE_MAX_WIDTH": "1024", "IMAGE_MAX_HEIGHT": "0",
		"IMAGE_JPEG_QUALITY": "70", "IMAGE_MAX_PIXELS": "1000000",
		"MAX_VERSIONS_KEPT": "3", "MAX_BUNDLE_BYTES": "4096", "MAX_BUNDLE_UNCOMPRESSED_BYTES": "8192", "MAX_BUNDLE_FILES": "50",
	}))
	require.NoError(t, err)
	require.Equal(t, "postgres://u@db:5432/x", c.DatabaseURL)
	require.Equal(t, "127.0.0.1", c.Host)
	require.Equal(t, 9090, c.Port, "surrounding spaces are ignored")
	require.Equal(t, []byte(secret32), c.JWTSecret)
	require.Equal(t, "root", c.AdminUsername)
	require.Equal(t, "pw", c.AdminPassword)
	require.Equal(t, "/var/lib/synkronus", c.DataDir)
	require.Equal(t, "s3://field-files?region=eu-west-1", c.BlobURL)
	require.Equal(t, slog.LevelDebug, c.LogLevel)
	require.Equal(t, "text", c.LogFormat)
	require.Equal(t, "https://sync.example.org", c.PublicURL, "a trailing slash is dropped")
	require.Equal(t, time.Hour, c.AccessTokenTTL)
	require.Equal(t, 48*time.Hour, c.RefreshTokenTTL)
	require.Equal(t, 2*time.Hour, c.ReceiptTTL)
	require.Equal(t, obsync.PolicyIncoming, c.ConflictPolicy)
	require.Equal(t, int64(2048), c.MaxPushBytes)
	require.Equal(t, int64(4096), c.MaxJSONBytes)
	require.Equal(t, 3, c.MaxVersionsKept)
	require.Equal(t, int64(4096), c.MaxBundleBytes)
	require.Equal(t, int64(8192), c.MaxBundleUncompressedBytes)
	require.Equal(t, 50, c.MaxBundleFiles)
	require.Equal(t, int32(4), c.DBMaxConns)
	require.Equal(t, 12, c.BcryptCost)
	require.Equal(t, 20*time.Minute, c.PortalIdleTimeout)
	require.Equal(t, 8*time.Hour, c.PortalMaxAge)
	var proxies []string
	for _, n := range c.TrustedProxies {
		proxies = append(proxies, n.String())
	}
	require.Equal(t, []string{"10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"}, proxies, "a bare address is a network of one")
	require.Equal(t, time.Minute, c.BodyReadTimeout)
	require.Equal(t, int64(65536), c.MinUploadRate)
	require.Equal(t, 5*time.Second, c.ShutdownTimeout)
	require.Equal(t, int64(1<<20), c.Attachments.MaxUploadBytes)
	require.Equal(t, attachments.ImageOptions{Enabled: true, MaxWidth: 1024, MaxHeight: 0, JPEGQuality: 70, MaxPixels: 1_000_000}, c.Attachments.Images)
}

func TestConfigAliasesOfOlderReleases(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(fakeEnv(map[string]string{"DB_CONNECTION": "postgres://old@db/synk", "SERVER_PORT": "8181",
		"SYNKRONUS_MAX_ATTACHMENT_UPLOAD_BYTES": "2048"}))
	require.NoError(t, err)
	require.Equal(t, "postgres://old@db/synk", c.DatabaseURL)
	require.Equal(t, 8181, c.Port)
	require.Equal(t, int64(2048), c.Attachments.MaxUploadBytes)
}

func TestConfigCurrentNamesWinOverAliases(t *testing.T) {
	t.Parallel()
	c, err := loadConfig(fakeEnv(map[string]string{
		"DATABASE_URL": "postgres://new@db/synk", "DB_CONNECTION": "postgres://old@db/synk",
		"PORT": "8080", "SERVER_PORT": "8181",
	}))
	require.NoError(t, err)
	require.Equal(t, "postgres://new@db/synk", c.DatabaseURL)
	require.Equal(t, 8080, c.Port)

	// A blank variable counts as unset, so the alias applies.
	c, err = loadConfig(fakeEnv(map[string]string{"DATABASE_URL": "  ", "DB_CONNECTION": "postgres://old@db/synk"}))
	require.NoError(t, err)
	require.Equal(t, "postgres://old@db/synk", c.DatabaseURL)
}

func TestConfigRefusesShortJWTSecret(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(fakeEnv(map[string]string{"JWT_SECRET": secret32[:31]}))
	require.ErrorContains(t, err, "at least 32 bytes")

	c, err := loadConfig(fakeEnv(map[string]string{"JWT_SECRET": secret32}))
	require.NoError(t, err)
	require.Equal(t, []byte(secret32), c.JWTSecret)
}

func TestConfigReadsJWTSecretFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "jwt")
	require.NoError(t, os.WriteFile(path, []byte(secret32+"\n"), 0o600))
	c, err := loadConfig(fakeEnv(map[string]string{"JWT_SECRET_FILE": path, "JWT_SECRET": "ignored-when-a-file-is-named-0123456789"}))
	require.NoError(t, err)
	require.Equal(t, []byte(secret32), c.JWTSecret, "the file wins and its trailing newline is dropped")

	short := filepath.Join(t.TempDir(), "short")
	require.NoError(t, os.WriteFile(short, []byte("tiny"), 0o600))
	_, err = loadConfig(fakeEnv(map[string]string{"JWT_SECRET_FILE": short}))
	require.ErrorContains(t, err, "at least 32 bytes")

	_, err = loadConfig(fakeEnv(map[string]string{"JWT_SECRET_FILE": filepath.Join(t.TempDir(), "missing")}))
	require.ErrorContains(t, err, "JWT_SECRET_FILE")
}

func TestConfigRefusesBadValues(t *testing.T) {
	t.Parallel()
	cases := map[string]string{
		"PORT":                   "abc",
		"SERVER_PORT":            "70000",
		"LOG_LEVEL":              "loud",
		"LOG_FORMAT":             "xml",
		"SYNC_CONFLICT_POLICY":   "mine",
		"MAX_ATTACHMENT_BYTES":   "12",
		"IMAGE_PROCESSING":       "sometimes",
		"IMAGE_JPEG_QUALITY":     "101",
		"ACCESS_TOKEN_TTL":       "tomorrow",
		"REFRESH_TOKEN_TTL":      "-1h",
		"PUSH_RECEIPT_TTL":       "0s",
		"MAX_PUSH_BYTES":         "12",
		"MAX_JSON_BYTES":         "1e6",
		"MAX_VERSIONS_KEPT":      "0",
		"MAX_BUNDLE_BYTES":       "big",
		"MAX_BUNDLE_FILES":       "-3",
		"DB_MAX_CONNS":           "1",
		"BCRYPT_COST":            "40",
		"TRUSTED_PROXIES":        "10.0.0.0/8,proxy.internal",
		"MIN_UPLOAD_RATE":        "10",
		"SHUTDOWN_TIMEOUT":       "never",
		"BODY_READ_TIMEOUT":      "0",
		"PORTAL_IDLE_TIMEOUT":    "forever",
		"PORTAL_SESSION_MAX_AGE": "0h",
	}
	for name, value := range cases {
		_, err := loadConfig(fakeEnv(map[string]string{name: value}))
		require.Error(t, err, "%s=%q", name, value)
		// The alias is reported under the main name.
		want := map[string]string{"SERVER_PORT": "PORT"}[name]
		if want == "" {
			want = name
		}
		require.ErrorContains(t, err, want, "%s=%q", name, value)
	}
}

func TestConfigReportsEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(fakeEnv(map[string]string{
		"PORT": "abc", "LOG_LEVEL": "loud", "ACCESS_TOKEN_TTL": "soon", "SYNC_CONFLICT_POLICY": "mine", "JWT_SECRET": "short",
	}))
	require.Error(t, err)
	msg := err.Error()
	for _, want := range []string{"PORT", "LOG_LEVEL", "ACCESS_TOKEN_TTL", "SYNC_CONFLICT_POLICY", "JWT secret"} {
		require.Contains(t, msg, want)
	}
	require.GreaterOrEqual(t, strings.Count(msg, "\n"), 4, "one line per problem: %s", msg)
}
