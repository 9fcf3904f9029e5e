package server_test

import (
	"bytes"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/appbundle/appbundletest"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// The fuzz tests send what a fuzzer makes of a request to the whole server (seeds in
// testdata/fuzz/<name>; CI runs each target for a few seconds). Whatever arrives, the
// answer is never a server error (a panic would be one too: Recover turns it into a 500)
// and every error is a problem body; nothing is written beside the data directory.

// fuzzServer is a server whose data directory is the only entry of its parent, so that a
// write escaping it shows.
type fuzzServer struct {
	env    *servertest.Env
	h      http.Handler
	token  string
	parent string
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	parent := f.TempDir()
	dataDir := filepath.Join(parent, "data")
	blobURL, err := blobstore.DefaultURL(dataDir)
	if err != nil {
		f.Fatal(err)
	}
	env := servertest.NewWithBlobs(f, dbtest.NewDB(f), blobURL, func(o *server.Options) { o.DataDir = dataDir })
	return &fuzzServer{env: env, h: env.Server.Handler(), token: env.AdminToken(), parent: parent}
}

// do sends a request; it returns nil when the fuzzer's input makes no valid HTTP request.
func (s *fuzzServer) do(t testing.TB, method, target, contentType string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	req, err := http.NewRequest(method, "http://synkronus.test"+target, bytes.NewReader(body))
	if err != nil {
		return nil
	}
	req.Header.Set("X-Ode-Version", servertest.Version)
	req.Header.Set("Authorization", "Bearer "+s.token)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	s.h.ServeHTTP(rec, req)
	if rec.Code >= 500 {
		t.Fatalf("%s %s answered %d: %s", method, target, rec.Code, rec.Body)
	}
	if rec.Code >= 400 && method != http.MethodHead && rec.Header().Get("Content-Type") != "application/problem+json" {
		t.Fatalf("%s %s answered %d without a problem body: %s", method, target, rec.Code, rec.Body)
	}
	entries, err := os.ReadDir(s.parent)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != "data" {
		t.Fatalf("%s %s wrote beside the data directory: %v", method, target, entries)
	}
	return rec
}

func FuzzPushBody(f *testing.F) {
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		s.do(t, http.MethodPost, "/api/sync/push", "application/json", body)
	})
}

func FuzzPullBody(f *testing.F) {
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, query string, body []byte) {
		s.do(t, http.MethodPost, "/api/sync/pull?"+query, "application/json", body)
	})
}

// FuzzBundleZip sends the input as an app bundle archive.
func FuzzBundleZip(f *testing.F) {
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, archive []byte) {
		body, ct := multipartBody(t, formPart{field: "bundle", filename: "bundle.zip", data: archive})
		s.do(t, http.MethodPost, "/api/app-bundle/push?activate=true", ct, body)
	})
}

// FuzzAttachmentID uploads, checks, downloads and deletes an attachment under the input,
// as a path segment encoded and as it is.
func FuzzAttachmentID(f *testing.F) {
	s := newFuzzServer(f)
	f.Fuzz(func(t *testing.T, id string) {
		body, ct := multipartBody(t, formPart{field: "file", filename: "f.jpg", data: []byte("attachment " + id)})
		for _, target := range []string{"/api/attachments/" + url.PathEscape(id), "/api/attachments/" + id, "/attachments/" + id} {
			put := s.do(t, http.MethodPut, target, ct, body)
			if put == nil {
				continue
			}
			s.do(t, http.MethodHead, target, "", nil)
			if rec := s.do(t, http.MethodGet, target, "", nil); put.Code == http.StatusOK && (rec.Code != http.StatusOK || !strings.HasPrefix(rec.Body.String(), "attachment ")) {
				t.Fatalf("GET %s does not serve what was uploaded there: %d %q", target, rec.Code, rec.Body)
			}
			s.do(t, http.MethodDelete, target, "", nil)
		}
	})
}

// FuzzBundlePath asks for the input as a file of the active bundle: only the bundle's own
// files are ever served.
func FuzzBundlePath(f *testing.F) {
	s := newFuzzServer(f)
	files := appbundletest.Sample()
	archive, ct := multipartBody(f, formPart{field: "bundle", filename: "bundle.zip", data: appbundletest.Files(files)})
	if rec := s.do(f, http.MethodPost, "/api/app-bundle/push?activate=true", ct, archive); rec == nil || rec.Code != http.StatusOK {
		f.Fatalf("the bundle was not pushed: %v", rec)
	}
	served := slices.Collect(maps.Values(files))
	f.Fuzz(func(t *testing.T, path string) {
		for _, target := range []string{"/api/app-bundle/download/" + url.PathEscape(path), "/api/app-bundle/download/" + path} {
			rec := s.do(t, http.MethodGet, target+"?preview=true", "", nil)
			if rec != nil && rec.Code == http.StatusOK && !slices.Contains(served, rec.Body.String()) {
				t.Fatalf("GET %s served what is no file of the bundle: %q", target, rec.Body)
			}
		}
	})
}
