package server_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/attachments"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/blobstore/blobstoretest"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// forEachBackend runs test against a fresh server on each blob backend (local directory
// and S3-compatible), so every attachment behaviour is proven on both.
func forEachBackend(t *testing.T, test func(t *testing.T, env *servertest.Env), opts ...func(*server.Options)) {
	t.Helper()
	for _, b := range blobstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			test(t, servertest.NewWithBlobs(t, dbtest.NewDB(t), b.URL, opts...))
		})
	}
}

// multipartBody builds an upload body as the apps send it: one part per field, each
// holding data, with the part's content type when one is given.
func multipartBody(t testing.TB, parts ...formPart) ([]byte, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for _, p := range parts {
		h := textproto.MIMEHeader{}
		h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, p.field, p.filename))
		if p.contentType != "" {
			h.Set("Content-Type", p.contentType)
		}
		pw, err := w.CreatePart(h)
		require.NoError(t, err)
		_, err = pw.Write(p.data)
		require.NoError(t, err)
	}
	require.NoError(t, w.Close())
	return b.Bytes(), w.FormDataContentType()
}

type formPart struct {
	field, filename, contentType string
	data                         []byte
}

// upload PUTs data as the multipart field "file" at path (/api/attachments/<id> or the
// root path of older apps).
func upload(t *testing.T, env *servertest.Env, token, path string, data []byte, contentType string, header ...string) *servertest.Response {
	t.Helper()
	body, ct := multipartBody(t, formPart{field: "file", filename: "photo.jpg", contentType: contentType, data: data})
	h := map[string]string{"Content-Type": ct}
	for i := 0; i+1 < len(header); i += 2 {
		h[header[i]] = header[i+1]
	}
	return env.Do(servertest.Request{Method: http.MethodPut, Path: path, Token: token, Body: body, Header: h, NoVersion: !strings.HasPrefix(path, "/api/")})
}

func manifest(t *testing.T, env *servertest.Env, token, path string, since int64) api.AttachmentManifestResponse {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: path, Token: token,
		Body: map[string]any{"client_id": "formulus-b", "since_version": since}, NoVersion: !strings.HasPrefix(path, "/api/")})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	require.Contains(t, string(res.Body), `"operations":[`, "operations is an array, never null")
	var m api.AttachmentManifestResponse
	res.JSON(t, &m)
	require.Equal(t, strconv.FormatInt(m.RepositoryGeneration, 10), res.Header.Get("X-Repository-Generation"))
	return m
}

// follow requests a download_url exactly as given, as the 2025 app does (sending
// x-ode-version only under /api, like the apps that call /api).
func follow(t *testing.T, env *servertest.Env, token, downloadURL string, header map[string]string) *servertest.Response {
	t.Helper()
	u, err := url.Parse(downloadURL)
	require.NoError(t, err)
	require.Equal(t, env.HTTP.URL, u.Scheme+"://"+u.Host, "download_url points at the server the client reached")
	return env.Do(servertest.Request{Method: http.MethodGet, Path: u.RequestURI(), Token: token, Header: header, NoVersion: !strings.HasPrefix(u.Path, "/api/")})
}

// photo returns a real JPEG of the given size.
func photo(t *testing.T, w, h int, seed uint8) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.RGBA{uint8(x*7) + seed, uint8(y*3) ^ seed, uint8(x*y) + seed, 255})
		}
	}
	var b bytes.Buffer
	require.NoError(t, jpeg.Encode(&b, img, &jpeg.Options{Quality: 95}))
	return b.Bytes()
}

