package server

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/attachments"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// UploadAttachment stores the file of the multipart field "file" under the id.
func (s *Server) UploadAttachment(ctx context.Context, req api.UploadAttachmentRequestObject) (api.UploadAttachmentResponseObject, error) {
	if err := attachments.CheckID(req.AttachmentId); err != nil {
		return api.UploadAttachment400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(err.Error())}, nil
	}
	p, _ := principalFrom(ctx)
	file, err := multipartFile(req.Body, "file")
	if err == nil {
		_, err = s.attachments.Upload(ctx, attachments.UploadRequest{
			ID:          req.AttachmentId,
			Generation:  req.Params.XRepositoryGeneration,
			Username:    p.Username,
			ContentType: file.ContentType(),
			Body:        file,
		})
	}
	var (
		mismatch   *obsync.GenerationMismatchError
		tooLarge   *attachments.TooLargeError
		bodyTooBig *http.MaxBytesError
		badBody    *uploadBodyError
	)
	switch {
	case err == nil:
		return api.UploadAttachment200JSONResponse{Status: "success"}, nil
	case errors.As(err, &mismatch):
		r := resetRequired(mismatch)
		return api.UploadAttachment409ApplicationProblemPlusJSONResponse{AttachmentConflictApplicationProblemPlusJSONResponse: api.AttachmentConflictApplicationProblemPlusJSONResponse{
			Body: r.Body, Headers: api.AttachmentConflictResponseHeaders{XRepositoryGeneration: &mismatch.Server},
		}}, nil
	case errors.Is(err, attachments.ErrConflict):
		return api.UploadAttachment409ApplicationProblemPlusJSONResponse{AttachmentConflictApplicationProblemPlusJSONResponse: api.AttachmentConflictApplicationProblemPlusJSONResponse{
			Body: problemBody(http.StatusConflict, codeConflict, "attachment "+req.AttachmentId+" is already stored with other content; attachments cannot be replaced, so store this file under a new id"),
		}}, nil
	case errors.As(err, &tooLarge), errors.As(err, &bodyTooBig):
		return api.UploadAttachment413ApplicationProblemPlusJSONResponse{PayloadTooLargeApplicationProblemPlusJSONResponse: api.PayloadTooLargeApplicationProblemPlusJSONResponse(
			problemBody(http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("the attachment exceeds the limit of %d bytes", s.attachments.MaxUploadBytes())))}, nil
	case errors.As(err, &badBody):
		return api.UploadAttachment400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(
			"the upload must be a complete multipart/form-data body with exactly one part named \"file\": " + badBody.Error())}, nil
	}
	return nil, err
}

// DownloadAttachment serves an attachment, with ranges and conditional requests.
func (s *Server) DownloadAttachment(ctx context.Context, req api.DownloadAttachmentRequestObject) (api.DownloadAttachmentResponseObject, error) {
	f, err := s.attachments.Stat(ctx, req.AttachmentId, truthy(req.Params.Original))
	var r *blobstore.Reader
	if err == nil {
		r, err = s.attachments.Open(ctx, f)
	}
	switch {
	case err == nil:
		res := attachmentResponse{file: f, content: r, closer: r, req: httpRequest(ctx)}
		if file := blobstore.File(r); file != nil {
			res.content = file
		}
		return res, nil
	case errors.Is(err, attachments.ErrInvalidID):
		return api.DownloadAttachment400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(err.Error())}, nil
	case errors.Is(err, attachments.ErrNotFound):
		return api.DownloadAttachment404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no attachment with id " + req.AttachmentId)}, nil
	}
	return nil, err
}

// CheckAttachmentExists answers a download's headers without its body.
func (s *Server) CheckAttachmentExists(ctx context.Context, req api.CheckAttachmentExistsRequestObject) (api.CheckAttachmentExistsResponseObject, error) {
	f, err := s.attachments.Stat(ctx, req.AttachmentId, truthy(req.Params.Original))
	switch {
	case err == nil:
		// HEAD never needs the bytes: the size is known, and ranges are ignored.
		head := httpRequest(ctx).Clone(ctx)
		head.Header.Del("Range")
		return attachmentResponse{file: f, content: sizeOnly(f.Size), req: head}, nil
	case errors.Is(err, attachments.ErrInvalidID):
		return api.CheckAttachmentExists400Response{}, nil
	case errors.Is(err, attachments.ErrNotFound):
		return api.CheckAttachmentExists404Response{}, nil
	}
	return nil, err
}

