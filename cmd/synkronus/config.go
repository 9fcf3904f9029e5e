package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/opendataensemble/synkronus/server/appbundle"
	"github.com/opendataensemble/synkronus/server/attachments"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// config is everything the server reads from its environment, read once at start.
type config struct {
	DatabaseURL     string
	Host            string
	Port            int
	JWTSecret       []byte
	AdminUsername   string
	AdminPassword   string
	DataDir         string
	BlobURL         string
	LogLevel        slog.Level
	LogFormat       string
	PublicURL       string
	AccessTokenTTL  time.Duration
	RefreshTokenTTL time.Duration
	ConflictPolicy  obsync.Policy
	ReceiptTTL      time.Duration
	MaxPushBytes    int64
	MaxJSONBytes    int64
	DBMaxConns      int32
	BcryptCost      int
	MaxExports      int
	PprofAddr       string
	// MetricsAddr is where the Prometheus metrics are served on a listener of their own;
	// MetricsToken, when set, is the bearer token a scrape must present.
	MetricsAddr     string
	MetricsToken    string
	TrustedProxies  []*net.IPNet
	BodyReadTimeout time.Duration
	MinUploadRate   int64
	ShutdownTimeout time.Duration
	// Attachments holds the attachment size limit and image processing settings.
	Attachments attachments.Options
	// App bundles: retention and upload limits.
	MaxVersionsKept            int
	MaxBundleBytes             int64
	MaxBundleUncompressedBytes int64
	MaxBundleFiles             int
	// PortalIdleTimeout and PortalMaxAge end web portal sessions.
	PortalIdleTimeout time.Duration
	PortalMaxAge      time.Duration
}

const defaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/synkronus?sslmode=disable"

