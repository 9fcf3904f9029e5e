package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/appbundle"
	"github.com/opendataensemble/synkronus/server/appbundle/appbundletest"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/blobstore/blobstoretest"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// multipartBundle encodes an archive as the multipart body clients send.
func multipartBundle(t *testing.T, field string, archive []byte) ([]byte, string) {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	fw, err := mw.CreateFormFile(field, "bundle.zip")
	require.NoError(t, err)
	_, err = fw.Write(archive)
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	return body.Bytes(), mw.FormDataContentType()
}

func pushBundle(t *testing.T, env *servertest.Env, token string, archive []byte, query string) *servertest.Response {
	t.Helper()
	body, contentType := multipartBundle(t, "bundle", archive)
	return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/app-bundle/push" + query, Token: token, Body: body,
		Header: map[string]string{"Content-Type": contentType}})
}

// pushOK pushes an archive that must be accepted and returns the response.
func pushOK(t *testing.T, env *servertest.Env, token string, archive []byte, query string) api.AppBundlePushResponse {
	t.Helper()
	res := pushBundle(t, env, token, archive, query)
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var out api.AppBundlePushResponse
	res.JSON(t, &out)
	return out
}

func switchBundle(env *servertest.Env, token, version string) *servertest.Response {
	return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/app-bundle/switch/" + version, Token: token})
}

func getManifest(env *servertest.Env, token string, header map[string]string) *servertest.Response {
	return env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/manifest", Token: token, Header: header})
}

func bundleVersions(t *testing.T, env *servertest.Env, token string) []string {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/versions", Token: token})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var out api.AppBundleVersions
	res.JSON(t, &out)
	return out.Versions
}

// requireBundleProblem checks a refused push and returns the listed problems by code.
func requireBundleProblem(t *testing.T, res *servertest.Response, status int, wantCode string) map[string][]string {
	t.Helper()
	p := requireSyncProblem(t, res, status, "")
	require.NotNil(t, p.Errors, "%s", res.Body)
	byCode := map[string][]string{}
	for _, e := range *p.Errors {
		require.NotNil(t, e.Code)
		require.NotNil(t, e.Field)
		require.NotEmpty(t, *e.Message)
		byCode[*e.Code] = append(byCode[*e.Code], *e.Field)
	}
	require.Contains(t, byCode, wantCode, "%s", res.Body)
	return byCode
}

// bundleStorage describes what the server holds of app bundles: version rows, the
// version counter, and blobs.
func bundleStorage(t *testing.T, env *servertest.Env) (versions, lastVersion int, blobs []string) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, env.Pool.QueryRow(ctx, "SELECT count(*) FROM app_bundle_versions").Scan(&versions))
	require.NoError(t, env.Pool.QueryRow(ctx, "SELECT last_version FROM app_bundle_state").Scan(&lastVersion))
	require.NoError(t, env.Blobs.List(ctx, "appbundle/", func(o blobstore.Object) error {
		blobs = append(blobs, o.Key)
		return nil
	}))
	return versions, lastVersion, blobs
}

// formulus2025Download fetches the manifest and then every file under forms/ and app/ the
// way the 2025 Formulus app does: root paths, no version header, paths encoded as one
// segment, and status 200 required. It returns the manifest and the files' contents.
func formulus2025Download(t *testing.T, env *servertest.Env, token string) (api.AppBundleManifest, map[string]string) {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/app-bundle/manifest", Token: token, NoVersion: true})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var m api.AppBundleManifest
	res.JSON(t, &m)
	got := map[string]string{}
	for _, prefix := range []string{"forms/", "app/"} {
		for _, f := range m.Files {
			if !strings.HasPrefix(f.Path, prefix) {
				continue
			}
			res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/app-bundle/download/" + url.PathEscape(f.Path), Token: token, NoVersion: true})
			require.Equal(t, http.StatusOK, res.Status, "%s: %s", f.Path, res.Body)
			require.Equal(t, `"`+f.Hash+`"`, res.Header.Get("ETag"))
			require.Equal(t, f.MimeType, res.Header.Get("Content-Type"))
			got[f.Path] = string(res.Body)
		}
	}
	return m, got
}

// onlyPrefixes keeps the files under the given prefixes.
func onlyPrefixes(files map[string]string, prefixes ...string) map[string]string {
	out := map[string]string{}
	for p, c := range files {
		for _, prefix := range prefixes {
			if strings.HasPrefix(p, prefix) {
				out[p] = c
			}
		}
	}
	return out
}

