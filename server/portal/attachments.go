package portal

import (
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

type attachmentsData struct {
	List     api.AttachmentList
	Contains string
	Kind     string
	Newer    string
	Older    string
}

// attachmentKinds map the page's kind filter onto content type prefixes.
var attachmentKinds = map[string]string{"image": "image/", "audio": "audio/", "video": "video/"}

// attachments browses the stored attachments, newest first, with image previews.
func (p *Portal) attachments(c echo.Context, s *session) error {
	d := attachmentsData{Contains: strings.TrimSpace(c.QueryParam("contains")), Kind: c.QueryParam("kind")}
	q := url.Values{"limit": {"48"}}
	if d.Contains != "" {
		q.Set("contains", d.Contains)
	}
	if prefix, ok := attachmentKinds[d.Kind]; ok {
		q.Set("content_type", prefix)
	}
	before := c.QueryParam("before")
	if before != "" {
		q.Set("before_version", before)
	}
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/attachments", Query: q}, &d.List); err != nil {
		return err
	}
	page := url.Values{}
	if d.Contains != "" {
		page.Set("contains", d.Contains)
	}
	if d.Kind != "" {
		page.Set("kind", d.Kind)
	}
	if before != "" {
		d.Newer = Base + "/attachments?" + page.Encode()
	}
	if d.List.NextBeforeVersion != nil {
		page.Set("before", strconv.FormatInt(*d.List.NextBeforeVersion, 10))
		d.Older = Base + "/attachments?" + page.Encode()
	}
	return p.render(c, http.StatusOK, "attachments", c.Request().URL.RequestURI(), view{Title: "Attachments", Nav: "attachments", S: s, Data: d})
}

// previewTypes are the image types a browser shows inline without running anything.
// Everything else (SVG and HTML included) is only ever downloaded.
var previewTypes = map[string]bool{"image/jpeg": true, "image/png": true, "image/gif": true, "image/webp": true}

// isPreviewable tells the template which attachments get a thumbnail.
func isPreviewable(contentType string) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	return previewTypes[mt]
}

// attachmentFile streams one attachment. Files a device uploaded are never shown as a page
// of the portal's origin: raster images may be shown inline, anything else is a download,
// and the response is sandboxed either way.
func (p *Portal) attachmentFile(c echo.Context, s *session) error {
	id := c.QueryParam("id")
	download := c.QueryParam("download") != ""
	return p.stream(c, s, apiRequest{Method: http.MethodGet, Path: "/api/attachments/" + escape(id)}, func(h http.Header) {
		h.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		if download || !isPreviewable(h.Get("Content-Type")) {
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": id}))
		} else {
			h.Set("Content-Disposition", "inline")
		}
	})
}
