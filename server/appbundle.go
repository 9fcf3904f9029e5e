package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strconv"
	"sync"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/appbundle"
)

// GetAppBundleManifest lists the files of the active app bundle version.
func (s *Server) GetAppBundleManifest(ctx context.Context, req api.GetAppBundleManifestRequestObject) (api.GetAppBundleManifestResponseObject, error) {
	m, err := s.bundles.ActiveManifest(ctx)
	var nf *appbundle.NotFoundError
	if errors.As(err, &nf) {
		return api.GetAppBundleManifest404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(nf.Detail)}, nil
	}
	if err != nil {
		return nil, err
	}
	if p, ok := principalFrom(ctx); ok {
		var clientID string
		if req.Params.XOdeClientId != nil {
			clientID = *req.Params.XOdeClientId
		}
		s.presence.record(presenceEvent{UserID: p.UserID, ClientID: clientID, BundleVer: &m.Name})
	}
	etag := m.ETag
	if req.Params.IfNoneMatch != nil && noneMatch(*req.Params.IfNoneMatch, etag) {
		return api.GetAppBundleManifest304Response{Headers: api.GetAppBundleManifest304ResponseHeaders{Etag: &etag}}, nil
	}
	body, err := s.manifestBodies.get(m)
	if err != nil {
		return nil, err
	}
	return bundleManifestResponse{etag: etag, body: body}, nil
}

// bundleManifestResponse writes an encoded manifest.
type bundleManifestResponse struct {
	etag string
	body []byte
}

func (r bundleManifestResponse) VisitGetAppBundleManifestResponse(w http.ResponseWriter) error {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("ETag", r.etag)
	h.Set("Content-Length", strconv.Itoa(len(r.body)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(r.body)
	return err
}

// encodedManifests keeps the encoded bodies of the last few manifests served, by entity
// tag: a version never changes, so neither does its manifest's body, and encoding a
// large one costs more than serving it.
type encodedManifests struct {
	mu     sync.Mutex
	byETag map[string][]byte
	order  []string
}

const encodedManifestsKept = 4

func (c *encodedManifests) get(m *appbundle.Manifest) ([]byte, error) {
	c.mu.Lock()
	body, ok := c.byETag[m.ETag]
	c.mu.Unlock()
	if ok {
		return body, nil
	}
	body, err := json.Marshal(manifestBody(m))
	if err != nil {
		return nil, fmt.Errorf("error encoding the manifest: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.byETag == nil {
		c.byETag = map[string][]byte{}
	}
	if _, ok := c.byETag[m.ETag]; !ok {
		if len(c.order) == encodedManifestsKept {
			delete(c.byETag, c.order[0])
			c.order = c.order[1:]
		}
		c.byETag[m.ETag] = body
		c.order = append(c.order, m.ETag)
	}
	return body, nil
}

func manifestBody(m *appbundle.Manifest) api.AppBundleManifest {
	files := make([]api.AppBundleFile, len(m.Files))
	for i, f := range m.Files {
		files[i] = api.AppBundleFile{Path: f.Path, Size: f.Size, Hash: f.SHA256, MimeType: f.ContentType, ModTime: f.ModTime}
	}
	return api.AppBundleManifest{Files: files, Version: m.Name, GeneratedAt: m.GeneratedAt, Hash: m.Hash}
}

// bundleFileResponse serves one bundle file.
type bundleFileResponse struct{ servedContent }

func (r bundleFileResponse) VisitDownloadAppBundleFileResponse(w http.ResponseWriter) error {
	return r.serve(w)
}

// DownloadAppBundleFile serves a file of the active version, or of the newest one with
// preview. The path is looked up in the version's file list, never joined onto a
// directory, so nothing else can be reached.
func (s *Server) DownloadAppBundleFile(ctx context.Context, req api.DownloadAppBundleFileRequestObject) (api.DownloadAppBundleFileResponseObject, error) {
	preview := req.Params.Preview != nil && *req.Params.Preview
	f, err := s.bundles.OpenFile(ctx, req.Path, preview)
	var nf *appbundle.NotFoundError
	var bad *appbundle.InvalidRequestError
	switch {
	case errors.As(err, &bad):
		return api.DownloadAppBundleFile400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(bad.Detail)}, nil
	case errors.As(err, &nf):
		return api.DownloadAppBundleFile404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(nf.Detail)}, nil
	case err != nil:
		return nil, err
	}
	headers := map[string]string{
		"Content-Type": f.ContentType,
		"ETag":         `"` + f.SHA256 + `"`,
		// Bundle files are the devices' app, not pages of this site: a browser that
		// opens one directly must neither sniff nor run it with this origin's rights.
		"X-Content-Type-Options":  "nosniff",
		"Content-Security-Policy": "sandbox",
	}
	if preview {
		headers["X-Is-Preview"] = "true"
	}
	return bundleFileResponse{servedContent{req: requestFrom(ctx), content: f.Reader, modTime: f.ModTime, headers: headers}}, nil
}

// bundleZipResponse serves the archive of the active version.
type bundleZipResponse struct{ servedContent }

func (r bundleZipResponse) VisitDownloadAppBundleZipResponse(w http.ResponseWriter) error {
	return r.serve(w)
}

// DownloadAppBundleZip serves the archive that was uploaded for the active version.
func (s *Server) DownloadAppBundleZip(ctx context.Context, _ api.DownloadAppBundleZipRequestObject) (api.DownloadAppBundleZipResponseObject, error) {
	a, err := s.bundles.OpenArchive(ctx)
	var nf *appbundle.NotFoundError
	if errors.As(err, &nf) {
		return api.DownloadAppBundleZip404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(nf.Detail)}, nil
	}
	if err != nil {
		return nil, err
	}
	return bundleZipResponse{servedContent{req: requestFrom(ctx), content: a.Reader, modTime: a.Pushed, headers: map[string]string{
		"Content-Type":        "application/zip",
		"ETag":                `"` + a.SHA256 + `"`,
		"Content-Disposition": fmt.Sprintf(`attachment; filename="app-bundle-%s.zip"`, a.Version),
	}}}, nil
}