func etagOf(data []byte) string {
	sum := sha256.Sum256(data)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// blobKeys lists what the bucket holds under attachments/.
func blobKeys(t *testing.T, env *servertest.Env) []string {
	t.Helper()
	var keys []string
	require.NoError(t, env.Blobs.List(context.Background(), "attachments/", func(o blobstore.Object) error {
		keys = append(keys, o.Key)
		return nil
	}))
	return keys
}

func TestAttachmentsTravelFromOneDeviceToAnother(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		a := newSyncDevice(t, env, env.CreateUser("device-a", "read-write"), "formulus-a")
		bToken := env.CreateUser("device-b", "read-only")
		b := newSyncDevice(t, env, bToken, "formulus-b")

		// Device A takes a photo, uploads it, then pushes the observation referring to it.
		id := "0b6c3a7e-1f2d-4c5b-8a9e-123456789abc.jpg"
		pic := photo(t, 320, 240, 1)
		res := upload(t, env, a.token, "/api/attachments/"+id, pic, "image/jpeg")
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.JSONEq(t, `{"status":"success"}`, string(res.Body))
		a.push(syncObservation("obs_1_1", "2025-12-01T10:00:00.000Z", fmt.Sprintf(`{"photo":{"id":%q,"filename":%q}}`, id[:36], id)))

		// Device B pulls the observation and finds the file it needs in the manifest.
		b.sync(0)
		require.Contains(t, string(b.data["obs_1_1"].Data), id)
		m := manifest(t, env, bToken, "/api/attachments/manifest", 0)
		require.Len(t, m.Operations, 1)
		op := m.Operations[0]
		require.Equal(t, api.AttachmentOperationOperationDownload, op.Operation)
		require.Equal(t, id, op.AttachmentId)
		require.Equal(t, env.HTTP.URL+"/api/attachments/"+id, *op.DownloadUrl)
		require.Equal(t, int64(len(pic)), *op.Size)
		require.Equal(t, "image/jpeg", *op.ContentType)
		require.Equal(t, int64(len(pic)), *m.TotalDownloadSize)
		require.Equal(t, 1, *m.OperationCount.Download)
		require.Equal(t, 0, *m.OperationCount.Delete)
		require.False(t, *m.HasMore)
		require.Less(t, *op.Version, m.CurrentVersion, "the upload came before the push, on the same counter")

		// The download breaks off halfway; B resumes it with a Range request.
		full := follow(t, env, bToken, *op.DownloadUrl, nil)
		require.Equal(t, http.StatusOK, full.Status)
		require.Equal(t, pic, full.Body)
		require.Equal(t, strconv.Itoa(len(pic)), full.Header.Get("Content-Length"))
		require.Equal(t, "image/jpeg", full.Header.Get("Content-Type"))
		require.Equal(t, etagOf(pic), full.Header.Get("ETag"))
		require.NotEmpty(t, full.Header.Get("Last-Modified"))
		require.Equal(t, "bytes", full.Header.Get("Accept-Ranges"))
		require.Equal(t, `attachment; filename=`+id, full.Header.Get("Content-Disposition"))
		half := len(pic) / 2
		rest := follow(t, env, bToken, *op.DownloadUrl, map[string]string{"Range": fmt.Sprintf("bytes=%d-", half), "If-Range": full.Header.Get("ETag")})
		require.Equal(t, http.StatusPartialContent, rest.Status)
		require.Equal(t, fmt.Sprintf("bytes %d-%d/%d", half, len(pic)-1, len(pic)), rest.Header.Get("Content-Range"))
		require.Equal(t, pic, append(append([]byte{}, pic[:half]...), rest.Body...))

		// A retried upload is harmless; a different file under the same id is refused.
		res = upload(t, env, a.token, "/api/attachments/"+id, pic, "image/jpeg")
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		res = upload(t, env, a.token, "/api/attachments/"+id, photo(t, 320, 240, 2), "image/jpeg")
		requireSyncProblem(t, res, http.StatusConflict, "conflict")
		again := manifest(t, env, bToken, "/api/attachments/manifest", m.CurrentVersion)
		require.Empty(t, again.Operations, "neither the retry nor the refused upload is an operation")
		require.Equal(t, m.CurrentVersion, again.CurrentVersion)
		require.Equal(t, pic, follow(t, env, bToken, *op.DownloadUrl, nil).Body, "the stored file is unchanged")
		require.Len(t, blobKeys(t, env), 1, "neither the retry nor the refused upload left a file behind")
	})
}

func TestAttachmentsAtTheRootPathsOfOlderApps(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		const id = "9a1f0c2e-7d3b-4e8a-b6c5-0123456789ab.jpg"
		pic := photo(t, 64, 48, 3)
		// The 2025 app and the CLI call root paths without x-ode-version; the CLI needs
		// exactly 200 with a JSON body.
		res := upload(t, env, token, "/attachments/"+id, pic, "")
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		require.Equal(t, "application/json", res.Header.Get("Content-Type"))

		m := manifest(t, env, token, "/attachments/manifest", 0)
		require.Len(t, m.Operations, 1)
		require.Equal(t, env.HTTP.URL+"/attachments/"+id, *m.Operations[0].DownloadUrl,
			"a client that called the root path gets a root-path link it can follow without x-ode-version")
		require.Equal(t, "image/jpeg", *m.Operations[0].ContentType, "sniffed when the part declares no type")
		got := follow(t, env, token, *m.Operations[0].DownloadUrl, nil)
		require.Equal(t, http.StatusOK, got.Status)
		require.Equal(t, pic, got.Body)

		// synk attachments exists: 200 present, 404 absent.
		head := env.Do(servertest.Request{Method: http.MethodHead, Path: "/attachments/" + id, Token: token, NoVersion: true})
		require.Equal(t, http.StatusOK, head.Status)
		head = env.Do(servertest.Request{Method: http.MethodHead, Path: "/attachments/missing.jpg", Token: token, NoVersion: true})
		require.Equal(t, http.StatusNotFound, head.Status)
		require.Empty(t, head.Body)
	})
}

func TestAttachmentLinksUsePublicURL(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/a.bin", []byte("x"), "").Status)
		m := manifest(t, env, token, "/api/attachments/manifest", 0)
		require.Equal(t, "https://sync.example.org/field/api/attachments/a.bin", *m.Operations[0].DownloadUrl)
		m = manifest(t, env, token, "/attachments/manifest", 0)
		require.Equal(t, "https://sync.example.org/field/attachments/a.bin", *m.Operations[0].DownloadUrl)
	}, func(o *server.Options) { o.PublicURL = "https://sync.example.org/field" })
}

