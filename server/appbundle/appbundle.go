// Package appbundle keeps the versioned app bundles the devices run: a custom web app
// (app/), JSON-Forms forms (forms/<name>/schema.json and ui.json) and custom question
// renderers (renderers/<name>/renderer.jsx), uploaded together as one ZIP archive.
//
// A push streams the archive to a temporary file, validates it completely (layout, JSON,
// renderer references, core fields, and the defences against hostile archives: unsafe
// paths, links, zip bombs), and only then stores it: each file once in blob storage under
// its SHA-256, the archive itself for download-zip, and the version's file list and form
// index in PostgreSQL. Versions are numbered by the database, so concurrent pushes, also
// from several server processes, get distinct numbers; the active version is one row, so
// a switch is atomic. Stored versions never change, which is what makes their manifests
// cacheable and their hashes and entity tags stable across restarts and processes.
package appbundle

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"strconv"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/blobstore"
)

// Limits bound what a push may cost. Zero values take the defaults.
type Limits struct {
	// MaxUploadBytes bounds the uploaded archive.
	MaxUploadBytes int64
	// MaxUncompressedBytes bounds the sum of the files' sizes once decompressed, counted
	// as they are read (declared sizes are checked first, but not trusted).
	MaxUncompressedBytes int64
	// MaxFiles bounds the number of entries in the archive.
	MaxFiles int
	// MaxRatio bounds how much larger than its compressed form a file above
	// RatioFloorBytes may decompress to.
	MaxRatio int64
}

// Default limits.
const (
	DefaultMaxUploadBytes       = 128 << 20
	DefaultMaxUncompressedBytes = 512 << 20
	DefaultMaxFiles             = 10000
	DefaultMaxRatio             = 200
	// RatioFloorBytes is the size below which no compression ratio is enforced: small
	// files of repeated characters legitimately compress a thousandfold.
	RatioFloorBytes = 1 << 20
	// DefaultKeepVersions is how many versions retention keeps (besides the active one).
	DefaultKeepVersions = 5
)

func (l *Limits) setDefaults() {
	l.MaxUploadBytes = cmp.Or(l.MaxUploadBytes, DefaultMaxUploadBytes)
	l.MaxUncompressedBytes = cmp.Or(l.MaxUncompressedBytes, DefaultMaxUncompressedBytes)
	l.MaxFiles = cmp.Or(l.MaxFiles, DefaultMaxFiles)
	l.MaxRatio = cmp.Or(l.MaxRatio, DefaultMaxRatio)
}

// Config configures a Service. Zero values take the defaults.
type Config struct {
	Limits Limits
	// KeepVersions is how many of the newest versions retention keeps; the active
	// version is always kept as well.
	KeepVersions int
	// TempDir receives uploads while they are validated; the OS temporary directory
	// when empty.
	TempDir string
}

// Service stores and serves app bundles.
type Service struct {
	pool      *pgxpool.Pool
	q         *dbgen.Queries
	blobs     *blobstore.Store
	log       *slog.Logger
	cfg       Config
	manifests *manifestCache
}

// NewService returns a Service keeping files in blobs and metadata in pool.
func NewService(pool *pgxpool.Pool, blobs *blobstore.Store, log *slog.Logger, cfg Config) *Service {
	cfg.Limits.setDefaults()
	cfg.KeepVersions = cmp.Or(cfg.KeepVersions, DefaultKeepVersions)
	cfg.TempDir = cmp.Or(cfg.TempDir, os.TempDir())
	return &Service{pool: pool, q: dbgen.New(db.Conn(pool)), blobs: blobs, log: log, cfg: cfg, manifests: newManifestCache(8)}
}

// Limits returns the limits in force.
func (s *Service) Limits() Limits { return s.cfg.Limits }

// NotFoundError reports a version, file or active bundle that does not exist.
type NotFoundError struct{ Detail string }

func (e *NotFoundError) Error() string { return e.Detail }

// InvalidRequestError reports a version name or path that can never be valid.
type InvalidRequestError struct{ Detail string }

func (e *InvalidRequestError) Error() string { return e.Detail }

// VersionName is the wire name of a version number: four digits at least ("0001").
func VersionName(n int32) string { return fmt.Sprintf("%04d", n) }

// maxVersionDigits keeps parsed numbers within int32.
const maxVersionDigits = 9

// ParseVersionName reads a version name as listed by the server ("0003"); the unpadded
// number ("3") that upstream's change logs used is accepted too. Anything else, such as a
// path, is an InvalidRequestError.
func ParseVersionName(name string) (int32, error) {
	bad := &InvalidRequestError{Detail: fmt.Sprintf("%q is not an app bundle version: versions are numbers such as 0001", name)}
	if name == "" || len(name) > maxVersionDigits {
		return 0, bad
	}
	for i := 0; i < len(name); i++ {
		if name[i] < '0' || name[i] > '9' {
			return 0, bad
		}
	}
	n, err := strconv.ParseInt(name, 10, 32)
	if err != nil || n <= 0 {
		return 0, bad
	}
	return int32(n), nil
}

// errNoActive is what the operations that serve the active version report before any
// version was activated.
var errNoActive = &NotFoundError{Detail: "no app bundle version is active yet: push a bundle and switch to it"}
