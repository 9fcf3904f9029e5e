package attachments

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/blobstore"
)

// exportPage is how many attachments the export reads per query.
const exportPage = 500

// Export writes every stored attachment as it was uploaded into a ZIP archive, one entry
// per attachment named by its id, in id order. Only one file is open at a time and rows
// are read a page at a time, so memory stays constant however large the export.
type Export struct {
	s     *Service
	first []dbgen.AttachmentListStoredRow
}

// NewExport starts an export and reads its first page, so that an unavailable database
// is reported before anything is written.
func (s *Service) NewExport(ctx context.Context) (*Export, error) {
	rows, err := s.listStored(ctx, "")
	if err != nil {
		return nil, err
	}
	return &Export{s: s, first: rows}, nil
}

// Stream writes the archive to w. An attachment deleted while the export runs is left
// out. A failure midway leaves an archive without its central directory, which every
// reader refuses, so a cut export is never taken for a complete one.
func (e *Export) Stream(ctx context.Context, w io.Writer) error {
	zw := zip.NewWriter(w)
	rows := e.first
	for len(rows) > 0 {
		for _, r := range rows {
			if err := e.add(ctx, zw, r); err != nil {
				return err
			}
		}
		if len(rows) < exportPage {
			break
		}
		var err error
		if rows, err = e.s.listStored(ctx, rows[len(rows)-1].AttachmentID); err != nil {
			return err
		}
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("error finishing the archive: %w", err)
	}
	return nil
}

func (e *Export) add(ctx context.Context, zw *zip.Writer, r dbgen.AttachmentListStoredRow) error {
	src, err := e.s.blobs.Open(ctx, r.BlobKey)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil // deleted since it was listed
	}
	if err != nil {
		return fmt.Errorf("error opening attachment %s: %w", r.AttachmentID, err)
	}
	defer src.Close()
	method := zip.Deflate
	if alreadyCompressed(r.ContentType) {
		method = zip.Store
	}
	dst, err := zw.CreateHeader(&zip.FileHeader{Name: r.AttachmentID, Method: method, Modified: r.UploadedAt})
	if err != nil {
		return fmt.Errorf("error adding %s to the archive: %w", r.AttachmentID, err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		return fmt.Errorf("error copying %s into the archive: %w", r.AttachmentID, err)
	}
	return nil
}

func (s *Service) listStored(ctx context.Context, after string) ([]dbgen.AttachmentListStoredRow, error) {
	rows, err := s.q.AttachmentListStored(ctx, dbgen.AttachmentListStoredParams{After: after, MaxRows: exportPage})
	if err != nil {
		return nil, fmt.Errorf("error listing attachments: %w", err)
	}
	return rows, nil
}

// alreadyCompressed reports content that deflating would only cost CPU for: photos,
// recordings and archives, the bulk of what devices attach.
func alreadyCompressed(contentType string) bool {
	for _, p := range []string{"image/", "audio/", "video/"} {
		if strings.HasPrefix(contentType, p) && contentType != "image/bmp" && contentType != "image/svg+xml" {
			return true
		}
	}
	switch contentType {
	case "application/zip", "application/gzip", "application/x-gzip", "application/pdf", "application/x-7z-compressed":
		return true
	}
	return false
}