func TestAttachmentDownloadsAnswerConditionsAndRanges(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		data := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/notes.txt", data, "text/plain").Status)
		get := func(method string, header map[string]string) *servertest.Response {
			return env.Do(servertest.Request{Method: method, Path: "/api/attachments/notes.txt", Token: token, Header: header})
		}

		head := get(http.MethodHead, nil)
		require.Equal(t, http.StatusOK, head.Status)
		require.Empty(t, head.Body)
		require.Equal(t, strconv.Itoa(len(data)), head.Header.Get("Content-Length"))
		require.Equal(t, etagOf(data), head.Header.Get("ETag"))
		require.Equal(t, "text/plain", head.Header.Get("Content-Type"))
		require.Equal(t, http.StatusOK, get(http.MethodHead, map[string]string{"Range": "bytes=0-1"}).Status, "HEAD ignores ranges")

		res := get(http.MethodGet, map[string]string{"Range": "bytes=10-19"})
		require.Equal(t, http.StatusPartialContent, res.Status)
		require.Equal(t, "abcdefghij", string(res.Body))
		require.Equal(t, "bytes 10-19/36", res.Header.Get("Content-Range"))

		res = get(http.MethodGet, map[string]string{"Range": "bytes=100-"})
		require.Equal(t, http.StatusRequestedRangeNotSatisfiable, res.Status)
		require.Equal(t, "bytes */36", res.Header.Get("Content-Range"))

		// A changed file (If-Range no longer matching) is sent whole, not as a range.
		res = get(http.MethodGet, map[string]string{"Range": "bytes=10-", "If-Range": `"stale"`})
		require.Equal(t, http.StatusOK, res.Status)
		require.Equal(t, data, res.Body)

		for _, method := range []string{http.MethodGet, http.MethodHead} {
			res = get(method, map[string]string{"If-None-Match": etagOf(data)})
			require.Equal(t, http.StatusNotModified, res.Status, method)
			require.Empty(t, res.Body)
			require.Equal(t, etagOf(data), res.Header.Get("ETag"))
			require.Equal(t, http.StatusNotModified, get(method, map[string]string{"If-Modified-Since": head.Header.Get("Last-Modified")}).Status)
			require.Equal(t, http.StatusPreconditionFailed, get(method, map[string]string{"If-Match": `"other"`}).Status)
		}
		require.Equal(t, http.StatusOK, get(http.MethodGet, map[string]string{"If-None-Match": `"other"`}).Status)

		res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/missing.txt", Token: token})
		requireSyncProblem(t, res, http.StatusNotFound, "not_found")
		res = env.Do(servertest.Request{Method: http.MethodHead, Path: "/api/attachments/missing.txt", Token: token})
		require.Equal(t, http.StatusNotFound, res.Status)
	})
}

func TestAttachmentUploadRefusesBadInput(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		for _, id := range []string{"a%2Fb.jpg", "%2E%2E", ".", "manifest", "export-zip", "a%20b", "caf%C3%A9.jpg", strings.Repeat("x", 256)} {
			// The reserved names may also be refused by the router, as methods their static
			// routes do not serve (405).
			refused := []int{http.StatusBadRequest, http.StatusMethodNotAllowed}
			res := upload(t, env, token, "/api/attachments/"+id, []byte("data"), "")
			require.Contains(t, refused, res.Status, "PUT %s: %s", id, res.Body)
			if id != "export-zip" { // GET export-zip is the export
				res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/" + id, Token: token})
				require.Contains(t, refused, res.Status, "GET %s: %s", id, res.Body)
				res = env.Do(servertest.Request{Method: http.MethodHead, Path: "/api/attachments/" + id, Token: token})
				require.Contains(t, refused, res.Status, "HEAD %s", id)
			}
		}
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/"+strings.Repeat("x", 255), []byte("data"), "").Status)
		// ids with a / inside (percent-encoded) are refused, not stored under another name
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/x%2F" + strings.Repeat("x", 253), Token: token})
		require.Equal(t, http.StatusBadRequest, res.Status)

		put := func(body []byte, contentType string) *servertest.Response {
			return env.Do(servertest.Request{Method: http.MethodPut, Path: "/api/attachments/bad.jpg", Token: token, Body: body,
				Header: map[string]string{"Content-Type": contentType}})
		}
		wrongName, ct := multipartBody(t, formPart{field: "attachment", filename: "x.jpg", data: []byte("data")})
		requireSyncProblem(t, put(wrongName, ct), http.StatusBadRequest, "")
		twoFiles, ct2 := multipartBody(t, formPart{field: "file", data: []byte("one")}, formPart{field: "file", data: []byte("two")})
		requireSyncProblem(t, put(twoFiles, ct2), http.StatusBadRequest, "")
		requireSyncProblem(t, put([]byte(`{"file":"data"}`), "application/json"), http.StatusBadRequest, "")
		requireSyncProblem(t, put(nil, "multipart/form-data"), http.StatusBadRequest, "")
		cut, ct3 := multipartBody(t, formPart{field: "file", data: []byte("a file whose closing boundary never arrives")})
		requireSyncProblem(t, put(cut[:len(cut)-10], ct3), http.StatusBadRequest, "")

		// Other fields beside the file are ignored.
		withFields, ct4 := multipartBody(t, formPart{field: "note", data: []byte("hello")}, formPart{field: "file", data: []byte("ok")}, formPart{field: "x", data: []byte("y")})
		require.Equal(t, http.StatusOK, env.Do(servertest.Request{Method: http.MethodPut, Path: "/api/attachments/fields.txt", Token: token, Body: withFields,
			Header: map[string]string{"Content-Type": ct4}}).Status)
		got := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/fields.txt", Token: token})
		require.Equal(t, "ok", string(got.Body))

		m := manifest(t, env, token, "/api/attachments/manifest", 0)
		require.Len(t, m.Operations, 2, "nothing of the refused uploads was stored")
		require.Len(t, blobKeys(t, env), 2)
	})
}

