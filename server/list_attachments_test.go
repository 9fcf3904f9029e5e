package server_test

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/servertest"
)

func listAttachments(t *testing.T, env *servertest.Env, token string, query url.Values) api.AttachmentList {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments?" + query.Encode(), Token: token})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	var out api.AttachmentList
	res.JSON(t, &out)
	return out
}

func attachmentIDs(l api.AttachmentList) []string {
	ids := make([]string, len(l.Attachments))
	for i, a := range l.Attachments {
		ids[i] = a.AttachmentId
	}
	return ids
}

func TestListAttachmentsFiltersAndPages(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	writer := env.CreateUser("collector", "read-write")
	reader := env.CreateUser("viewer", "read-only")
	for _, a := range []struct{ id, contentType string }{
		{"visit-1.jpg", "image/jpeg"}, {"visit-1.m4a", "audio/mp4"}, {"visit-2.png", "image/png"}, {"gone.jpg", "image/jpeg"},
	} {
		res := upload(t, env, writer, "/api/attachments/"+a.id, []byte("bytes of "+a.id), a.contentType)
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	}
	res := env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/attachments/gone.jpg", Token: env.AdminToken()})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)

	all := listAttachments(t, env, reader, nil)
	require.Equal(t, []string{"visit-2.png", "visit-1.m4a", "visit-1.jpg"}, attachmentIDs(all), "newest first, deleted ones left out")
	first := all.Attachments[0]
	require.Equal(t, "image/png", first.ContentType)
	require.EqualValues(t, len("bytes of visit-2.png"), first.Size)
	require.Equal(t, "collector", first.UploadedBy)
	require.Nil(t, first.OriginalSize, "no processed copy")
	require.False(t, all.HasMore)

	require.Equal(t, []string{"visit-2.png", "visit-1.jpg"}, attachmentIDs(listAttachments(t, env, reader, url.Values{"content_type": {"image/"}})))
	require.Equal(t, []string{"visit-1.m4a", "visit-1.jpg"}, attachmentIDs(listAttachments(t, env, reader, url.Values{"contains": {"visit-1"}})))
	require.Empty(t, listAttachments(t, env, reader, url.Values{"contains": {"%"}}).Attachments, "the id filter is text, not a pattern")

	var seen []string
	query := url.Values{"limit": {"2"}}
	for range 3 {
		page := listAttachments(t, env, reader, query)
		seen = append(seen, attachmentIDs(page)...)
		if !page.HasMore {
			break
		}
		query.Set("before_version", fmt.Sprint(*page.NextBeforeVersion))
	}
	require.Equal(t, []string{"visit-2.png", "visit-1.m4a", "visit-1.jpg"}, seen)

	for _, q := range []string{"limit=0", "limit=501", "before_version=0"} {
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments?" + q, Token: reader})
		require.Equal(t, http.StatusBadRequest, res.Status, q)
	}
	require.Equal(t, http.StatusUnauthorized, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/attachments"}).Status)
}
