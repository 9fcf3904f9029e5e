package server_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server"
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
			test(t, servertest.NewWithBlobs(t, db.NewTestDB(t), b.URL, opts...))
		})
	}
}

// multipartBody builds an upload body as the apps send it: one part per field, each
// holding data, with the part's content type when one is given.
func multipartBody(t *testing.T, parts ...formPart) ([]byte, string) {
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
