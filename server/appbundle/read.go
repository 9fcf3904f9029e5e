package appbundle

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/blobstore"
)

// File is one file of a stored version.
type File struct {
	Path string
	Size int64
	// SHA256 is the hex SHA-256 of the content.
	SHA256      string
	ContentType string
	ModTime     time.Time
}

// Manifest lists the files of a stored version. It never changes, so it is shared.
type Manifest struct {
	Version int32
	Name    string
	// Hash covers the files' paths, hashes and sizes only: the same content always has
	// the same hash, whatever version or process serves it.
	Hash string
	// GeneratedAt is when the version was pushed, so that the manifest's body, like its
	// hash, is the same on every request.
	GeneratedAt time.Time
	Files       []File
	// ETag identifies this manifest's body: its version and hash.
	ETag string
}

func newManifest(v dbgen.AppBundleVersion, files []File) *Manifest {
	name := VersionName(v.Version)
	return &Manifest{Version: v.Version, Name: name, Hash: v.ManifestHash, GeneratedAt: v.CreatedAt.UTC(),
		Files: files, ETag: `"` + name + "-" + v.ManifestHash + `"`}
}

// manifestHash is the SHA-256 over each file's path, hash and size, in path order; the
// separators cannot occur in paths, so distinct lists never hash alike.
func manifestHash(files []*bundleFile) string {
	h := sha256.New()
	for _, f := range files {
		h.Write([]byte(f.Path))
		h.Write([]byte{0})
		h.Write([]byte(hex.EncodeToString(f.SHA256[:])))
		h.Write([]byte{0})
		h.Write(strconv.AppendInt(nil, f.Size, 10))
		h.Write([]byte{'\n'})
	}
	return hex.EncodeToString(h.Sum(nil))
}

func fileList(files []*bundleFile) []File {
	out := make([]File, len(files))
	for i, f := range files {
		out[i] = File{Path: f.Path, Size: f.Size, SHA256: hex.EncodeToString(f.SHA256[:]), ContentType: f.ContentType, ModTime: f.ModTime}
	}
	return out
}

// manifestCache keeps the manifests of a few versions: they never change, so only the
// active version's number has to be read per request.
type manifestCache struct {
	mu    sync.Mutex
	max   int
	byVer map[int32]*Manifest
	order []int32
}

func newManifestCache(max int) *manifestCache {
	return &manifestCache{max: max, byVer: map[int32]*Manifest{}}
}

func (c *manifestCache) get(v int32) (*Manifest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.byVer[v]
	return m, ok
}

func (c *manifestCache) put(m *Manifest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.byVer[m.Version]; ok {
		return
	}
	if len(c.order) >= c.max {
		delete(c.byVer, c.order[0])
		c.order = c.order[1:]
	}
	c.byVer[m.Version] = m
	c.order = append(c.order, m.Version)
}

// readOnly runs fn in one read-only snapshot.
func (s *Service) readOnly(ctx context.Context, fn func(q *dbgen.Queries) error) error {
	return db.InTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		return fn(s.q.WithTx(tx))
	})
}