func TestAppBundleLifecycle(t *testing.T) {
	t.Parallel()
	for _, backend := range blobstoretest.Backends(t) {
		t.Run(backend.Name, func(t *testing.T) {
			t.Parallel()
			pool := dbtest.NewDB(t)
			env := servertest.NewWithBlobs(t, pool, backend.URL)
			admin := env.AdminToken()
			device := env.CreateUser("field", "read-only")

			// Nothing is active before the first switch.
			requireSyncProblem(t, getManifest(env, device, nil), http.StatusNotFound, "not_found")

			v1Files := appbundletest.Sample()
			v1 := appbundletest.Files(v1Files)
			pushed := pushOK(t, env, admin, v1, "")
			require.Equal(t, "0001", *pushed.Version)
			require.False(t, *pushed.Active, "a push does not activate unless asked")
			require.Equal(t, "0001", pushed.Manifest.Version)
			require.Len(t, pushed.Manifest.Files, len(v1Files))
			requireSyncProblem(t, getManifest(env, device, nil), http.StatusNotFound, "not_found")
			require.Equal(t, []string{"0001"}, bundleVersions(t, env, device))

			res := switchBundle(env, admin, "0001")
			require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
			require.Equal(t, []string{"0001 *"}, bundleVersions(t, env, device))

			// Formulus 2025: manifest, then every forms/ and app/ file with %2F paths.
			m1, got := formulus2025Download(t, env, device)
			require.Equal(t, "0001", m1.Version)
			require.Equal(t, pushed.Manifest.Hash, m1.Hash)
			require.Equal(t, onlyPrefixes(v1Files, "forms/", "app/"), got)
			var paths []string
			for _, f := range m1.Files {
				paths = append(paths, f.Path)
				require.Equal(t, int64(len(v1Files[f.Path])), f.Size, "size is a number the CLI can read")
			}
			require.True(t, slices.IsSorted(paths), "files are sorted: %v", paths)
			etag1 := getManifest(env, device, nil).Header.Get("ETag")
			require.NotEmpty(t, etag1)

			// Formulus 2026 installs from the archive, and needs a numeric version.
			res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download-zip", Token: device})
			require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
			require.Equal(t, v1, res.Body)
			require.Equal(t, "application/zip", res.Header.Get("Content-Type"))
			require.Contains(t, res.Header.Get("Content-Disposition"), "app-bundle-0001.zip")
			zipTag := res.Header.Get("ETag")
			res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download-zip", Token: device, Header: map[string]string{"If-None-Match": zipTag}})
			require.Equal(t, http.StatusNotModified, res.Status)

			// A second version changes a form; it is stored but not served yet.
			v2Files := appbundletest.Sample()
			v2Files["forms/person/schema.json"] = strings.Replace(v2Files["forms/person/schema.json"],
				`"name": {"type": "string", "title": "Name"},`, `"name": {"type": "string", "title": "Name"}, "email": {"type": "string"},`, 1)
			delete(v2Files, "forms/household/schema.json")
			delete(v2Files, "forms/household/ui.json")
			v2Files["forms/visit/schema.json"] = `{"type":"object","properties":{"when":{"type":"string","format":"date"}}}`
			v2Files["forms/visit/ui.json"] = `{"type":"VerticalLayout","elements":[]}`
			v2Files["app/js/app.js"] = `console.log("field app, v2");`
			pushed2 := pushOK(t, env, admin, appbundletest.Files(v2Files), "")
			require.Equal(t, "0002", *pushed2.Version)
			res = getManifest(env, device, map[string]string{"If-None-Match": etag1})
			require.Equal(t, http.StatusNotModified, res.Status, "the active manifest did not change")

			// What changes when 0002 is activated.
			res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/changes", Token: device})
			require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
			var changes api.ChangeLog
			res.JSON(t, &changes)
			require.Equal(t, "0001", *changes.CompareVersionA)
			require.Equal(t, "0002", *changes.CompareVersionB)
			require.Equal(t, "0002", *changes.TargetVersion)
			require.True(t, *changes.FormChanges)
			require.False(t, *changes.UiChanges)
			require.Equal(t, []api.FormDiff{{Form: ptr("visit")}}, *changes.NewForms)
			require.Equal(t, []api.FormDiff{{Form: ptr("household")}}, *changes.RemovedForms)
			require.Len(t, *changes.ModifiedForms, 1)
			person := (*changes.ModifiedForms)[0]
			require.Equal(t, "person", *person.Form)
			require.True(t, *person.SchemaChanged)
			require.False(t, *person.UiChanged)
			require.False(t, *person.CoreChanged)
			require.Equal(t, []api.FieldChange{{Field: ptr("email"), Type: ptr("string")}}, *person.AddedFields)
			require.Empty(t, *person.RemovedFields)
			var modified []string
			for _, f := range *changes.Modified {
				modified = append(modified, f.Path)
				require.NotEqual(t, f.HashA, f.HashB)
			}
			require.Equal(t, []string{"app/js/app.js", "forms/person/schema.json"}, modified)

			// Activate 0002, then switch back to 0001.
			require.Equal(t, http.StatusOK, switchBundle(env, admin, "0002").Status)
			m2, got := formulus2025Download(t, env, device)
			require.Equal(t, "0002", m2.Version)
			require.Equal(t, onlyPrefixes(v2Files, "forms/", "app/"), got)
			require.NotEqual(t, etag1, getManifest(env, device, nil).Header.Get("ETag"))
			require.Equal(t, http.StatusOK, switchBundle(env, admin, "0001").Status)
			require.Equal(t, []string{"0002", "0001 *"}, bundleVersions(t, env, device))
			require.Equal(t, etag1, getManifest(env, device, nil).Header.Get("ETag"), "switching back serves the same manifest")

			// A restart (a new server on the same database and bucket) serves the same
			// manifest: same hash, same ETag, so a client holding it gets 304.
			restarted := servertest.NewWithBlobs(t, pool, backend.URL)
			device = restarted.Login("field", "pw-field")
			res = getManifest(restarted, device, map[string]string{"If-None-Match": etag1})
			require.Equal(t, http.StatusNotModified, res.Status, "%s", res.Body)
			require.Equal(t, etag1, res.Header.Get("ETag"))
			res = getManifest(restarted, device, nil)
			var again api.AppBundleManifest
			res.JSON(t, &again)
			require.Equal(t, m1, again, "the body is the same too, generatedAt included")
			res = restarted.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/forms%2Fperson%2Fschema.json",
				Token: device, Header: map[string]string{"If-None-Match": `"` + m1.Files[slices.Index(paths, "forms/person/schema.json")].Hash + `"`}})
			require.Equal(t, http.StatusNotModified, res.Status)

			// preview serves the newest version, whatever is active.
			res = restarted.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/forms%2Fperson%2Fschema.json?preview=true", Token: device})
			require.Equal(t, http.StatusOK, res.Status)
			require.Equal(t, v2Files["forms/person/schema.json"], string(res.Body))
			require.Equal(t, "true", res.Header.Get("X-Is-Preview"))
			res = restarted.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/forms%2Fvisit%2Fui.json", Token: device})
			requireSyncProblem(t, res, http.StatusNotFound, "not_found")
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestAppBundlePushRefusesHostileArchivesAndLeavesNothing(t *testing.T) {
	t.Parallel()
	index := appbundletest.Entry{Name: "app/index.html", Body: []byte("<html></html>")}
	valid := appbundletest.Sample()
	limits := server.Options{BundleLimits: appbundle.Limits{MaxUploadBytes: 1 << 20, MaxUncompressedBytes: 4 << 20, MaxFiles: 40}}
	cases := []struct {
		name    string
		archive []byte
		status  int
		code    string
	}{
		{"zip-slip parent", appbundletest.Zip(index, appbundletest.Entry{Name: "../../../../tmp/evil.sh", Body: []byte("x")}), 400, "unsafe_path"},
		{"zip-slip absolute", appbundletest.Zip(index, appbundletest.Entry{Name: "/etc/passwd", Body: []byte("x")}), 400, "unsafe_path"},
		{"zip-slip backslash", appbundletest.Zip(index, appbundletest.Entry{Name: `app\..\..\evil.sh`, Body: []byte("x")}), 400, "unsafe_path"},
		{"zip-slip drive", appbundletest.Zip(index, appbundletest.Entry{Name: `C:/evil.sh`, Body: []byte("x")}), 400, "unsafe_path"},
		{"symlink", appbundletest.Zip(index, appbundletest.Entry{Name: "app/link", Body: []byte("../../etc/passwd"), Mode: fs.ModeSymlink | 0o777}), 400, "not_a_regular_file"},
		{"ratio bomb", appbundletest.Zip(index, appbundletest.Entry{Name: "app/zeros.bin", Body: make([]byte, 3<<20)}), 400, "compression_ratio"},
		{"total size", appbundletest.Zip(index, appbundletest.Entry{Name: "app/a.bin", Body: bytes.Repeat([]byte("a"), 3<<20)},
			appbundletest.Entry{Name: "app/b.bin", Body: bytes.Repeat([]byte("b"), 3<<20)}), 413, "too_large"},
		{"declared 2 GB", appbundletest.Zip(index, appbundletest.Entry{Name: "app/huge.bin", Body: []byte("tiny"), DeclaredSize: 2 << 30}), 413, "too_large"},
		{"lying size", appbundletest.Zip(index, appbundletest.Entry{Name: "app/liar.bin", Body: bytes.Repeat([]byte("xy"), 4096), DeclaredSize: 16}), 400, "corrupt_entry"},
		{"too many entries", manyEntries(41), 413, "too_many_files"},
		{"duplicates", appbundletest.Zip(index, appbundletest.Entry{Name: "app/a.js", Body: []byte("1")}, appbundletest.Entry{Name: "app/a.js", Body: []byte("2")}), 400, "duplicate_path"},
		{"not a zip", []byte("this is not an archive"), 400, "not_a_zip"},
		{"upload too large", appbundletest.Zip(index, appbundletest.Entry{Name: "app/noise.bin", Body: noise(1<<20 + 1000), Store: true}), 413, "upload_too_large"},
		{"invalid layout", appbundletest.Files(map[string]string{"index.html": "x", "forms/a/schema.json": "{"}), 400, "unexpected_path"},
	}
	for _, backend := range blobstoretest.Backends(t) {
		t.Run(backend.Name, func(t *testing.T) {
			t.Parallel()
			dataDir := t.TempDir()
			opts := limits
			opts.DataDir = dataDir
			env := servertest.NewWithBlobs(t, dbtest.NewDB(t), backend.URL, func(o *server.Options) { *o = opts })
			admin := env.AdminToken()
			for _, c := range cases {
				res := pushBundle(t, env, admin, c.archive, "?activate=true")
				requireBundleProblem(t, res, c.status, c.code)
				versions, last, blobs := bundleStorage(t, env)
				require.Zero(t, versions, c.name)
				require.Zero(t, last, "%s: no version number was used", c.name)
				require.Empty(t, blobs, c.name)
				tmp, err := os.ReadDir(filepath.Join(dataDir, "tmp"))
				require.NoError(t, err)
				require.Empty(t, tmp, "%s: the upload's temporary file is gone", c.name)
			}
			// A body far beyond the limit is refused by its declared length, before it is read.
			res := pushBundle(t, env, admin, appbundletest.Zip(index, appbundletest.Entry{Name: "app/noise.bin", Body: noise(3 << 20), Store: true}), "")
			requireSyncProblem(t, res, http.StatusRequestEntityTooLarge, "request_too_large")
			// The same server still takes a good bundle.
			require.Equal(t, "0001", *pushOK(t, env, admin, appbundletest.Files(valid), "").Version)
		})
	}
}

func manyEntries(n int) []byte {
	entries := []appbundletest.Entry{{Name: "app/index.html", Body: []byte("<html></html>")}}
	for i := range n {
		entries = append(entries, appbundletest.Entry{Name: fmt.Sprintf("app/f%03d.js", i), Body: []byte("x")})
	}
	return appbundletest.Zip(entries...)
}

// noise is incompressible content.
func noise(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func TestAppBundlePushRefusals(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()

	body, contentType := multipartBundle(t, "file", appbundletest.Files(appbundletest.Sample()))
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/app-bundle/push", Token: admin, Body: body, Header: map[string]string{"Content-Type": contentType}})
	p := requireSyncProblem(t, res, http.StatusBadRequest, "")
	require.Contains(t, p.Detail, `"bundle"`)

	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/app-bundle/push", Token: admin, Body: "{}"})
	requireSyncProblem(t, res, http.StatusBadRequest, "")

	res = env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/app-bundle/push", Token: admin, Body: body[:len(body)/2],
		Header: map[string]string{"Content-Type": contentType}})
	requireSyncProblem(t, res, http.StatusBadRequest, "")

	versions, _, blobs := bundleStorage(t, env)
	require.Zero(t, versions)
	require.Empty(t, blobs)
}

func TestAppBundleEveryProblemIsListed(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	files := appbundletest.Sample()
	delete(files, "app/index.html")
	files["forms/person/ui.json"] = "{"
	files["forms/household/schema.json"] = `{"type":"object","properties":{"x":{"x-renderer":"nowhere"}}}`
	files["renderers/extra/readme.md"] = ""
	res := pushBundle(t, env, env.AdminToken(), appbundletest.Files(files), "")
	byCode := requireBundleProblem(t, res, http.StatusBadRequest, "missing_file")
	require.Equal(t, []string{"app/index.html"}, byCode["missing_file"])
	require.Equal(t, []string{"forms/person/ui.json"}, byCode["invalid_json"])
	require.Equal(t, []string{"forms/household/schema.json"}, byCode["missing_renderer"])
	require.Equal(t, []string{"renderers/extra/readme.md"}, byCode["unexpected_path"])
}

func TestAppBundleCoreFieldsStayAgainstTheActiveVersion(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	files := appbundletest.Sample()
	pushOK(t, env, admin, appbundletest.Files(files), "?activate=true")

	// Re-pushing the same bundle, reformatted, passes (upstream hashed core fields two
	// ways and refused it once its cache was warm).
	files["forms/person/schema.json"] = strings.ReplaceAll(files["forms/person/schema.json"], "\n", " ")
	require.Equal(t, "0002", *pushOK(t, env, admin, appbundletest.Files(files), "").Version)

	changed := appbundletest.Sample()
	changed["forms/person/schema.json"] = strings.Replace(changed["forms/person/schema.json"], `"core_id": {"type": "string"`, `"core_id": {"type": "integer"`, 1)
	byCode := requireBundleProblem(t, pushBundle(t, env, admin, appbundletest.Files(changed), ""), http.StatusBadRequest, "core_field_changed")
	require.Equal(t, []string{"forms/person/schema.json"}, byCode["core_field_changed"])

	// Against an active version without the form, anything goes.
	other := appbundletest.Sample()
	delete(other, "forms/person/schema.json")
	delete(other, "forms/person/ui.json")
	other["forms/household/schema.json"] = `{"type":"object","properties":{}}`
	pushOK(t, env, admin, appbundletest.Files(other), "?activate=true")
	require.Equal(t, "0004", *pushOK(t, env, admin, appbundletest.Files(changed), "").Version)
}

func TestAppBundleManifestEntityTags(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	pushOK(t, env, admin, appbundletest.Files(appbundletest.Sample()), "?activate=true")
	etag := getManifest(env, admin, nil).Header.Get("ETag")
	require.True(t, strings.HasPrefix(etag, `"0001-`), etag)
	for header, want := range map[string]int{
		etag:                    http.StatusNotModified,
		"W/" + etag:             http.StatusNotModified,
		`"other", ` + etag:      http.StatusNotModified,
		`W/"other",W/` + etag:   http.StatusNotModified,
		"*":                     http.StatusNotModified,
		`"other"`:               http.StatusOK,
		strings.Trim(etag, `"`): http.StatusOK,
		`"` + etag[2:]:          http.StatusOK,
	} {
		res := getManifest(env, admin, map[string]string{"If-None-Match": header})
		require.Equal(t, want, res.Status, "If-None-Match: %s", header)
		require.Equal(t, etag, res.Header.Get("ETag"))
		if want == http.StatusNotModified {
			require.Empty(t, res.Body)
		}
	}
}

func TestAppBundleFilesCannotReachOutside(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	pushOK(t, env, admin, appbundletest.Files(appbundletest.Sample()), "?activate=true")
	for _, path := range []string{
		"..%2F..%2F..%2Fetc%2Fpasswd", "..%2F..%2F..%2Fetc%2Fpasswd?preview=true", "%2Fetc%2Fpasswd", "app%2F..%2F..%2F.env",
		"app%5C..%5C.env", "app%2F%00x",
	} {
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/" + path, Token: admin})
		requireSyncProblem(t, res, http.StatusBadRequest, "validation_failed")
	}
	for _, path := range []string{"app%2Fmissing.js", "APP%2Findex.html", "app", "forms%2Fperson", ".env?preview=true"} {
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/" + path, Token: admin})
		requireSyncProblem(t, res, http.StatusNotFound, "not_found")
	}
	// The path is one segment: unencoded slashes address no operation.
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/app/css/style.css", Token: admin})
	require.Equal(t, http.StatusNotFound, res.Status)
	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/app%2Fcss%2Fstyle.css", Token: admin})
	require.Equal(t, http.StatusOK, res.Status)
	require.Equal(t, "text/css; charset=utf-8", res.Header.Get("Content-Type"))
	require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	require.Equal(t, "sandbox", res.Header.Get("Content-Security-Policy"))
	// Byte ranges.
	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/app%2Fcss%2Fstyle.css", Token: admin,
		Header: map[string]string{"Range": "bytes=0-3"}})
	require.Equal(t, http.StatusPartialContent, res.Status)
	require.Equal(t, "body", string(res.Body))
}