func TestAttachmentUploadSizeLimit(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/exact.bin", bytes.Repeat([]byte{7}, 4096), "").Status)
		res := upload(t, env, token, "/api/attachments/over.bin", bytes.Repeat([]byte{7}, 4097), "")
		requireSyncProblem(t, res, http.StatusRequestEntityTooLarge, "request_too_large")
		// A body announced far over the limit is refused before it is read.
		res = upload(t, env, token, "/api/attachments/huge.bin", bytes.Repeat([]byte{7}, 2<<20), "")
		requireSyncProblem(t, res, http.StatusRequestEntityTooLarge, "request_too_large")
		// The same file as a stored id is still over the limit.
		res = upload(t, env, token, "/api/attachments/exact.bin", bytes.Repeat([]byte{7}, 4097), "")
		requireSyncProblem(t, res, http.StatusRequestEntityTooLarge, "request_too_large")
		require.Len(t, blobKeys(t, env), 1)
		require.Len(t, manifest(t, env, token, "/api/attachments/manifest", 0).Operations, 1)
	}, func(o *server.Options) { o.Attachments.MaxUploadBytes = 4096 })
}

func TestAttachmentRoles(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		writer := env.CreateUser("writer", "read-write")
		reader := env.CreateUser("reader", "read-only")
		admin := env.AdminToken()
		requireSyncProblem(t, upload(t, env, reader, "/api/attachments/r.txt", []byte("x"), ""), http.StatusForbidden, "forbidden")
		requireSyncProblem(t, upload(t, env, "", "/api/attachments/r.txt", []byte("x"), ""), http.StatusUnauthorized, "")
		require.Equal(t, http.StatusOK, upload(t, env, writer, "/api/attachments/w.txt", []byte("x"), "").Status)
		require.Equal(t, http.StatusOK, upload(t, env, admin, "/api/attachments/a.txt", []byte("y"), "").Status)
		for _, token := range []string{reader, writer, admin} {
			require.Equal(t, http.StatusOK, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/w.txt", Token: token}).Status)
			require.Equal(t, http.StatusOK, env.Do(servertest.Request{Method: http.MethodHead, Path: "/api/attachments/w.txt", Token: token}).Status)
			require.Equal(t, http.StatusOK, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/export-zip", Token: token}).Status)
			manifest(t, env, token, "/api/attachments/manifest", 0)
		}
		for _, token := range []string{reader, writer} {
			res := env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/attachments/w.txt", Token: token})
			requireSyncProblem(t, res, http.StatusForbidden, "forbidden")
		}
		require.Equal(t, http.StatusOK, env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/attachments/w.txt", Token: admin}).Status)
	})
}

// unclaimedBlobs counts the uploads in progress or blobs awaiting deletion.
func unclaimedBlobs(t *testing.T, env *servertest.Env) int {
	t.Helper()
	var n int
	require.NoError(t, env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM attachment_unclaimed_blobs").Scan(&n))
	return n
}

func TestAttachmentUploadCutShortLeavesNothing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		body, ct := multipartBody(t, formPart{field: "file", data: bytes.Repeat([]byte("field photo "), 200_000)})
		conn, err := net.Dial("tcp", env.HTTP.Listener.Addr().String())
		require.NoError(t, err)
		_, err = fmt.Fprintf(conn, "PUT /api/attachments/cut.jpg HTTP/1.1\r\nHost: sync\r\nAuthorization: Bearer %s\r\nX-Ode-Version: 1.0.0\r\nContent-Type: %s\r\nContent-Length: %d\r\n\r\n",
			token, ct, len(body))
		require.NoError(t, err)
		_, err = conn.Write(body[:len(body)/2])
		require.NoError(t, err)
		require.Eventually(t, func() bool { return unclaimedBlobs(t, env) == 1 }, 10*time.Second, 10*time.Millisecond, "the upload started")
		require.NoError(t, conn.Close()) // the client goes away mid-upload

		require.Eventually(t, func() bool { return unclaimedBlobs(t, env) == 0 && len(blobKeys(t, env)) == 0 }, 10*time.Second, 10*time.Millisecond,
			"the abandoned upload leaves no file and no registration")
		require.Equal(t, http.StatusNotFound, env.Do(servertest.Request{Method: http.MethodHead, Path: "/api/attachments/cut.jpg", Token: token}).Status)
		require.Empty(t, manifest(t, env, token, "/api/attachments/manifest", 0).Operations)
		// The client retries and succeeds.
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/cut.jpg", []byte("whole"), "").Status)
	})
}

