// Package blobstore keeps the server's files (attachments, app bundle files) in one bucket
// behind gocloud.dev/blob: a directory on local disk for a single server process, or an
// S3-compatible bucket that several server processes share. The bucket is chosen by one URL.
//
// What the package adds to gocloud's bucket is what every caller would otherwise have to
// get right itself: a write becomes visible only when it is complete (a failed or abandoned
// write leaves nothing behind), its size and SHA-256 are computed on the way, it can be
// bounded in size, a write to a local directory is flushed to disk before it is reported
// done, and keys are restricted to a safe alphabet so that no key can reach outside the
// bucket.
package blobstore

import (
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	_ "gocloud.dev/blob/s3blob" // registers the s3:// scheme
	"gocloud.dev/gcerrors"
)

// Errors the store reports; test with errors.Is.
var (
	// ErrNotFound reports a key with no blob.
	ErrNotFound = errors.New("blob not found")
	// ErrExists reports a conditional write to a key that already holds a blob.
	ErrExists = errors.New("blob already exists")
	// ErrInvalidKey reports a key outside the allowed alphabet or shape.
	ErrInvalidKey = errors.New("invalid blob key")
)

// TooLargeError reports a write that exceeded its size limit; nothing was stored.
type TooLargeError struct{ Limit int64 }

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("blob exceeds the limit of %d bytes", e.Limit)
}

// Store is a bucket of blobs.
type Store struct {
	bucket *blob.Bucket
	// dir is the bucket's root directory when the bucket is a local directory, so that
	// completed writes can be flushed to disk; empty for other backends.
	dir string
}

// DefaultURL is the bucket URL used when none is configured: a directory "blobs" under the
// data directory, created when missing. Temporary files are written beside their final
// place so that the atomic rename never crosses file systems. (Open adds metadata=skip.)
func DefaultURL(dataDir string) (string, error) {
	abs, err := filepath.Abs(filepath.Join(dataDir, "blobs"))
	if err != nil {
		return "", fmt.Errorf("error resolving data directory: %w", err)
	}
	u := url.URL{Scheme: fileblob.Scheme, Path: filepath.ToSlash(abs), RawQuery: "create_dir=1&no_tmp_dir=1"}
	return u.String(), nil
}

// Open opens the bucket named by rawURL: file:///path (a local directory) or
// s3://bucket?region=...&endpoint=...&use_path_style=true (any S3-compatible service;
// credentials come from the usual AWS environment variables or files).
func Open(ctx context.Context, rawURL string) (*Store, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("error parsing blob URL: %w", err)
	}
	if u.Scheme == fileblob.Scheme && !u.Query().Has("metadata") {
		// Without this, gocloud writes a side file of attributes (content type, an MD5 of
		// the content) for every blob: an MD5 pass costs about a quarter of the CPU of an
		// upload, and the side file is not flushed to disk with the blob, so a power loss
		// could leave a durable blob that cannot be opened. Callers keep what they need to
		// know about a blob in their own records.
		q := u.Query()
		q.Set("metadata", "skip")
		u.RawQuery = q.Encode()
		rawURL = u.String()
	}
	b, err := blob.OpenBucket(ctx, rawURL)
	if err != nil {
		return nil, fmt.Errorf("error opening blob bucket %s://%s: %w", u.Scheme, u.Host, err)
	}
	s := &Store{bucket: b}
	if u.Scheme == fileblob.Scheme {
		s.dir = filepath.FromSlash(u.Path)
		if u.Host == "." {
			s.dir = strings.TrimPrefix(s.dir, string(filepath.Separator))
		}
	}
	if ok, err := b.IsAccessible(ctx); err != nil || !ok {
		_ = b.Close()
		return nil, fmt.Errorf("blob bucket %s://%s is not accessible: %w", u.Scheme, u.Host, err)
	}
	return s, nil
}

// Close releases the bucket.
func (s *Store) Close() error { return s.bucket.Close() }

// WriteOptions tune a write.
type WriteOptions struct {
	// ContentType is stored with the blob by backends that keep metadata (S3; a local
	// directory does not, and reports application/octet-stream); empty lets S3 sniff it.
	ContentType string
	// MaxBytes bounds the blob's size; 0 means no bound.
	MaxBytes int64
	// IfNotExist makes the write fail with ErrExists when the key already holds a blob.
	IfNotExist bool
}

// writeBufferBytes is the size of the chunks Write hands to the backend.
const writeBufferBytes = 128 << 10

// Written describes a completed write.
type Written struct {
	Size   int64
	SHA256 [32]byte
}

// Write stores everything r yields under key. Only a complete write becomes visible: when
// reading r fails, the limit is exceeded or ctx ends, the write is abandoned and the key
// keeps whatever it held before.
func (s *Store) Write(ctx context.Context, key string, r io.Reader, opts WriteOptions) (Written, error) {
	if err := CheckKey(key); err != nil {
		return Written{}, err
	}
	// Cancelling the writer's context before Close is what tells gocloud to discard a
	// partial write instead of committing it.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.bucket.NewWriter(wctx, key, &blob.WriterOptions{ContentType: opts.ContentType, IfNotExist: opts.IfNotExist})
	if err != nil {
		return Written{}, s.translate(err, key)
	}
	h := sha256.New()
	src := r
	if opts.MaxBytes > 0 {
		src = io.LimitReader(r, opts.MaxBytes+1)
	}
	// Readers such as a multipart part yield a few kilobytes per call; the buffer turns
	// them into large writes to the backend (one system call per 128 KiB on a local disk).
	bw := bufio.NewWriterSize(io.MultiWriter(w, h), writeBufferBytes)
	n, err := io.Copy(bw, src)
	if err == nil && opts.MaxBytes > 0 && n > opts.MaxBytes {
		err = &TooLargeError{Limit: opts.MaxBytes}
	}
	if err == nil {
		err = bw.Flush()
	}
	if err != nil {
		cancel()
		_ = w.Close()
		return Written{}, s.translate(err, key)
	}
	if err := w.Close(); err != nil {
		return Written{}, s.translate(err, key)
	}
	if err := s.flush(key); err != nil {
		return Written{}, fmt.Errorf("error flushing blob %s to disk: %w", key, err)
	}
	var out Written
	out.Size = n
	h.Sum(out.SHA256[:0])
	return out, nil
}