func TestAppBundleSwitchRefusals(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	requireSyncProblem(t, switchBundle(env, admin, "0001"), http.StatusNotFound, "not_found")
	pushOK(t, env, admin, appbundletest.Files(appbundletest.Sample()), "")
	requireSyncProblem(t, switchBundle(env, admin, "0002"), http.StatusNotFound, "not_found")
	for _, bad := range []string{"..%2F..%2Fdata", "current", "1.0", "-1", "0000"} {
		requireSyncProblem(t, switchBundle(env, admin, bad), http.StatusBadRequest, "validation_failed")
	}
	require.Equal(t, http.StatusOK, switchBundle(env, admin, "1").Status, "the unpadded number names the same version")
	require.Equal(t, []string{"0001 *"}, bundleVersions(t, env, admin))
}

func TestAppBundleRoles(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	reader := env.CreateUser("reader", "read-only")
	writer := env.CreateUser("writer", "read-write")
	archive := appbundletest.Files(appbundletest.Sample())
	requireSyncProblem(t, pushBundle(t, env, reader, archive, ""), http.StatusForbidden, "forbidden")
	requireSyncProblem(t, pushBundle(t, env, writer, archive, ""), http.StatusForbidden, "forbidden")
	requireSyncProblem(t, pushBundle(t, env, "", archive, ""), http.StatusUnauthorized, "unauthorized")
	pushOK(t, env, admin, archive, "")
	requireSyncProblem(t, switchBundle(env, writer, "0001"), http.StatusForbidden, "forbidden")
	require.Equal(t, http.StatusOK, switchBundle(env, admin, "0001").Status)
	for _, token := range []string{reader, writer, admin} {
		require.Equal(t, http.StatusOK, getManifest(env, token, nil).Status)
	}
	requireSyncProblem(t, getManifest(env, "", nil), http.StatusUnauthorized, "unauthorized")
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/download/app%2Findex.html"})
	requireSyncProblem(t, res, http.StatusUnauthorized, "unauthorized")
}