func TestAttachmentDeletesReachEveryDevice(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		writer, admin := env.CreateUser("ana", "read-write"), env.AdminToken()
		require.Equal(t, http.StatusOK, upload(t, env, writer, "/api/attachments/a.jpg", photo(t, 16, 16, 1), "").Status)
		require.Equal(t, http.StatusOK, upload(t, env, writer, "/api/attachments/b.jpg", photo(t, 16, 16, 2), "").Status)
		before := manifest(t, env, writer, "/api/attachments/manifest", 0)

		res := env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/attachments/a.jpg", Token: admin})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
		var deleted api.AttachmentDeleted
		res.JSON(t, &deleted)
		require.Equal(t, "a.jpg", deleted.AttachmentId)
		require.Greater(t, deleted.Version, before.CurrentVersion)

		m := manifest(t, env, writer, "/api/attachments/manifest", before.CurrentVersion)
		require.Len(t, m.Operations, 1)
		op := m.Operations[0]
		require.Equal(t, api.AttachmentOperationOperationDelete, op.Operation)
		require.Equal(t, "a.jpg", op.AttachmentId)
		require.Equal(t, deleted.Version, *op.Version)
		require.Nil(t, op.DownloadUrl)
		require.Equal(t, 1, *m.OperationCount.Delete)
		require.Equal(t, int64(0), *m.TotalDownloadSize)
		require.Equal(t, deleted.Version, m.CurrentVersion)

		// A device that never synced gets only the latest operation of each attachment.
		all := manifest(t, env, writer, "/api/attachments/manifest", 0)
		require.Len(t, all.Operations, 2)
		require.Equal(t, "b.jpg", all.Operations[0].AttachmentId)
		require.Equal(t, api.AttachmentOperationOperationDownload, all.Operations[0].Operation)
		require.Equal(t, "a.jpg", all.Operations[1].AttachmentId)
		require.Equal(t, api.AttachmentOperationOperationDelete, all.Operations[1].Operation)

		requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/a.jpg", Token: writer}), http.StatusNotFound, "not_found")
		requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/attachments/a.jpg", Token: admin}), http.StatusNotFound, "not_found")
		requireSyncProblem(t, env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/attachments/never.jpg", Token: admin}), http.StatusNotFound, "not_found")
		require.Eventually(t, func() bool { return len(blobKeys(t, env)) == 1 && unclaimedBlobs(t, env) == 0 }, 10*time.Second, 10*time.Millisecond,
			"the deleted file is removed from storage")

		// The id can be used again, even for other bytes.
		require.Equal(t, http.StatusOK, upload(t, env, writer, "/api/attachments/a.jpg", photo(t, 16, 16, 9), "").Status)
		m = manifest(t, env, writer, "/api/attachments/manifest", m.CurrentVersion)
		require.Len(t, m.Operations, 1)
		require.Equal(t, api.AttachmentOperationOperationDownload, m.Operations[0].Operation)
	})
}

func TestAttachmentManifestPagesNeverSkipAnOperation(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		dev := newSyncDevice(t, env, token, "formulus-a")
		want := map[string]bool{}
		add := func(i int) {
			id := fmt.Sprintf("file-%02d.txt", i)
			require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/"+id, []byte(id), "").Status)
			want[id] = true
		}
		for i := range 7 {
			add(i)
			if i == 3 {
				dev.push(syncObservation("obs_1_1", "2025-12-01T10:00:00.000Z", `{}`)) // versions interleave
			}
		}
		got := map[string]int{}
		var cursor int64
		for pages := 0; ; pages++ {
			require.Less(t, pages, 10)
			m := manifest(t, env, token, "/api/attachments/manifest", cursor)
			require.LessOrEqual(t, len(m.Operations), 3)
			prev := cursor
			for _, op := range m.Operations {
				require.Greater(t, *op.Version, prev, "operations follow since_version in version order")
				prev = *op.Version
				got[op.AttachmentId]++
			}
			if pages == 0 {
				add(7) // uploads made while a device pages through are received too
			}
			if !*m.HasMore {
				require.Equal(t, dev.pullPage(0, 0, "").CurrentVersion, m.CurrentVersion, "the last page reports the server's version")
				break
			}
			require.Len(t, m.Operations, 3)
			require.Equal(t, prev, m.CurrentVersion, "a cut manifest reports its last operation's version")
			cursor = m.CurrentVersion
		}
		require.Len(t, got, len(want))
		for id := range want {
			require.Equal(t, 1, got[id], id)
		}
	}, func(o *server.Options) { o.Attachments.ManifestPageSize = 3 })
}