// DeleteAttachment deletes an attachment here and, through the manifest, on every device.
func (s *Server) DeleteAttachment(ctx context.Context, req api.DeleteAttachmentRequestObject) (api.DeleteAttachmentResponseObject, error) {
	p, _ := principalFrom(ctx)
	version, err := s.attachments.Delete(ctx, req.AttachmentId, p.Username)
	switch {
	case err == nil:
		s.log.InfoContext(ctx, "attachment deleted", "attachment_id", req.AttachmentId, "by", p.Username, "version", version)
		return api.DeleteAttachment200JSONResponse{AttachmentId: req.AttachmentId, Version: version}, nil
	case errors.Is(err, attachments.ErrInvalidID):
		return api.DeleteAttachment400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(err.Error())}, nil
	case errors.Is(err, attachments.ErrNotFound):
		return api.DeleteAttachment404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no attachment with id " + req.AttachmentId)}, nil
	}
	return nil, err
}

// GetAttachmentManifest lists the attachment operations after the client's cursor.
func (s *Server) GetAttachmentManifest(ctx context.Context, req api.GetAttachmentManifestRequestObject) (api.GetAttachmentManifestResponseObject, error) {
	body := req.Body
	if body.ClientId == "" {
		return api.GetAttachmentManifest400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("client_id is required")}, nil
	}
	m, err := s.attachments.Manifest(ctx, attachments.ManifestRequest{
		Since:      body.SinceVersion,
		Generation: generation(req.Params.XRepositoryGeneration, body.RepositoryGeneration),
	})
	var mismatch *obsync.GenerationMismatchError
	if errors.As(err, &mismatch) {
		return api.GetAttachmentManifest409ApplicationProblemPlusJSONResponse{RepositoryResetRequiredApplicationProblemPlusJSONResponse: resetRequired(mismatch)}, nil
	}
	if err != nil {
		return nil, err
	}
	return api.GetAttachmentManifest200JSONResponse{
		Body:    attachmentManifest(m, s.attachmentURLBase(ctx)),
		Headers: api.GetAttachmentManifest200ResponseHeaders{XRepositoryGeneration: &m.RepositoryGeneration},
	}, nil
}

func attachmentManifest(m attachments.Manifest, urlBase string) api.AttachmentManifestResponse {
	out := api.AttachmentManifestResponse{
		CurrentVersion:       m.CurrentVersion,
		RepositoryGeneration: m.RepositoryGeneration,
		HasMore:              &m.HasMore,
		Operations:           make([]api.AttachmentOperation, len(m.Operations)),
	}
	var downloads, deletes int
	var total int64
	for i, op := range m.Operations {
		o := api.AttachmentOperation{AttachmentId: op.ID, Version: &op.Version, Operation: api.AttachmentOperationOperationDelete}
		if !op.Deleted {
			u := urlBase + url.PathEscape(op.ID)
			o.Operation, o.DownloadUrl, o.Size, o.ContentType = api.AttachmentOperationOperationDownload, &u, &op.Size, &op.ContentType
			downloads++
			total += op.Size
		} else {
			deletes++
		}
		out.Operations[i] = o
	}
	out.TotalDownloadSize = &total
	out.OperationCount = &api.AttachmentOperationCount{Download: &downloads, Delete: &deletes}
	return out
}

// attachmentURLBase is where the client that sent this request downloads attachments:
// PUBLIC_URL, or else the origin it reached, followed by the path prefix it used, so that
// older apps, which call root paths without the x-ode-version header /api requires, get
// links they can follow as they are.
func (s *Server) attachmentURLBase(ctx context.Context) string {
	base := s.opts.PublicURL
	if base == "" {
		base = requestOrigin(ctx)
	}
	if r := httpRequest(ctx); r == nil || r.Header.Get(legacyHeader) == "" {
		base += "/api"
	}
	return base + "/attachments/"
}

// GetAttachmentsExportZip streams every stored attachment in one ZIP archive.
func (s *Server) GetAttachmentsExportZip(ctx context.Context, _ api.GetAttachmentsExportZipRequestObject) (api.GetAttachmentsExportZipResponseObject, error) {
	export, err := s.attachments.NewExport(ctx)
	if err != nil {
		return nil, err
	}
	return attachmentExportResponse{ctx: ctx, export: export, log: s.log}, nil
}