func TestAppBundleRetention(t *testing.T) {
	t.Parallel()
	for _, backend := range blobstoretest.Backends(t) {
		t.Run(backend.Name, func(t *testing.T) {
			t.Parallel()
			env := servertest.NewWithBlobs(t, dbtest.NewDB(t), backend.URL, func(o *server.Options) { o.MaxVersionsKept = 2 })
			admin := env.AdminToken()
			version := func(i int) []byte {
				files := appbundletest.Sample()
				files["app/version.txt"] = fmt.Sprintf("version %d", i)
				return appbundletest.Files(files)
			}
			pushOK(t, env, admin, version(1), "?activate=true")
			for i := 2; i <= 4; i++ {
				pushOK(t, env, admin, version(i), "")
			}
			require.Equal(t, []string{"0004", "0003", "0001 *"}, bundleVersions(t, env, admin), "the newest two and the active one")
			_, _, blobs := bundleStorage(t, env)
			// Sample files are shared: one blob each, plus per version its version.txt and archive.
			require.Len(t, blobs, len(appbundletest.Sample())+3*2)

			require.Equal(t, http.StatusOK, switchBundle(env, admin, "0004").Status)
			pushOK(t, env, admin, version(5), "")
			require.Equal(t, []string{"0005", "0004 *"}, bundleVersions(t, env, admin))
			_, _, blobs = bundleStorage(t, env)
			require.Len(t, blobs, len(appbundletest.Sample())+2*2, "files only removed versions used are gone")
			_, got := formulus2025Download(t, env, admin)
			require.Equal(t, "version 4", got["app/version.txt"])
		})
	}
}

