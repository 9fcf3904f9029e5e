package appbundle

import (
	"archive/zip"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/sync/errgroup"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/blobstore"
)

// blobPrefix holds every bundle blob: files and archives alike, keyed by content.
const blobPrefix = "appbundle/sha256/"

func blobKey(sum []byte) string { return blobPrefix + hex.EncodeToString(sum) }

// blobWriters bounds the concurrent writes of one push (an S3 round trip per file).
const blobWriters = 8

// PushOptions tune a push.
type PushOptions struct {
	// Activate makes the new version the active one in the same transaction.
	Activate bool
	// PushedBy is recorded with the version.
	PushedBy string
}

// Pushed is the outcome of a push.
type Pushed struct {
	Manifest  *Manifest
	Activated bool
}

// Push validates the archive r yields and stores it as a new version. A refused bundle is
// a *ValidationError listing every problem, and leaves nothing behind.
func (s *Service) Push(ctx context.Context, r io.Reader, opts PushOptions) (*Pushed, error) {
	up, err := receive(r, s.cfg.TempDir, s.cfg.Limits.MaxUploadBytes)
	if err != nil {
		return nil, err
	}
	defer up.discard()
	b, err := s.open(up, time.Now())
	if err != nil {
		return nil, err
	}
	if err := s.checkCoreFields(ctx, s.q, b); err != nil {
		return nil, err
	}
	m, err := s.store(ctx, up, b, opts)
	// Retention may have released files, and a failed store may have written some: either
	// way, what no version references goes (also when the client has gone away).
	gcCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if gcErr := s.collectGarbage(gcCtx); gcErr != nil {
		s.log.WarnContext(ctx, "could not remove unreferenced app bundle files", "error", gcErr)
	}
	if err != nil {
		return nil, err
	}
	return &Pushed{Manifest: m, Activated: opts.Activate}, nil
}

// maxParsedEntries bounds the entries archive/zip may parse (it allocates one structure
// per central directory header before anything else can be checked). The signature count
// can only overstate the entries, hence the generous margin over MaxFiles.
func (s *Service) maxParsedEntries() int { return 4*s.cfg.Limits.MaxFiles + 1000 }

// open reads the uploaded archive's directory and validates the bundle.
func (s *Service) open(up *upload, now time.Time) (*bundle, error) {
	var p problems
	if up.dirHeaders > s.maxParsedEntries() {
		p.add("", CodeTooManyFiles, "the archive appears to hold more than %d entries; the limit is %d", s.maxParsedEntries(), s.cfg.Limits.MaxFiles)
		return nil, p.err()
	}
	zr, err := zip.NewReader(up.file, up.size)
	if err != nil && !(errors.Is(err, zip.ErrInsecurePath) && zr != nil) { // unsafe names are reported one by one
		p.add("", CodeNotZip, "the upload is not a readable ZIP archive")
		return nil, p.err()
	}
	return validate(zr, up.size, s.cfg.Limits, now)
}

// checkCoreFields refuses a bundle that changes the core fields of a form the active
// version has.
func (s *Service) checkCoreFields(ctx context.Context, q *dbgen.Queries, b *bundle) error {
	active, err := q.AppBundleVersionActive(ctx)
	if errors.Is(err, db.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("error reading the active app bundle version: %w", err)
	}
	forms, err := q.AppBundleFormList(ctx, active.Version)
	if err != nil {
		return fmt.Errorf("error reading the active app bundle forms: %w", err)
	}
	var p problems
	for _, f := range forms {
		pushed := b.forms[f.Name]
		if pushed == nil || pushed.CoreHash == f.CoreHash {
			continue
		}
		var prev map[string]json.RawMessage
		if err := json.Unmarshal(f.CoreFields, &prev); err != nil {
			return fmt.Errorf("error reading the core fields of form %s: %w", f.Name, err)
		}
		for _, msg := range coreChanges(prev, pushed.CoreFields) {
			p.add("forms/"+f.Name+"/schema.json", CodeCoreFieldChanged, "%s since the active version %s: core fields cannot change", msg, VersionName(active.Version))
		}
	}
	return p.err()
}

