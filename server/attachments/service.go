// Package attachments keeps the files devices attach to observations (photos, recordings,
// signatures): immutable uploads streamed to the blob store, downloads, the manifest that
// tells every device which files to fetch or remove, deletion, export and optional image
// processing.
//
// The bytes live in the blob store and everything else in PostgreSQL. An upload streams to
// a key of its own that no row refers to yet; one short transaction then records the
// attachment under a version from the counter observations use, so the manifest orders
// attachment operations and observation changes alike. Blobs no row refers to are listed
// in attachment_unclaimed_blobs and removed by Sweep, so neither a failed upload nor a
// crash leaves files behind.
package attachments

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// Defaults of Options.
const (
	DefaultMaxUploadBytes   = 128 << 20
	DefaultManifestPageSize = 1000
	DefaultUploadGrace      = 24 * time.Hour
)

// Options tune the service; zero values take the defaults.
type Options struct {
	// MaxUploadBytes bounds the size of one attachment.
	MaxUploadBytes int64
	// ManifestPageSize bounds the operations of one manifest.
	ManifestPageSize int
	// UploadGrace is how long an upload may stream before its blob counts as abandoned and
	// the cleanup may delete it.
	UploadGrace time.Duration
	// Images configures image processing (off unless Enabled).
	Images ImageOptions
}

func (o *Options) setDefaults() {
	if o.MaxUploadBytes <= 0 {
		o.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if o.ManifestPageSize <= 0 {
		o.ManifestPageSize = DefaultManifestPageSize
	}
	if o.UploadGrace <= 0 {
		o.UploadGrace = DefaultUploadGrace
	}
	o.Images.setDefaults()
}

// Errors the service reports; test with errors.Is.
var (
	// ErrNotFound reports an id with no stored attachment.
	ErrNotFound = errors.New("attachment not found")
	// ErrConflict reports an upload of other bytes under an id that is already stored.
	ErrConflict = errors.New("an attachment with other content is already stored under this id")
)

// Service stores, serves and deletes attachments.
type Service struct {
	pool   *pgxpool.Pool
	q      *dbgen.Queries
	blobs  *blobstore.Store
	log    *slog.Logger
	opts   Options
	images *imageProcessor
	// sweepRequested is signalled when blobs became due for deletion (an attachment was
	// deleted, or the repository reset) so the cleanup need not wait for its next round.
	sweepRequested chan struct{}
}

// NewService returns a Service keeping rows in pool and bytes in blobs.
func NewService(pool *pgxpool.Pool, blobs *blobstore.Store, log *slog.Logger, opts Options) *Service {
	opts.setDefaults()
	return &Service{
		pool:           pool,
		q:              dbgen.New(db.Conn(pool)),
		blobs:          blobs,
		log:            log,
		opts:           opts,
		images:         newImageProcessor(opts.Images),
		sweepRequested: make(chan struct{}, 1),
	}
}

// MaxUploadBytes is the size limit of one attachment.
func (s *Service) MaxUploadBytes() int64 { return s.opts.MaxUploadBytes }

// takeVersion is the one place attachments take a version from the counter observations
// use (sync_state.current_version). It locks the counter row until the transaction ends,
// as a push does with SyncStateLock, so it must come last in a transaction whose remaining
// work is one short statement and the commit: the next writer can then only stamp a higher
// version after this one is visible, and versions become visible in commit order. A client
// that sent a repository generation other than the server's gets a
// *obsync.GenerationMismatchError.
func takeVersion(ctx context.Context, q *dbgen.Queries, sentGeneration *int64) (int64, error) {
	st, err := q.SyncStateAdvance(ctx)
	if err != nil {
		return 0, fmt.Errorf("error advancing the sync version: %w", err)
	}
	if err := checkGeneration(sentGeneration, st.RepositoryGeneration); err != nil {
		return 0, err
	}
	return st.CurrentVersion, nil
}

// checkGeneration applies the repository generation rule of attachments: a client that
// sent a generation must have the server's; one that sent none adopts it.
func checkGeneration(sent *int64, server int64) error {
	if sent != nil && *sent != server {
		return &obsync.GenerationMismatchError{Server: server, Client: *sent}
	}
	return nil
}

// blobKey names a fresh blob for one upload of id. Each upload attempt gets its own key,
// so concurrent or retried uploads of one id never write to the same blob, and a failed
// attempt can be removed without touching a stored one.
func blobKey(id string) string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "attachments/" + id + "/" + hex.EncodeToString(b[:])
}

// processedKey is where the processed copy of the upload at key is kept. It starts with
// key, so deleting the prefix key removes both.
func processedKey(key string) string { return key + "-processed" }