// attachmentExportResponse writes the archive as it is read. Headers are sent first, so a
// failure midway can no longer become an error response: the connection is cut instead,
// and the client sees a failed download rather than a complete-looking archive.
type attachmentExportResponse struct {
	ctx    context.Context
	export *attachments.Export
	log    *slog.Logger
}

func (r attachmentExportResponse) VisitGetAttachmentsExportZipResponse(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "application/zip")
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": "attachments_export.zip"}))
	w.WriteHeader(http.StatusOK)
	if err := r.export.Stream(r.ctx, w); err != nil {
		r.log.WarnContext(r.ctx, "attachment export cut short", "error", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

// attachmentResponse serves one stored copy with http.ServeContent, which answers Range
// (206, 416), If-Range, If-None-Match and If-Modified-Since (304) and If-Match (412) from
// the ETag and Last-Modified set here, and sends Content-Length.
type attachmentResponse struct {
	file    attachments.File
	content io.ReadSeeker
	closer  io.Closer // nil when nothing was opened (HEAD)
	req     *http.Request
}

func (r attachmentResponse) serve(w http.ResponseWriter) {
	if r.closer != nil {
		defer r.closer.Close()
	}
	if er, ok := w.(*echo.Response); ok {
		w = sendfileResponse{er}
	}
	h := w.Header()
	h.Set("Content-Type", r.file.ContentType)
	h.Set("ETag", `"`+hex.EncodeToString(r.file.SHA256)+`"`)
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": r.file.ID}))
	// The content type is the uploader's: a browser must neither guess another one nor run
	// what it is given (an uploaded HTML or SVG file) with the server's origin.
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "sandbox")
	http.ServeContent(w, r.req, "", r.file.Uploaded, r.content)
}

func (r attachmentResponse) VisitDownloadAttachmentResponse(w http.ResponseWriter) error {
	r.serve(w)
	return nil
}

func (r attachmentResponse) VisitCheckAttachmentExistsResponse(w http.ResponseWriter) error {
	r.serve(w)
	return nil
}

// sendfileResponse gives Echo's response writer the io.ReaderFrom of the writer it wraps,
// through which net/http sends an open file with sendfile, while keeping Echo's account
// of the status and size sent (the access log reads them).
type sendfileResponse struct{ *echo.Response }

func (w sendfileResponse) ReadFrom(src io.Reader) (int64, error) {
	if !w.Committed {
		w.WriteHeader(http.StatusOK)
	}
	n, err := io.Copy(w.Unwrap(), src)
	w.Size += n
	return n, err
}

// sizeOnly stands in for content that is never read (HEAD): http.ServeContent only seeks
// it to learn its size.
type sizeOnly int64

func (s sizeOnly) Read([]byte) (int, error) {
	return 0, errors.New("the content of a HEAD response is never read")
}

func (s sizeOnly) Seek(offset int64, whence int) (int64, error) {
	if whence == io.SeekEnd {
		return int64(s) + offset, nil
	}
	return offset, nil
}

// truthy reads a flag the way upstream does: true, 1 and yes, in any case.
func truthy(v *string) bool {
	if v == nil {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(*v)) {
	case "true", "1", "yes":
		return true
	}
	return false
}

// ListAttachments lists a page of stored attachments, newest upload first.
func (s *Server) ListAttachments(ctx context.Context, req api.ListAttachmentsRequestObject) (api.ListAttachmentsResponseObject, error) {
	prm := req.Params
	lr := attachments.ListRequest{Contains: deref(prm.Contains), ContentTypePrefix: deref(prm.ContentType),
		BeforeVersion: deref(prm.BeforeVersion), Limit: deref(prm.Limit)}
	page, err := s.attachments.List(ctx, lr)
	if err != nil {
		return nil, err
	}
	out := api.ListAttachments200JSONResponse{Attachments: make([]api.AttachmentSummary, len(page.Attachments)), HasMore: page.NextBeforeVersion > 0}
	for i, a := range page.Attachments {
		out.Attachments[i] = api.AttachmentSummary{AttachmentId: a.AttachmentID, Version: a.Version, Size: a.Size,
			ContentType: a.ContentType, UploadedAt: a.UploadedAt, UploadedBy: a.UploadedBy}
		if a.Processed {
			out.Attachments[i].OriginalSize = &a.OriginalSize
		}
	}
	if out.HasMore {
		out.NextBeforeVersion = &page.NextBeforeVersion
	}
	return out, nil
}