func TestAppBundleConcurrentPushesGetDistinctVersions(t *testing.T) {
	t.Parallel()
	for _, backend := range blobstoretest.Backends(t) {
		t.Run(backend.Name, func(t *testing.T) {
			t.Parallel()
			pool := dbtest.NewDB(t)
			keep := func(o *server.Options) { o.MaxVersionsKept = 3 }
			envs := []*servertest.Env{servertest.NewWithBlobs(t, pool, backend.URL, keep), servertest.NewWithBlobs(t, pool, backend.URL, keep)}
			admin := envs[0].AdminToken()
			const pushes = 8
			versions := make([]string, pushes)
			var wg sync.WaitGroup
			for i := range pushes {
				wg.Go(func() {
					files := appbundletest.Sample()
					files["app/marker.txt"] = fmt.Sprintf("push %d", i)
					res := pushBundle(t, envs[i%2], admin, appbundletest.Files(files), "")
					if res.Status == http.StatusOK {
						var out api.AppBundlePushResponse
						res.JSON(t, &out)
						versions[i] = *out.Version
					}
				})
			}
			wg.Wait()
			slices.Sort(versions)
			require.Equal(t, []string{"0001", "0002", "0003", "0004", "0005", "0006", "0007", "0008"}, versions)

			// Retention ran concurrently with the pushes: every kept version is complete.
			require.Equal(t, []string{"0008", "0007", "0006"}, bundleVersions(t, envs[1], admin))
			rows, err := pool.Query(context.Background(), "SELECT sha256 FROM app_bundle_files UNION SELECT zip_sha256 FROM app_bundle_versions")
			require.NoError(t, err)
			var refs int
			for rows.Next() {
				var sum []byte
				require.NoError(t, rows.Scan(&sum))
				ok, err := envs[0].Blobs.Exists(context.Background(), fmt.Sprintf("appbundle/sha256/%x", sum))
				require.NoError(t, err)
				require.True(t, ok, "blob %x of a kept version exists", sum)
				refs++
			}
			require.NoError(t, rows.Err())
			_, _, blobs := bundleStorage(t, envs[0])
			require.Len(t, blobs, refs, "and nothing else is left")
		})
	}
}