func TestAttachmentsFollowRepositoryGenerations(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token, admin := env.CreateUser("ana", "read-write"), env.AdminToken()
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/x.txt", []byte("x"), "", "X-Repository-Generation", "1").Status)
		requireResetRequired(t, upload(t, env, token, "/api/attachments/y.txt", []byte("y"), "", "X-Repository-Generation", "2"), "1")
		manifestWith := func(header map[string]string, body map[string]any) *servertest.Response {
			body["client_id"], body["since_version"] = "formulus-a", 0
			return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/attachments/manifest", Token: token, Body: body, Header: header})
		}
		requireResetRequired(t, manifestWith(map[string]string{"X-Repository-Generation": "2"}, map[string]any{}), "1")
		requireResetRequired(t, manifestWith(nil, map[string]any{"repository_generation": 2}), "1")
		require.Equal(t, http.StatusOK, manifestWith(map[string]string{"X-Repository-Generation": "1"}, map[string]any{"repository_generation": 2}).Status, "the header wins")

		require.Equal(t, http.StatusOK, resetRepository(env, admin, map[string]string{"confirm": "RESET_REPOSITORY"}).Status)
		requireResetRequired(t, manifestWith(map[string]string{"X-Repository-Generation": "1"}, map[string]any{}), "2")
		m := manifest(t, env, token, "/api/attachments/manifest", 0)
		require.Empty(t, m.Operations, "the reset erased the attachments")
		require.Equal(t, int64(2), m.RepositoryGeneration)
		require.Equal(t, http.StatusNotFound, env.Do(servertest.Request{Method: http.MethodHead, Path: "/api/attachments/x.txt", Token: token}).Status)
		require.Eventually(t, func() bool { return len(blobKeys(t, env)) == 0 && unclaimedBlobs(t, env) == 0 }, 10*time.Second, 10*time.Millisecond,
			"the reset removed the files from storage")
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/x.txt", []byte("new"), "", "X-Repository-Generation", "2").Status)
	})
}

func TestAttachmentExportIsAZipOfTheStoredFiles(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token, admin := env.CreateUser("ana", "read-write"), env.AdminToken()
		files := map[string][]byte{"c.txt": bytes.Repeat([]byte("text compresses "), 100), "a.jpg": photo(t, 40, 30, 5), "b.bin": []byte("deleted")}
		for id, data := range files {
			require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/"+id, data, "").Status)
		}
		require.Equal(t, http.StatusOK, env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/attachments/b.bin", Token: admin}).Status)

		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/export-zip", Token: env.CreateUser("viewer", "read-only")})
		require.Equal(t, http.StatusOK, res.Status)
		require.Equal(t, "application/zip", res.Header.Get("Content-Type"))
		require.Equal(t, "attachment; filename=attachments_export.zip", res.Header.Get("Content-Disposition"))
		zr, err := zip.NewReader(bytes.NewReader(res.Body), int64(len(res.Body)))
		require.NoError(t, err)
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
			r, err := f.Open()
			require.NoError(t, err)
			got, err := io.ReadAll(r)
			require.NoError(t, err)
			require.Equal(t, files[f.Name], got, f.Name)
		}
		require.Equal(t, []string{"a.jpg", "c.txt"}, names)
		require.Equal(t, zip.Store, zr.File[0].Method, "photos are stored as they are")
		require.Equal(t, zip.Deflate, zr.File[1].Method)
	})
}

// rawUpload uploads without the test harness, for use from several goroutines.
func rawUpload(env *servertest.Env, token, id string, body []byte, contentType string) (int, error) {
	req, err := http.NewRequest(http.MethodPut, env.HTTP.URL+"/api/attachments/"+id, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Ode-Version", servertest.Version)
	req.Header.Set("Content-Type", contentType)
	res, err := env.HTTP.Client().Do(req)
	if err != nil {
		return 0, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, res.Body.Close()
}

func TestAttachmentConcurrentUploadsOfOneID(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		contents := [][]byte{bytes.Repeat([]byte("first "), 50_000), bytes.Repeat([]byte("second "), 50_000)}
		run := func(id string, variants int) []int {
			statuses := make([]int, 8)
			var wg sync.WaitGroup
			for i := range statuses {
				body, ct := multipartBody(t, formPart{field: "file", data: contents[i%variants]})
				wg.Go(func() {
					status, err := rawUpload(env, token, id, body, ct)
					if err != nil {
						status = -1
					}
					statuses[i] = status
				})
			}
			wg.Wait()
			return statuses
		}

		for _, status := range run("same.txt", 1) {
			require.Equal(t, http.StatusOK, status, "every retry of the same bytes succeeds")
		}
		statuses := run("differ.txt", 2)
		stored := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments/differ.txt", Token: token}).Body
		for i, status := range statuses {
			if bytes.Equal(contents[i%2], stored) {
				require.Equal(t, http.StatusOK, status)
			} else {
				require.Equal(t, http.StatusConflict, status)
			}
		}
		m := manifest(t, env, token, "/api/attachments/manifest", 0)
		require.Len(t, m.Operations, 2, "one operation per stored attachment")
		require.Len(t, blobKeys(t, env), 2, "the losers' files were removed")
		require.Zero(t, unclaimedBlobs(t, env))
	})
}