// loadConfig reads the configuration from env (a lookup function, os.LookupEnv in main).
// Every problem is reported, not only the first.
func loadConfig(env func(string) (string, bool)) (config, error) {
	var errs []error
	get := func(names ...string) string {
		for _, n := range names {
			if v, ok := env(n); ok && strings.TrimSpace(v) != "" {
				return strings.TrimSpace(v)
			}
		}
		return ""
	}
	duration := func(name string, def time.Duration) time.Duration {
		v := get(name)
		if v == "" {
			return def
		}
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Errorf("%s=%q is not a positive duration such as 24h", name, v))
			return def
		}
		return d
	}
	integer := func(def, lo, hi int64, names ...string) int64 {
		name := names[0]
		v := get(names...)
		if v == "" {
			return def
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%q must be a whole number from %d to %d", name, v, lo, hi))
			return def
		}
		return n
	}
	boolean := func(name string) bool {
		v := get(name)
		if v == "" {
			return false
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s=%q must be true or false", name, v))
		}
		return b
	}

	c := config{
		DatabaseURL:     get("DATABASE_URL", "DB_CONNECTION"),
		Host:            get("HOST"),
		Port:            int(integer(8080, 0, 65535, "PORT", "SERVER_PORT")),
		AdminUsername:   get("ADMIN_USERNAME"),
		AdminPassword:   get("ADMIN_PASSWORD"),
		DataDir:         get("DATA_DIR"),
		BlobURL:         get("BLOB_URL"),
		LogFormat:       get("LOG_FORMAT"),
		PprofAddr:       get("PPROF_ADDR"),
		MetricsAddr:     get("METRICS_ADDR"),
		MetricsToken:    get("METRICS_TOKEN"),
		PublicURL:       strings.TrimRight(get("PUBLIC_URL"), "/"),
		AccessTokenTTL:  duration("ACCESS_TOKEN_TTL", 24*time.Hour),
		RefreshTokenTTL: duration("REFRESH_TOKEN_TTL", 30*24*time.Hour),
		ReceiptTTL:      duration("PUSH_RECEIPT_TTL", 24*time.Hour),
		MaxPushBytes:    integer(32<<20, 1<<10, 1<<30, "MAX_PUSH_BYTES"),
		MaxJSONBytes:    integer(1<<20, 1<<10, 1<<30, "MAX_JSON_BYTES"),
		DBMaxConns:      int32(integer(16, 2, 1000, "DB_MAX_CONNS")),
		BcryptCost:      int(integer(10, 4, 16, "BCRYPT_COST")),
		BodyReadTimeout: duration("BODY_READ_TIMEOUT", 30*time.Second),
		MinUploadRate:   integer(16<<10, 1<<10, 1<<30, "MIN_UPLOAD_RATE"),
		ShutdownTimeout: duration("SHUTDOWN_TIMEOUT", 20*time.Second),
		Attachments: attachments.Options{
			MaxUploadBytes: integer(attachments.DefaultMaxUploadBytes, 1<<10, 1<<40, "MAX_ATTACHMENT_BYTES", "SYNKRONUS_MAX_ATTACHMENT_UPLOAD_BYTES"),
			Images: attachments.ImageOptions{
				Enabled:     boolean("IMAGE_PROCESSING"),
				MaxWidth:    int(integer(attachments.DefaultImageMaxWidth, 0, 16384, "IMAGE_MAX_WIDTH")),
				MaxHeight:   int(integer(attachments.DefaultImageMaxHeight, 0, 16384, "IMAGE_MAX_HEIGHT")),
				JPEGQuality: int(integer(attachments.DefaultJPEGQuality, 1, 100, "IMAGE_JPEG_QUALITY")),
				MaxPixels:   integer(attachments.DefaultMaxPixels, 1, 16384*16384, "IMAGE_MAX_PIXELS"),
			},
		},
		MaxExports: int(integer(2, 1, 64, "EXPORT_MAX_CONCURRENT")),
	}
	c.MaxVersionsKept = int(integer(appbundle.DefaultKeepVersions, 1, 1000, "MAX_VERSIONS_KEPT"))
	c.MaxBundleBytes = integer(appbundle.DefaultMaxUploadBytes, 1<<10, 1<<34, "MAX_BUNDLE_BYTES")
	c.MaxBundleUncompressedBytes = integer(appbundle.DefaultMaxUncompressedBytes, 1<<10, 1<<36, "MAX_BUNDLE_UNCOMPRESSED_BYTES")
	c.MaxBundleFiles = int(integer(appbundle.DefaultMaxFiles, 1, 1_000_000, "MAX_BUNDLE_FILES"))
	c.PortalIdleTimeout = duration("PORTAL_IDLE_TIMEOUT", time.Hour)
	c.PortalMaxAge = duration("PORTAL_SESSION_MAX_AGE", 12*time.Hour)
	if c.DatabaseURL == "" {
		c.DatabaseURL = defaultDatabaseURL
	}
	if c.AdminUsername == "" {
		c.AdminUsername = "admin"
	}
	if c.DataDir == "" {
		c.DataDir = "data"
	}
	if c.BlobURL == "" {
		u, err := blobstore.DefaultURL(c.DataDir)
		if err != nil {
			errs = append(errs, fmt.Errorf("DATA_DIR: %w", err))
		}
		c.BlobURL = u
	}
	switch c.LogFormat {
	case "", "json", "text":
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT=%q must be json or text", c.LogFormat))
	}
	if err := c.LogLevel.UnmarshalText([]byte(orDefault(get("LOG_LEVEL"), "info"))); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL=%q must be debug, info, warn or error", get("LOG_LEVEL")))
	}
	policy, err := obsync.ParsePolicy(orDefault(get("SYNC_CONFLICT_POLICY"), string(obsync.PolicyNewest)))
	if err != nil {
		errs = append(errs, fmt.Errorf("SYNC_CONFLICT_POLICY: %w", err))
	}
	c.ConflictPolicy = policy
	proxies, err := parseNetworks(get("TRUSTED_PROXIES"))
	if err != nil {
		errs = append(errs, fmt.Errorf("TRUSTED_PROXIES: %w", err))
	}
	c.TrustedProxies = proxies

	switch file, secret := get("JWT_SECRET_FILE"), get("JWT_SECRET"); {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			errs = append(errs, fmt.Errorf("JWT_SECRET_FILE: %w", err))
		}
		c.JWTSecret = []byte(strings.TrimSpace(string(b)))
	case secret != "":
		c.JWTSecret = []byte(secret)
	}
	if c.JWTSecret != nil && len(c.JWTSecret) < 32 {
		errs = append(errs, errors.New("the JWT secret must be at least 32 bytes; unset it to let the server generate one"))
	}
	return c, errors.Join(errs...)
}

// parseNetworks reads a comma-separated list of CIDR networks; a bare address is a
// network of that one address.
func parseNetworks(list string) ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for item := range strings.SplitSeq(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		if !strings.Contains(item, "/") {
			ip := net.ParseIP(item)
			if ip == nil {
				return nil, fmt.Errorf("%q is neither an address nor a network such as 10.0.0.0/8", item)
			}
			bits := 8 * len(ip.To16())
			if ip.To4() != nil {
				ip, bits = ip.To4(), 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(item)
		if err != nil {
			return nil, fmt.Errorf("%q is neither an address nor a network such as 10.0.0.0/8", item)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