// ActiveManifest returns the manifest of the active version.
func (s *Service) ActiveManifest(ctx context.Context) (*Manifest, error) {
	v, err := s.q.AppBundleVersionActive(ctx)
	if errors.Is(err, db.ErrNotFound) {
		return nil, errNoActive
	}
	if err != nil {
		return nil, fmt.Errorf("error reading the active app bundle version: %w", err)
	}
	if m, ok := s.manifests.get(v.Version); ok {
		return m, nil
	}
	var m *Manifest
	// Version and files from one snapshot: the version may stop being active, and be
	// removed by retention, between two separate reads.
	err = s.readOnly(ctx, func(q *dbgen.Queries) error {
		v, err := q.AppBundleVersionActive(ctx)
		if errors.Is(err, db.ErrNotFound) {
			return errNoActive
		}
		if err != nil {
			return fmt.Errorf("error reading the active app bundle version: %w", err)
		}
		rows, err := q.AppBundleFileList(ctx, v.Version)
		if err != nil {
			return fmt.Errorf("error listing app bundle files: %w", err)
		}
		files := make([]File, len(rows))
		for i, r := range rows {
			files[i] = File{Path: r.Path, Size: r.Size, SHA256: hex.EncodeToString(r.Sha256), ContentType: r.ContentType, ModTime: r.ModTime.UTC()}
		}
		m = newManifest(v, files)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.manifests.put(m)
	return m, nil
}

// OpenedFile is a bundle file ready to be served; the caller closes Reader.
type OpenedFile struct {
	File
	// Version is the name of the version the file was taken from.
	Version string
	Reader  *blobstore.Reader
}

// OpenFile opens a file of the active version, or of the newest stored version when
// preview is set. Only paths in the version's file list can be reached.
func (s *Service) OpenFile(ctx context.Context, path string, preview bool) (*OpenedFile, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	row, err := s.q.AppBundleFileGetServed(ctx, dbgen.AppBundleFileGetServedParams{Path: path, Preview: preview})
	which := "active"
	if preview {
		which = "newest"
	}
	if errors.Is(err, db.ErrNotFound) {
		return nil, &NotFoundError{Detail: fmt.Sprintf("the %s app bundle version has no file %q", which, path)}
	}
	if err != nil {
		return nil, fmt.Errorf("error looking up app bundle file: %w", err)
	}
	r, err := s.openBlob(ctx, row.Sha256, fmt.Sprintf("file %q of the %s app bundle version", path, which))
	if err != nil {
		return nil, err
	}
	return &OpenedFile{
		File:    File{Path: row.Path, Size: row.Size, SHA256: hex.EncodeToString(row.Sha256), ContentType: row.ContentType, ModTime: row.ModTime.UTC()},
		Version: VersionName(row.Version), Reader: r,
	}, nil
}

// openBlob opens a bundle blob. A blob that is missing although a version referenced it
// a moment ago belongs to a version that retention just removed.
func (s *Service) openBlob(ctx context.Context, sum []byte, what string) (*blobstore.Reader, error) {
	r, err := s.blobs.Open(ctx, blobKey(sum))
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil, &NotFoundError{Detail: what + " was removed"}
	}
	if err != nil {
		return nil, fmt.Errorf("error opening app bundle blob: %w", err)
	}
	return r, nil
}

// OpenedArchive is the uploaded archive of a version; the caller closes Reader.
type OpenedArchive struct {
	Version string
	SHA256  string
	Size    int64
	Pushed  time.Time
	Reader  *blobstore.Reader
}

// OpenArchive opens the archive that was uploaded for the active version.
func (s *Service) OpenArchive(ctx context.Context) (*OpenedArchive, error) {
	v, err := s.q.AppBundleVersionActive(ctx)
	if errors.Is(err, db.ErrNotFound) {
		return nil, errNoActive
	}
	if err != nil {
		return nil, fmt.Errorf("error reading the active app bundle version: %w", err)
	}
	name := VersionName(v.Version)
	r, err := s.openBlob(ctx, v.ZipSha256, "the archive of app bundle version "+name)
	if err != nil {
		return nil, err
	}
	return &OpenedArchive{Version: name, SHA256: hex.EncodeToString(v.ZipSha256), Size: v.ZipSize, Pushed: v.CreatedAt.UTC(), Reader: r}, nil
}

// VersionItem is one stored version.
type VersionItem struct {
	Name   string
	Active bool
}

// Versions lists the stored versions, newest first.
func (s *Service) Versions(ctx context.Context) ([]VersionItem, error) {
	rows, err := s.q.AppBundleVersionList(ctx)
	if err != nil {
		return nil, fmt.Errorf("error listing app bundle versions: %w", err)
	}
	out := make([]VersionItem, len(rows))
	for i, r := range rows {
		out[i] = VersionItem{Name: VersionName(r.Version), Active: r.Active}
	}
	return out, nil
}

// Switch makes a stored version the active one: a single update of the state row, so
// every reader sees the old version or the new one.
func (s *Service) Switch(ctx context.Context, name, by string) (string, error) {
	n, err := ParseVersionName(name)
	if err != nil {
		return "", err
	}
	err = db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		// Locked first, so that retention cannot remove the version in between.
		if _, err := q.AppBundleStateLock(ctx); err != nil {
			return fmt.Errorf("error locking the app bundle state: %w", err)
		}
		if _, err := q.AppBundleVersionGet(ctx, n); errors.Is(err, db.ErrNotFound) {
			return &NotFoundError{Detail: fmt.Sprintf("no app bundle version %s is stored", VersionName(n))}
		} else if err != nil {
			return fmt.Errorf("error reading app bundle version: %w", err)
		}
		if err := q.AppBundleStateActivate(ctx, dbgen.AppBundleStateActivateParams{Version: &n, SwitchedBy: &by}); err != nil {
			return fmt.Errorf("error activating app bundle version: %w", err)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return VersionName(n), nil
}