// withOrientation inserts an EXIF block saying how the camera was held (6: the picture
// must be turned 90 degrees clockwise to be upright) after a JPEG's start marker.
func withOrientation(jpg []byte, orientation byte) []byte {
	tiff := []byte{'M', 'M', 0, 42, 0, 0, 0, 8, // big-endian TIFF header, IFD at 8
		0, 1, // one entry
		0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0, // Orientation, SHORT, 1 value
		0, 0, 0, 0} // no next IFD
	payload := append([]byte("Exif\x00\x00"), tiff...)
	app1 := append([]byte{0xFF, 0xE1, byte((len(payload) + 2) >> 8), byte(len(payload) + 2)}, payload...)
	return append(append(append([]byte{}, jpg[:2]...), app1...), jpg[2:]...)
}

// pngClaiming is a PNG whose header announces w x h pixels, followed by no usable data:
// what a decompression bomb looks like to a decoder before it allocates.
func pngClaiming(w, h uint32) []byte {
	chunk := func(typ string, data []byte) []byte {
		var b bytes.Buffer
		_ = binary.Write(&b, binary.BigEndian, uint32(len(data)))
		b.WriteString(typ)
		b.Write(data)
		_ = binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(append([]byte(typ), data...)))
		return b.Bytes()
	}
	ihdr := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, w), h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	out := append([]byte("\x89PNG\r\n\x1a\n"), chunk("IHDR", ihdr)...)
	out = append(out, chunk("IDAT", bytes.Repeat([]byte{0}, 64))...)
	return append(out, chunk("IEND", nil)...)
}

func TestAttachmentImageProcessing(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		get := func(path string) *servertest.Response {
			res := env.Do(servertest.Request{Method: http.MethodGet, Path: path, Token: token})
			require.Equal(t, http.StatusOK, res.Status, "%s: %s", path, res.Body)
			return res
		}
		dims := func(b []byte) (int, int, string) {
			cfg, format, err := image.DecodeConfig(bytes.NewReader(b))
			require.NoError(t, err)
			return cfg.Width, cfg.Height, format
		}

		pic := photo(t, 320, 240, 4)
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/p.jpg", pic, "image/jpeg").Status)
		served := get("/api/attachments/p.jpg")
		w, h, format := dims(served.Body)
		require.Equal(t, []any{64, 48, "jpeg"}, []any{w, h, format}, "scaled down to fit 64x64, same format")
		require.Equal(t, etagOf(served.Body), served.Header.Get("ETag"))
		m := manifest(t, env, token, "/api/attachments/manifest", 0)
		require.Equal(t, int64(len(served.Body)), *m.Operations[0].Size, "the manifest describes the copy served")
		for _, flag := range []string{"true", "1", "YES"} {
			orig := get("/api/attachments/p.jpg?original=" + flag)
			require.Equal(t, pic, orig.Body)
			require.Equal(t, etagOf(pic), orig.Header.Get("ETag"))
		}
		require.Equal(t, served.Body, get("/api/attachments/p.jpg?original=false").Body)
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/p.jpg", pic, "image/jpeg").Status,
			"a retry is compared with the upload, not the processed copy")

		// A photo taken with the phone turned is made upright.
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/turned.jpg", withOrientation(pic, 6), "image/jpeg").Status)
		w, h, _ = dims(get("/api/attachments/turned.jpg").Body)
		require.Equal(t, []int{48, 64}, []int{w, h})

		var pngBuf bytes.Buffer
		img := image.NewNRGBA(image.Rect(0, 0, 200, 100))
		rng := rand.New(rand.NewPCG(1, 2)) // noise: the upload does not compress well
		for i := range img.Pix {
			img.Pix[i] = uint8(rng.IntN(256))
		}
		require.NoError(t, png.Encode(&pngBuf, img))
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/p.png", pngBuf.Bytes(), "").Status)
		w, h, format = dims(get("/api/attachments/p.png").Body)
		require.Equal(t, []any{64, 32, "png"}, []any{w, h, format})

		// Images too large to decode, and files that are not what they claim, are kept as sent.
		bomb := pngClaiming(60000, 60000)
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/bomb.png", bomb, "image/png").Status)
		require.Equal(t, bomb, get("/api/attachments/bomb.png").Body)
		fake := []byte("not really a jpeg")
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/fake.jpg", fake, "image/jpeg").Status)
		require.Equal(t, fake, get("/api/attachments/fake.jpg").Body)
		// A small, strongly compressed image that re-encoding would only make larger is
		// served as uploaded.
		var small bytes.Buffer
		require.NoError(t, jpeg.Encode(&small, image.NewGray(image.Rect(0, 0, 16, 16)), &jpeg.Options{Quality: 20}))
		require.Equal(t, http.StatusOK, upload(t, env, token, "/api/attachments/small.jpg", small.Bytes(), "image/jpeg").Status)
		require.True(t, bytes.Equal(small.Bytes(), get("/api/attachments/small.jpg").Body))

		// The export holds what the devices sent.
		zr := get("/api/attachments/export-zip").Body
		r, err := zip.NewReader(bytes.NewReader(zr), int64(len(zr)))
		require.NoError(t, err)
		f, err := r.Open("p.jpg")
		require.NoError(t, err)
		exported, err := io.ReadAll(f)
		require.NoError(t, err)
		require.Equal(t, pic, exported)
	}, func(o *server.Options) {
		o.Attachments.Images = attachments.ImageOptions{Enabled: true, MaxWidth: 64, MaxHeight: 64}
	})
}

