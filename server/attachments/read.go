package attachments

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/server/blobstore"
)

// File is one stored copy of an attachment: the processed copy or the upload.
type File struct {
	ID          string
	ContentType string
	Size        int64
	SHA256      []byte
	Uploaded    time.Time
	key         string
}

// Stat describes the copy of attachment id that is served: the processed one when it
// exists, unless original is set.
func (s *Service) Stat(ctx context.Context, id string, original bool) (File, error) {
	if err := CheckID(id); err != nil {
		return File{}, err
	}
	a, err := s.q.AttachmentGet(ctx, id)
	if err != nil {
		if errors.Is(err, db.ErrNotFound) {
			return File{}, ErrNotFound
		}
		return File{}, fmt.Errorf("error reading attachment: %w", err)
	}
	f := File{ID: id, ContentType: a.ContentType, Size: a.Size, SHA256: a.Sha256, Uploaded: a.UploadedAt, key: a.BlobKey}
	if a.ProcessedSize != nil && !original {
		f.Size, f.SHA256, f.key = *a.ProcessedSize, a.ProcessedSha256, processedKey(a.BlobKey)
	}
	return f, nil
}

// Open opens the bytes of f; the caller closes the reader.
func (s *Service) Open(ctx context.Context, f File) (*blobstore.Reader, error) {
	r, err := s.blobs.Open(ctx, f.key)
	if errors.Is(err, blobstore.ErrNotFound) {
		return nil, ErrNotFound // deleted since Stat
	}
	if err != nil {
		return nil, fmt.Errorf("error opening attachment %s: %w", f.ID, err)
	}
	return r, nil
}