// store writes the files and the archive to blob storage and records the version. The
// shared blob lock is held from before the first write until the commit, so garbage
// collection cannot remove a file this push has found already stored and relies on.
func (s *Service) store(ctx context.Context, up *upload, b *bundle, opts PushOptions) (*Manifest, error) {
	var m *Manifest
	err := db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		if err := q.AppBundleBlobsLockShared(ctx); err != nil {
			return fmt.Errorf("error taking the app bundle blob lock: %w", err)
		}
		if err := s.writeBlobs(ctx, up, b); err != nil {
			return err
		}
		if _, err := q.AppBundleStateLock(ctx); err != nil {
			return fmt.Errorf("error locking the app bundle state: %w", err)
		}
		// The active version may have changed while the files were written.
		if err := s.checkCoreFields(ctx, q, b); err != nil {
			return err
		}
		n, err := q.AppBundleStateNextVersion(ctx)
		if err != nil {
			return fmt.Errorf("error allocating an app bundle version: %w", err)
		}
		if m, err = s.insertVersion(ctx, q, n, up, b, opts.PushedBy); err != nil {
			return err
		}
		if opts.Activate {
			if err := q.AppBundleStateActivate(ctx, dbgen.AppBundleStateActivateParams{Version: &n, SwitchedBy: &opts.PushedBy}); err != nil {
				return fmt.Errorf("error activating app bundle version %d: %w", n, err)
			}
		}
		if _, err := q.AppBundleVersionDeleteOld(ctx, int32(s.cfg.KeepVersions)); err != nil {
			return fmt.Errorf("error applying app bundle retention: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.manifests.put(m)
	return m, nil
}

func (s *Service) insertVersion(ctx context.Context, q *dbgen.Queries, n int32, up *upload, b *bundle, pushedBy string) (*Manifest, error) {
	files := dbgen.AppBundleFileInsertBatchParams{Version: n}
	var total int64
	for _, f := range b.files {
		files.Paths = append(files.Paths, f.Path)
		files.Sha256s = append(files.Sha256s, f.SHA256[:])
		files.Sizes = append(files.Sizes, f.Size)
		files.ContentTypes = append(files.ContentTypes, f.ContentType)
		files.ModTimes = append(files.ModTimes, f.ModTime)
		total += f.Size
	}
	row, err := q.AppBundleVersionInsert(ctx, dbgen.AppBundleVersionInsertParams{
		Version: n, ZipSha256: up.sha256[:], ZipSize: up.size, ManifestHash: manifestHash(b.files),
		FileCount: int32(len(b.files)), TotalSize: total, PushedBy: pushedBy,
	})
	if err != nil {
		return nil, fmt.Errorf("error recording app bundle version %d: %w", n, err)
	}
	if err := q.AppBundleFileInsertBatch(ctx, files); err != nil {
		return nil, fmt.Errorf("error recording the files of app bundle version %d: %w", n, err)
	}
	forms := dbgen.AppBundleFormInsertBatchParams{Version: n}
	for _, name := range sortedKeys(b.forms) {
		f := b.forms[name]
		core, err := json.Marshal(f.CoreFields)
		if err != nil {
			return nil, fmt.Errorf("error encoding core fields: %w", err)
		}
		fields, err := json.Marshal(f.Fields)
		if err != nil {
			return nil, fmt.Errorf("error encoding fields: %w", err)
		}
		forms.Names = append(forms.Names, name)
		forms.SchemaHashes = append(forms.SchemaHashes, f.SchemaHash)
		forms.UiHashes = append(forms.UiHashes, f.UIHash)
		forms.CoreHashes = append(forms.CoreHashes, f.CoreHash)
		forms.CoreFields = append(forms.CoreFields, core)
		forms.Fields = append(forms.Fields, fields)
	}
	if err := q.AppBundleFormInsertBatch(ctx, forms); err != nil {
		return nil, fmt.Errorf("error recording the forms of app bundle version %d: %w", n, err)
	}
	return newManifest(row, fileList(b.files)), nil
}

// writeBlobs stores every distinct file, and the archive, that blob storage does not
// hold yet.
func (s *Service) writeBlobs(ctx context.Context, up *upload, b *bundle) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(blobWriters)
	seen := map[[32]byte]bool{up.sha256: true}
	g.Go(func() error {
		return s.writeBlob(gctx, up.sha256, up.size, func() (io.ReadCloser, error) {
			return io.NopCloser(io.NewSectionReader(up.file, 0, up.size)), nil
		})
	})
	for _, f := range b.files {
		if seen[f.SHA256] {
			continue
		}
		seen[f.SHA256] = true
		g.Go(func() error { return s.writeBlob(gctx, f.SHA256, f.Size, f.zf.Open) })
	}
	return g.Wait()
}

// writeBlob stores one content-addressed blob unless it is already there, and checks
// that what was written is what validation hashed.
func (s *Service) writeBlob(ctx context.Context, sum [32]byte, size int64, open func() (io.ReadCloser, error)) error {
	key := blobKey(sum[:])
	exists, err := s.blobs.Exists(ctx, key)
	if err != nil || exists {
		return err
	}
	r, err := open()
	if err != nil {
		return fmt.Errorf("error reopening %s: %w", key, err)
	}
	defer r.Close()
	w, err := s.blobs.Write(ctx, key, r, blobstore.WriteOptions{ContentType: "application/octet-stream", MaxBytes: size})
	if err != nil {
		return fmt.Errorf("error storing %s: %w", key, err)
	}
	if w.SHA256 != sum || w.Size != size {
		_ = s.blobs.Delete(ctx, key)
		return fmt.Errorf("error storing %s: the content changed after validation", key)
	}
	return nil
}

// collectGarbage removes the bundle blobs no stored version references. It takes the
// blob lock exclusively and without waiting: while a push holds it, that push collects
// afterwards instead.
func (s *Service) collectGarbage(ctx context.Context) error {
	return db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		locked, err := q.AppBundleBlobsTryLock(ctx)
		if err != nil || !locked {
			return err
		}
		refs, err := q.AppBundleBlobRefs(ctx)
		if err != nil {
			return fmt.Errorf("error listing referenced app bundle files: %w", err)
		}
		keep := make(map[string]bool, len(refs))
		for _, r := range refs {
			keep[blobKey(r)] = true
		}
		var garbage []string
		err = s.blobs.List(ctx, blobPrefix, func(o blobstore.Object) error {
			if !keep[o.Key] {
				garbage = append(garbage, o.Key)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("error listing app bundle files: %w", err)
		}
		for _, key := range garbage {
			if err := s.blobs.Delete(ctx, key); err != nil {
				return fmt.Errorf("error removing %s: %w", key, err)
			}
		}
		return nil
	})
}