// rawManifest fetches one manifest page without the test harness, for use from goroutines.
func rawManifest(env *servertest.Env, token string, since int64) (api.AttachmentManifestResponse, error) {
	var m api.AttachmentManifestResponse
	body := fmt.Sprintf(`{"client_id":"reader","since_version":%d}`, since)
	req, err := http.NewRequest(http.MethodPost, env.HTTP.URL+"/api/attachments/manifest", strings.NewReader(body))
	if err != nil {
		return m, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("X-Ode-Version", servertest.Version)
	req.Header.Set("Content-Type", "application/json")
	res, err := env.HTTP.Client().Do(req)
	if err != nil {
		return m, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return m, fmt.Errorf("manifest: HTTP %d", res.StatusCode)
	}
	return m, json.NewDecoder(res.Body).Decode(&m)
}

// Devices that follow the manifest while others upload and push must end up with every
// attachment: versions become visible in the order they are handed out, so a cursor never
// passes an operation that is still to commit.
func TestAttachmentManifestReadersMissNothingUnderConcurrentWrites(t *testing.T) {
	t.Parallel()
	forEachBackend(t, func(t *testing.T, env *servertest.Env) {
		token := env.CreateUser("ana", "read-write")
		const uploaders, perUploader = 3, 12
		done := make(chan struct{})
		var writers, readers sync.WaitGroup
		errs := make(chan error, 16)
		for u := range uploaders {
			writers.Go(func() {
				for i := range perUploader {
					body, ct := multipartBody(t, formPart{field: "file", data: fmt.Appendf(nil, "file %d of uploader %d", i, u)})
					status, err := rawUpload(env, token, fmt.Sprintf("u%d-%02d.txt", u, i), body, ct)
					if err == nil && status != http.StatusOK {
						err = fmt.Errorf("upload: HTTP %d", status)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
		pusher := newSyncDevice(t, env, token, "formulus-p")
		writers.Go(func() { // observation pushes take versions from the same counter
			for i := range 10 {
				body := fmt.Sprintf(`{"transmission_id":%q,"client_id":"formulus-p","records":[%s]}`, newTransmissionID(),
					syncObservation(fmt.Sprintf("obs_%d", i), "2025-12-01T10:00:00.000Z", `{}`))
				req, _ := http.NewRequest(http.MethodPost, env.HTTP.URL+"/api/sync/push", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+pusher.token)
				req.Header.Set("X-Ode-Version", servertest.Version)
				req.Header.Set("Content-Type", "application/json")
				res, err := env.HTTP.Client().Do(req)
				if err != nil {
					errs <- err
					return
				}
				_ = res.Body.Close()
			}
		})
		seen := make([]map[string]bool, 2)
		for r := range seen {
			seen[r] = map[string]bool{}
			readers.Go(func() {
				var cursor int64
				follow := func() error {
					for {
						m, err := rawManifest(env, token, cursor)
						if err != nil {
							return err
						}
						for _, op := range m.Operations {
							seen[r][op.AttachmentId] = true
						}
						cursor = m.CurrentVersion
						if !*m.HasMore {
							return nil
						}
					}
				}
				for {
					select {
					case <-done:
						if err := follow(); err != nil { // a last round after every write committed
							errs <- err
						}
						return
					default:
					}
					if err := follow(); err != nil {
						errs <- err
						return
					}
				}
			})
		}
		writers.Wait()
		close(done)
		readers.Wait()
		close(errs)
		for err := range errs {
			require.NoError(t, err)
		}
		for r := range seen {
			require.Len(t, seen[r], uploaders*perUploader, "reader %d missed an attachment", r)
		}
	}, func(o *server.Options) { o.Attachments.ManifestPageSize = 5 })
}
