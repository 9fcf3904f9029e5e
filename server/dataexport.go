package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server/export"
)

// exportStallTimeout is how long one write of an export may wait for the client: a client
// that stops reading must not hold a database connection and a snapshot for ever.
const exportStallTimeout = 2 * time.Minute

// GetParquetExportZip streams the Parquet archive.
func (s *Server) GetParquetExportZip(ctx context.Context, req api.GetParquetExportZipRequestObject) (api.GetParquetExportZipResponseObject, error) {
	f := exportFilter(req.Params.FormType, req.Params.SinceVersion, req.Params.IncludeDeleted)
	return s.exportResponse(ctx, export.Parquet, f, "observations_export.zip"), nil
}

// GetRawJsonExportZip streams the archive of JSON documents.
func (s *Server) GetRawJsonExportZip(ctx context.Context, req api.GetRawJsonExportZipRequestObject) (api.GetRawJsonExportZipResponseObject, error) {
	f := exportFilter(req.Params.FormType, req.Params.SinceVersion, req.Params.IncludeDeleted)
	return s.exportResponse(ctx, export.JSON, f, "observations_raw_json.zip"), nil
}

// GetCsvExportZip streams the CSV archive.
func (s *Server) GetCsvExportZip(ctx context.Context, req api.GetCsvExportZipRequestObject) (api.GetCsvExportZipResponseObject, error) {
	f := exportFilter(req.Params.FormType, req.Params.SinceVersion, req.Params.IncludeDeleted)
	return s.exportResponse(ctx, export.CSV, f, "observations_csv.zip"), nil
}

func exportFilter(formTypes *[]string, since *int64, includeDeleted *bool) export.Filter {
	var f export.Filter
	if formTypes != nil {
		f.FormTypes = *formTypes
	}
	if since != nil {
		f.SinceVersion = *since
	}
	if includeDeleted != nil {
		f.IncludeDeleted = *includeDeleted
	}
	return f
}

func (s *Server) exportResponse(ctx context.Context, format export.Format, f export.Filter, filename string) exportResponse {
	return exportResponse{ctx: ctx, svc: s.export, log: s.log, format: format, filter: f, filename: filename}
}

// exportResponse streams an archive while the strict handler writes the response, inside
// the export's database snapshot.
type exportResponse struct {
	ctx      context.Context
	svc      *export.Service
	log      *slog.Logger
	format   export.Format
	filter   export.Filter
	filename string
}

func (r exportResponse) VisitGetParquetExportZipResponse(w http.ResponseWriter) error {
	return r.visit(w)
}
func (r exportResponse) VisitGetRawJsonExportZipResponse(w http.ResponseWriter) error {
	return r.visit(w)
}
func (r exportResponse) VisitGetCsvExportZipResponse(w http.ResponseWriter) error { return r.visit(w) }

// visit runs the export. Until its first byte is written a failure is an ordinary error,
// rendered as a problem; after that the status line has gone out, so the connection is
// aborted instead: the client sees a broken download, never a truncated archive that
// looks complete.
func (r exportResponse) visit(w http.ResponseWriter) error {
	out := &exportWriter{w: w, rc: http.NewResponseController(w), filename: r.filename}
	err := r.svc.Export(r.ctx, r.format, r.filter, func(snap export.Snapshot) io.Writer {
		out.snapshot = snap
		return out
	})
	if out.started {
		_ = out.rc.SetWriteDeadline(time.Time{}) // the connection may serve further requests
	}
	if err == nil || !out.started {
		return err
	}
	if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) && r.ctx.Err() == nil {
		r.log.ErrorContext(r.ctx, "export failed after the response started; aborting the download",
			"error", err)
	}
	panic(http.ErrAbortHandler)
}

// exportWriter sends the response headers with the first byte of the archive, and bounds
// how long each write may wait for the client.
type exportWriter struct {
	w        http.ResponseWriter
	rc       *http.ResponseController
	filename string
	snapshot export.Snapshot
	started  bool
}

func (e *exportWriter) Write(p []byte) (int, error) {
	if !e.started {
		e.started = true
		h := e.w.Header()
		h.Set("Content-Type", "application/zip")
		h.Set("Content-Disposition", `attachment; filename="`+e.filename+`"`)
		h.Set("X-Export-Version", strconv.FormatInt(e.snapshot.CurrentVersion, 10))
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		e.w.WriteHeader(http.StatusOK)
	}
	_ = e.rc.SetWriteDeadline(time.Now().Add(exportStallTimeout)) // not every writer supports deadlines
	return e.w.Write(p)
}