// GetAppBundleVersions lists the stored versions, newest first, the active one marked
// with a trailing " *".
func (s *Server) GetAppBundleVersions(ctx context.Context, _ api.GetAppBundleVersionsRequestObject) (api.GetAppBundleVersionsResponseObject, error) {
	versions, err := s.bundles.Versions(ctx)
	if err != nil {
		return nil, err
	}
	out := api.GetAppBundleVersions200JSONResponse{Versions: make([]string, len(versions))}
	for i, v := range versions {
		out.Versions[i] = v.Name
		if v.Active {
			out.Versions[i] += " *"
		}
	}
	return out, nil
}

// PushAppBundle stores the uploaded archive as a new version after validating it.
func (s *Server) PushAppBundle(ctx context.Context, req api.PushAppBundleRequestObject) (api.PushAppBundleResponseObject, error) {
	part, err := bundlePart(req.Body)
	if err != nil {
		return nil, err
	}
	if part == nil {
		return api.PushAppBundle400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(
			"the bundle must be sent as the multipart field \"bundle\"")}, nil
	}
	p, _ := principalFrom(ctx)
	pushed, err := s.bundles.Push(ctx, part, appbundle.PushOptions{Activate: req.Params.Activate != nil && *req.Params.Activate, PushedBy: p.Username})
	var refused *appbundle.ValidationError
	var upload *appbundle.UploadError
	switch {
	case errors.As(err, &refused):
		return bundleRefused(refused), nil
	case errors.As(err, &upload):
		return nil, uploadProblem(upload.Err)
	case err != nil:
		return nil, err
	}
	m := pushed.Manifest
	msg := "App bundle version " + m.Name + " stored; activate it with switchAppBundleVersion"
	if pushed.Activated {
		msg = "App bundle version " + m.Name + " stored and activated"
	}
	return api.PushAppBundle200JSONResponse{Message: msg, Manifest: manifestBody(m), Version: &m.Name, Active: &pushed.Activated}, nil
}

// bundlePart returns the multipart part named "bundle", skipping others; nil when there
// is none.
func bundlePart(mr *multipart.Reader) (*multipart.Part, error) {
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		if err != nil {
			return nil, uploadProblem(err)
		}
		if part.FormName() == "bundle" {
			return part, nil
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			return nil, uploadProblem(err)
		}
	}
}

// uploadProblem turns a failure to read a multipart upload into a problem: 413 beyond the
// size limit, otherwise a malformed or interrupted body (400).
func uploadProblem(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) || errors.Is(err, context.Canceled) {
		return err // rendered centrally: 413, or nothing for a client that went away
	}
	return newProblem(http.StatusBadRequest, codeBadRequest, "the request body is not complete, valid multipart/form-data")
}

// bundleRefused lists every problem of a refused bundle: 413 when it is too large, else 400.
func bundleRefused(e *appbundle.ValidationError) api.PushAppBundleResponseObject {
	status, code := http.StatusBadRequest, codeValidation
	if e.TooLarge() {
		status, code = http.StatusRequestEntityTooLarge, codeTooLarge
	}
	body := problemBody(status, code, e.Summary())
	list := make([]api.ProblemFieldError, len(e.Problems))
	for i, p := range e.Problems {
		list[i] = api.ProblemFieldError{Field: &p.Path, Message: &p.Message, Code: &p.Code}
	}
	body.Errors = &list
	if status == http.StatusRequestEntityTooLarge {
		return api.PushAppBundle413ApplicationProblemPlusJSONResponse{PayloadTooLargeApplicationProblemPlusJSONResponse: api.PayloadTooLargeApplicationProblemPlusJSONResponse(body)}
	}
	return api.PushAppBundle400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: api.BadRequestApplicationProblemPlusJSONResponse(body)}
}