func TestAppBundleChangesDefaultsAndRefusals(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	changes := func(query string) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/changes" + query, Token: admin})
	}
	requireSyncProblem(t, changes(""), http.StatusNotFound, "not_found")
	for i := 1; i <= 3; i++ {
		files := appbundletest.Sample()
		files[fmt.Sprintf("app/v%d.txt", i)] = "x"
		pushOK(t, env, admin, appbundletest.Files(files), "")
	}
	compared := func(query string) (string, string, []string) {
		t.Helper()
		res := changes(query)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		var c api.ChangeLog
		res.JSON(t, &c)
		require.Equal(t, *c.CompareVersionA, *c.CurrentVersion)
		var added []string
		for _, f := range *c.Added {
			added = append(added, f.Path)
		}
		return *c.CompareVersionA, *c.CompareVersionB, added
	}
	// Nothing active: from the oldest stored version to the next.
	a, b, added := compared("")
	require.Equal(t, []string{"0001", "0002"}, []string{a, b})
	require.Equal(t, []string{"app/v2.txt"}, added)
	require.Equal(t, http.StatusOK, switchBundle(env, admin, "0002").Status)
	a, b, _ = compared("")
	require.Equal(t, []string{"0002", "0003"}, []string{a, b}, "from the active version to the next")
	a, b, _ = compared("?current=0003")
	require.Equal(t, []string{"0003", "0003"}, []string{a, b}, "the newest compared with itself")
	a, b, _ = compared("?current=0001&preview=true")
	require.Equal(t, []string{"0001", "0003"}, []string{a, b})
	a, b, added = compared("?current=0003&target=0001")
	require.Equal(t, []string{"0003", "0001"}, []string{a, b}, "target is honoured, backwards too")
	require.Equal(t, []string{"app/v1.txt"}, added)
	a, b, _ = compared("?target=1")
	require.Equal(t, []string{"0002", "0001"}, []string{a, b}, "the CLI's one-argument form compares the active version with it")

	requireSyncProblem(t, changes("?current=0009"), http.StatusNotFound, "not_found")
	requireSyncProblem(t, changes("?target=..%2Fx"), http.StatusBadRequest, "validation_failed")
}

