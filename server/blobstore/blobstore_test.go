package blobstore_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/blobstore/blobstoretest"
)

func TestStore(t *testing.T) {
	t.Parallel()
	for _, b := range blobstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			s := blobstoretest.Open(t, b)

			t.Run("write and read back", func(t *testing.T) {
				data := bytes.Repeat([]byte("field data "), 100_000)
				w, err := s.Write(ctx, "a/photo.jpg", bytes.NewReader(data), blobstore.WriteOptions{ContentType: "image/jpeg"})
				require.NoError(t, err)
				require.Equal(t, int64(len(data)), w.Size)
				require.Equal(t, sha256.Sum256(data), w.SHA256)

				r, err := s.Open(ctx, "a/photo.jpg")
				require.NoError(t, err)
				defer r.Close()
				require.Equal(t, int64(len(data)), r.Size())
				if b.Name == "s3" {
					require.Equal(t, "image/jpeg", r.ContentType())
				}
				// Seeking is what resumable downloads (Range) rely on.
				_, err = r.Seek(int64(len(data)-5), io.SeekStart)
				require.NoError(t, err)
				tail, err := io.ReadAll(r)
				require.NoError(t, err)
				require.Equal(t, data[len(data)-5:], tail)
			})

			t.Run("a failed write leaves nothing", func(t *testing.T) {
				src := io.MultiReader(strings.NewReader("half of a photo"), iotest.ErrReader(errors.New("client went away")))
				_, err := s.Write(ctx, "b/cut", src, blobstore.WriteOptions{})
				require.Error(t, err)
				ok, err := s.Exists(ctx, "b/cut")
				require.NoError(t, err)
				require.False(t, ok)
			})

			t.Run("a write over the limit leaves nothing", func(t *testing.T) {
				_, err := s.Write(ctx, "b/big", bytes.NewReader(make([]byte, 101)), blobstore.WriteOptions{MaxBytes: 100})
				var tooLarge *blobstore.TooLargeError
				require.ErrorAs(t, err, &tooLarge)
				ok, err := s.Exists(ctx, "b/big")
				require.NoError(t, err)
				require.False(t, ok)
				_, err = s.Write(ctx, "b/exact", bytes.NewReader(make([]byte, 100)), blobstore.WriteOptions{MaxBytes: 100})
				require.NoError(t, err)
			})

			t.Run("conditional write keeps the first", func(t *testing.T) {
				_, err := s.Write(ctx, "c/once", strings.NewReader("first"), blobstore.WriteOptions{IfNotExist: true})
				require.NoError(t, err)
				_, err = s.Write(ctx, "c/once", strings.NewReader("second"), blobstore.WriteOptions{IfNotExist: true})
				require.ErrorIs(t, err, blobstore.ErrExists)
				r, err := s.Open(ctx, "c/once")
				require.NoError(t, err)
				got, _ := io.ReadAll(r)
				r.Close()
				require.Equal(t, "first", string(got))
			})

			t.Run("missing blobs", func(t *testing.T) {
				_, err := s.Open(ctx, "nothing/here")
				require.ErrorIs(t, err, blobstore.ErrNotFound)
				require.NoError(t, s.Delete(ctx, "nothing/here"))
			})

			t.Run("list and delete a prefix", func(t *testing.T) {
				for _, k := range []string{"d/1", "d/2", "d/x/3", "e/1"} {
					_, err := s.Write(ctx, k, strings.NewReader(k), blobstore.WriteOptions{})
					require.NoError(t, err)
				}
				var keys []string
				require.NoError(t, s.List(ctx, "d/", func(o blobstore.Object) error { keys = append(keys, o.Key); return nil }))
				require.Equal(t, []string{"d/1", "d/2", "d/x/3"}, keys)
				require.NoError(t, s.DeletePrefix(ctx, "d/"))
				keys = nil
				require.NoError(t, s.List(ctx, "", func(o blobstore.Object) error { keys = append(keys, o.Key); return nil }))
				require.NotContains(t, keys, "d/1")
				require.Contains(t, keys, "e/1")
			})

			t.Run("dots inside a segment", func(t *testing.T) {
				_, err := s.Write(ctx, "f/a..b/1", strings.NewReader("x"), blobstore.WriteOptions{})
				require.NoError(t, err)
				var keys []string
				require.NoError(t, s.List(ctx, "f/a..b/", func(o blobstore.Object) error { keys = append(keys, o.Key); return nil }))
				require.Equal(t, []string{"f/a..b/1"}, keys)
			})

			t.Run("keys cannot escape the bucket", func(t *testing.T) {
				for _, k := range []string{"", "../x", "a/../../x", "/abs", "a//b", "a/./b", "a\\b", "a b", "a\x00b", "ü", "e2../x", "a/.../x"} {
					_, err := s.Write(ctx, k, strings.NewReader("x"), blobstore.WriteOptions{})
					require.ErrorIs(t, err, blobstore.ErrInvalidKey, "key %q", k)
					_, err = s.Open(ctx, k)
					require.ErrorIs(t, err, blobstore.ErrInvalidKey, "key %q", k)
				}
			})
		})
	}
}

func TestDefaultURLCreatesTheDirectory(t *testing.T) {
	t.Parallel()
	dataDir := filepath.Join(t.TempDir(), "data")
	u, err := blobstore.DefaultURL(dataDir)
	require.NoError(t, err)
	s, err := blobstore.Open(context.Background(), u)
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Write(context.Background(), "k", strings.NewReader("v"), blobstore.WriteOptions{})
	require.NoError(t, err)
	got, err := os.ReadFile(filepath.Join(dataDir, "blobs", "k"))
	require.NoError(t, err)
	require.Equal(t, "v", string(got))
	_, err = os.Stat(filepath.Join(dataDir, "blobs", "k.attrs"))
	require.ErrorIs(t, err, os.ErrNotExist, "no side file of attributes, which would not be flushed with the blob")
}

func TestOpenRefusesAnUnknownScheme(t *testing.T) {
	t.Parallel()
	_, err := blobstore.Open(context.Background(), "ftp://example/bucket")
	require.Error(t, err)
}