// SwitchAppBundleVersion makes a stored version the active one.
func (s *Server) SwitchAppBundleVersion(ctx context.Context, req api.SwitchAppBundleVersionRequestObject) (api.SwitchAppBundleVersionResponseObject, error) {
	p, _ := principalFrom(ctx)
	name, err := s.bundles.Switch(ctx, req.Version, p.Username)
	var nf *appbundle.NotFoundError
	var bad *appbundle.InvalidRequestError
	switch {
	case errors.As(err, &bad):
		return api.SwitchAppBundleVersion400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(bad.Detail)}, nil
	case errors.As(err, &nf):
		return api.SwitchAppBundleVersion404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(nf.Detail)}, nil
	case err != nil:
		return nil, err
	}
	return api.SwitchAppBundleVersion200JSONResponse{Message: "Switched to app bundle version " + name}, nil
}

// GetAppBundleChanges compares two stored versions.
func (s *Server) GetAppBundleChanges(ctx context.Context, req api.GetAppBundleChangesRequestObject) (api.GetAppBundleChangesResponseObject, error) {
	var cr appbundle.ChangesRequest
	if req.Params.Current != nil {
		cr.Current = *req.Params.Current
	}
	if req.Params.Target != nil {
		cr.Target = *req.Params.Target
	}
	cr.Preview = req.Params.Preview != nil && *req.Params.Preview
	c, err := s.bundles.Changes(ctx, cr)
	var nf *appbundle.NotFoundError
	var bad *appbundle.InvalidRequestError
	switch {
	case errors.As(err, &bad):
		return api.GetAppBundleChanges400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(bad.Detail)}, nil
	case errors.As(err, &nf):
		return api.GetAppBundleChanges404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(nf.Detail)}, nil
	case err != nil:
		return nil, err
	}
	return api.GetAppBundleChanges200JSONResponse(changeLogBody(c)), nil
}

func changeLogBody(c *appbundle.ChangeLog) api.ChangeLog {
	forms := func(names []string) *[]api.FormDiff {
		out := make([]api.FormDiff, len(names))
		for i, n := range names {
			out[i] = api.FormDiff{Form: &n}
		}
		return &out
	}
	fields := func(refs []appbundle.FieldRef) *[]api.FieldChange {
		out := make([]api.FieldChange, len(refs))
		for i, r := range refs {
			out[i] = api.FieldChange{Field: &r.Name, Type: &r.Type}
		}
		return &out
	}
	files := func(refs []appbundle.FileRef) *[]api.BundleFileRef {
		out := make([]api.BundleFileRef, len(refs))
		for i, r := range refs {
			out[i] = api.BundleFileRef{Path: r.Path, Hash: r.SHA256, Size: r.Size}
		}
		return &out
	}
	modifiedForms := make([]api.FormModification, len(c.ModifiedForms))
	for i, m := range c.ModifiedForms {
		modifiedForms[i] = api.FormModification{Form: &m.Form, SchemaChanged: &m.SchemaChanged, UiChanged: &m.UIChanged,
			CoreChanged: &m.CoreChanged, AddedFields: fields(m.AddedFields), RemovedFields: fields(m.RemovedFields)}
	}
	modifiedFiles := make([]api.BundleFileChange, len(c.ModifiedFiles))
	for i, m := range c.ModifiedFiles {
		modifiedFiles[i] = api.BundleFileChange{Path: m.Path, HashA: m.SHA256A, HashB: m.SHA256B, SizeA: m.SizeA, SizeB: m.SizeB}
	}
	return api.ChangeLog{
		CompareVersionA: &c.From, CompareVersionB: &c.To, CurrentVersion: &c.From, TargetVersion: &c.To,
		FormChanges: &c.FormChanges, UiChanges: &c.UIChanges,
		NewForms: forms(c.NewForms), RemovedForms: forms(c.RemovedForms), ModifiedForms: &modifiedForms,
		Added: files(c.AddedFiles), Removed: files(c.RemovedFiles), Modified: &modifiedFiles,
	}
}

// ListForms lists the forms of the active version with their observation counts.
func (s *Server) ListForms(ctx context.Context, _ api.ListFormsRequestObject) (api.ListFormsResponseObject, error) {
	version, forms, err := s.bundles.ActiveForms(ctx)
	if err != nil {
		return nil, err
	}
	out := api.ListForms200JSONResponse{Forms: make([]api.FormSummary, len(forms))}
	if version != "" {
		out.Version = &version
	}
	for i, f := range forms {
		fields := make([]api.FormField, len(f.Fields))
		for j, fd := range f.Fields {
			fields[j] = api.FormField{Name: fd.Name, Type: fd.Type, Required: fd.Required, Core: fd.Core}
			if fd.QuestionType != "" {
				fields[j].QuestionType = &fd.QuestionType
			}
			if fd.Default != nil {
				fields[j].Default = fd.Default
			}
		}
		out.Forms[i] = api.FormSummary{Name: f.Name, SchemaHash: f.SchemaHash, Fields: fields, ObservationCount: f.ObservationCount}
	}
	return out, nil
}