func TestListFormsCountsObservations(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	reader := env.CreateUser("analyst", "read-only")
	list := func(header map[string]string) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/v1/data/forms", Token: reader, NoVersion: true, Header: header})
	}
	res := list(nil)
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var out api.FormList
	res.JSON(t, &out)
	require.Nil(t, out.Version)
	require.Empty(t, out.Forms)

	pushOK(t, env, admin, appbundletest.Files(appbundletest.Sample()), "?activate=true")
	dev := newSyncDevice(t, env, env.CreateUser("worker", "read-write"), "phone-1")
	person := func(id string, deleted bool) string {
		return fmt.Sprintf(`{"observation_id":%q,"form_type":"person","form_version":"1","data":{"name":"A"},`+
			`"created_at":"2025-12-01T10:00:00Z","updated_at":"2025-12-01T10:00:00Z","deleted":%t}`, id, deleted)
	}
	dev.push(person("p1", false), person("p2", false), person("p3", true),
		syncObservation("h1", "2025-12-01T10:00:00Z", `{}`), strings.Replace(person("x1", false), `"person"`, `"unbundled"`, 1))

	res = list(nil)
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	res.JSON(t, &out)
	require.Equal(t, "0001", *out.Version)
	require.Len(t, out.Forms, 2)
	require.Equal(t, "household", out.Forms[0].Name)
	require.Equal(t, int64(1), out.Forms[0].ObservationCount)
	p := out.Forms[1]
	require.Equal(t, "person", p.Name)
	require.Equal(t, int64(2), p.ObservationCount, "deleted observations are not counted")
	require.Len(t, p.SchemaHash, 64)
	require.Equal(t, api.FormField{Name: "core_id", Type: "string", Required: true, Core: true}, p.Fields[1])
	require.Equal(t, "age", p.Fields[0].Name)
	require.EqualValues(t, 30, p.Fields[0].Default)

	require.Equal(t, http.StatusOK, list(map[string]string{"X-Ode-Version": "1.2.0"}).Status)
	require.Equal(t, http.StatusUpgradeRequired, list(map[string]string{"X-Ode-Version": "2.0.0"}).Status, "a version that is sent is checked")
}

