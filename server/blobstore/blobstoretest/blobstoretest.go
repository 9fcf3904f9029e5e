// Package blobstoretest provides the blob backends tests run against: a local directory,
// and an in-process S3-compatible server (gofakes3), so that every behaviour is proven on
// both kinds of bucket the server supports.
package blobstoretest

import (
	"context"
	"fmt"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/opendataensemble/synkronus/server/blobstore"
)

// Backend is one kind of bucket for tests.
type Backend struct {
	Name string
	// URL opens the bucket (BLOB_URL); every call of Backends makes a fresh, empty one.
	URL string
}

// Backends returns a fresh local-directory bucket and a fresh S3 bucket, both removed when
// the test ends.
func Backends(t testing.TB) []Backend {
	t.Helper()
	return []Backend{{Name: "file", URL: FileURL(t)}, {Name: "s3", URL: S3URL(t)}}
}

// FileURL returns the URL of an empty local-directory bucket under the test's temp dir.
func FileURL(t testing.TB) string {
	t.Helper()
	u, err := blobstore.DefaultURL(t.TempDir())
	if err != nil {
		t.Fatalf("error building file bucket URL: %v", err)
	}
	return u
}

var bucketSeq atomic.Int64

// S3URL starts an in-process S3-compatible server for the test and returns the URL of an
// empty bucket on it. The server listens on loopback, so other processes the test starts
// (several server processes sharing one bucket) can reach it too.
func S3URL(t testing.TB) string {
	t.Helper()
	faker := gofakes3.New(s3mem.New(), gofakes3.WithAutoBucket(true))
	ts := httptest.NewServer(faker.Server())
	t.Cleanup(ts.Close)
	q := url.Values{
		"endpoint":       {ts.URL},
		"region":         {"us-east-1"},
		"use_path_style": {"true"},
		"disable_https":  {"true"},
		"anonymous":      {"true"},
	}
	return fmt.Sprintf("s3://test-bucket-%d?%s", bucketSeq.Add(1), q.Encode())
}

// Open opens a backend's bucket, closed when the test ends.
func Open(t testing.TB, b Backend) *blobstore.Store {
	t.Helper()
	s, err := blobstore.Open(context.Background(), b.URL)
	if err != nil {
		t.Fatalf("error opening %s bucket: %v", b.Name, err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Dir returns the directory of a local-directory bucket URL (for tests that look at the
// files themselves); it fails the test for other URLs.
func Dir(t testing.TB, rawURL string) string {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "file" {
		t.Fatalf("%s is not a local-directory bucket URL", rawURL)
	}
	return filepath.FromSlash(u.Path)
}