// flush makes a completed write to a local directory durable: gocloud renames the
// finished temporary file into place but does not sync it, so a power loss right after an
// acknowledged upload could otherwise lose it. The directories up to the bucket's root are
// synced too, as the write may have created some of them, and a new directory is only as
// durable as the entry its parent holds for it.
func (s *Store) flush(key string) error {
	if s.dir == "" {
		return nil
	}
	path := filepath.Join(s.dir, filepath.FromSlash(key))
	paths := []string{path}
	for d := filepath.Dir(path); ; d = filepath.Dir(d) {
		paths = append(paths, d)
		if d == filepath.Clean(s.dir) || d == filepath.Dir(d) {
			break
		}
	}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		err = f.Sync()
		_ = f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Reader is an open blob: an io.ReadSeekCloser (so it can back http.ServeContent) that
// knows its size, content type and modification time.
type Reader = blob.Reader

// Open opens the blob under key for reading.
func (s *Store) Open(ctx context.Context, key string) (*Reader, error) {
	if err := CheckKey(key); err != nil {
		return nil, err
	}
	r, err := s.bucket.NewReader(ctx, key, nil)
	if err != nil {
		return nil, s.translate(err, key)
	}
	return r, nil
}

// File returns the open file behind r when the bucket is a local directory, so that it can
// be handed to the kernel (http.ServeContent then sends it with sendfile, without copying
// it through user space); nil for other backends. Read either the file or r, not both, and
// close r when done.
func File(r *Reader) *os.File {
	var inner io.Reader
	if !r.As(&inner) {
		return nil
	}
	f, _ := inner.(*os.File)
	return f
}

// Exists reports whether key holds a blob.
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	if err := CheckKey(key); err != nil {
		return false, err
	}
	ok, err := s.bucket.Exists(ctx, key)
	if err != nil {
		return false, s.translate(err, key)
	}
	return ok, nil
}

// Delete removes the blob under key; a key holding nothing is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := CheckKey(key); err != nil {
		return err
	}
	err := s.translate(s.bucket.Delete(ctx, key), key)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// Object is one listed blob.
type Object struct {
	Key  string
	Size int64
}

// List calls fn for every blob whose key starts with prefix, in key order, until fn
// returns an error (which List returns).
func (s *Store) List(ctx context.Context, prefix string, fn func(Object) error) error {
	it := s.bucket.List(&blob.ListOptions{Prefix: prefix})
	for {
		obj, err := it.Next(ctx)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return s.translate(err, prefix)
		}
		if obj.IsDir {
			continue
		}
		if err := fn(Object{Key: obj.Key, Size: obj.Size}); err != nil {
			return err
		}
	}
}

// DeletePrefix removes every blob whose key starts with prefix.
func (s *Store) DeletePrefix(ctx context.Context, prefix string) error {
	return s.List(ctx, prefix, func(o Object) error {
		// Listed keys come from the bucket itself, so they are deleted without CheckKey:
		// a temporary file an interrupted write left behind goes too.
		err := s.translate(s.bucket.Delete(ctx, o.Key), o.Key)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
}

func (s *Store) translate(err error, key string) error {
	if err == nil {
		return nil
	}
	var tooLarge *TooLargeError
	if errors.As(err, &tooLarge) {
		return err
	}
	switch gcerrors.Code(err) {
	case gcerrors.NotFound:
		return fmt.Errorf("%w: %s", ErrNotFound, key)
	case gcerrors.FailedPrecondition:
		return fmt.Errorf("%w: %s", ErrExists, key)
	}
	return fmt.Errorf("error accessing blob %s: %w", key, err)
}

// MaxKeyBytes bounds the length of a key.
const MaxKeyBytes = 1024

// CheckKey accepts keys made of "/"-separated segments that ValidSegment accepts: such a
// key names the same blob on every backend, cannot reach outside the bucket, and is a path
// of directories in the file backend.
func CheckKey(key string) error {
	if key == "" || len(key) > MaxKeyBytes {
		return fmt.Errorf("%w: %q", ErrInvalidKey, key)
	}
	for seg := range strings.SplitSeq(key, "/") {
		if !ValidSegment(seg) {
			return fmt.Errorf("%w: %q", ErrInvalidKey, key)
		}
	}
	return nil
}

// ValidSegment accepts one segment of a key: letters, digits, '.', '_' and '-', not empty,
// not "." and not ending in ".." (which covers ".."; the file backend escapes a "/" after
// "..", which would keep the blob outside the directory the key names).
func ValidSegment(seg string) bool {
	if seg == "" || seg == "." || strings.HasSuffix(seg, "..") {
		return false
	}
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