func TestAppBundleManifestRecordsPresenceAndSurvivesReset(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	pushOK(t, env, admin, appbundletest.Files(appbundletest.Sample()), "?activate=true")
	token := env.CreateUser("ana", "read-only")
	res := getManifest(env, token, map[string]string{"X-Ode-Client-Id": "tablet-7"})
	require.Equal(t, http.StatusOK, res.Status)
	require.Eventually(t, func() bool {
		c := presenceOf(t, env, admin, "ana", "tablet-7")
		return c != nil && c.AppBundleVersion != nil && *c.AppBundleVersion == "0001"
	}, 10*time.Second, 100*time.Millisecond)

	// The repository reset erases observations, not app bundles (as upstream).
	res = resetRepository(env, admin, map[string]string{"confirm": "RESET_REPOSITORY"})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	require.Equal(t, []string{"0001 *"}, bundleVersions(t, env, admin))
	require.Equal(t, http.StatusOK, getManifest(env, token, nil).Status)
}

func TestAppBundlePushOverLimitWithoutContentLength(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) { o.BundleLimits = appbundle.Limits{MaxUploadBytes: 1 << 20} })
	body, contentType := multipartBundle(t, "bundle", noise(3<<20))
	// A chunked body announces no length: the limit is enforced as it is read.
	req, err := http.NewRequest(http.MethodPost, env.HTTP.URL+"/api/app-bundle/push", io.MultiReader(bytes.NewReader(body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Ode-Version", servertest.Version)
	req.Header.Set("Authorization", "Bearer "+env.AdminToken())
	res, err := env.HTTP.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
	versions, _, blobs := bundleStorage(t, env)
	require.Zero(t, versions)
	require.Empty(t, blobs)
}
