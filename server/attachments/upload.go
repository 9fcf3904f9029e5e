package attachments

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/blobstore"
)

// UploadRequest is one upload as the handler received it.
type UploadRequest struct {
	ID string
	// Generation is the client's repository generation; nil when it sent none.
	Generation *int64
	Username   string
	// ContentType is the type the client declared for the file; when it is empty or
	// application/octet-stream the type is sniffed from the bytes.
	ContentType string
	// Body yields the file. An error reading it abandons the upload.
	Body io.Reader
}

// UploadResult says what an upload did.
type UploadResult struct {
	// Version is the version of the recorded download operation; 0 when the same bytes
	// were already stored under the id and nothing changed.
	Version int64
}

// TooLargeError reports an upload over the size limit; nothing was stored.
type TooLargeError = blobstore.TooLargeError

// errUploadExpired reports an upload whose blob the cleanup took because the upload
// streamed for longer than Options.UploadGrace.
var errUploadExpired = errors.New("the upload took longer than the upload grace period and was discarded")

// errStoredMeanwhile ends a recording transaction that found the id stored by a
// concurrent upload.
var errStoredMeanwhile = errors.New("attachment stored concurrently")

// Upload stores an attachment. Identical bytes under a stored id change nothing; other
// bytes are ErrConflict. The attachment becomes visible only when its bytes are stored and
// recorded: on any error (the body failing midway included) nothing is left behind.
func (s *Service) Upload(ctx context.Context, req UploadRequest) (UploadResult, error) {
	if err := CheckID(req.ID); err != nil {
		return UploadResult{}, err
	}
	key := blobKey(req.ID)
	begin, err := s.q.AttachmentUploadBegin(ctx, dbgen.AttachmentUploadBeginParams{
		AttachmentID: req.ID,
		BlobKey:      key,
		GraceSeconds: s.opts.UploadGrace.Seconds(),
		Generation:   req.Generation,
	})
	if err != nil {
		return UploadResult{}, fmt.Errorf("error starting the upload: %w", err)
	}
	if err := checkGeneration(req.Generation, begin.RepositoryGeneration); err != nil {
		return UploadResult{}, err
	}
	if begin.StoredSha256 != nil {
		// A retry, most likely: compare without storing anything.
		return UploadResult{}, s.compareWithStored(req.Body, begin.StoredSha256)
	}
	res, err := s.storeAndRecord(ctx, req, key)
	if err != nil || res.Version == 0 {
		s.discard(ctx, key)
	}
	return res, err
}

func (s *Service) storeAndRecord(ctx context.Context, req UploadRequest, key string) (UploadResult, error) {
	body, contentType, err := detectContentType(req.Body, req.ContentType)
	if err != nil {
		return UploadResult{}, fmt.Errorf("error reading the upload: %w", err)
	}
	orig, err := s.blobs.Write(ctx, key, body, blobstore.WriteOptions{ContentType: contentType, MaxBytes: s.opts.MaxUploadBytes})
	if err != nil {
		return UploadResult{}, err
	}
	params := dbgen.AttachmentCreateParams{
		AttachmentID: req.ID,
		BlobKey:      key,
		Size:         orig.Size,
		Sha256:       orig.SHA256[:],
		ContentType:  contentType,
		UploadedBy:   req.Username,
	}
	if s.images.handles(contentType) {
		processed, err := s.images.process(ctx, s.blobs, s.log, key, contentType, orig.Size)
		if err != nil {
			return UploadResult{}, err
		}
		if processed != nil {
			params.ProcessedSize, params.ProcessedSha256 = &processed.Size, processed.SHA256[:]
		}
	}
	return s.record(ctx, req, key, params)
}

// record makes a stored upload visible: it claims the blob (so the cleanup no longer may
// delete it), takes a version and writes the attachment, in one short transaction.
func (s *Service) record(ctx context.Context, req UploadRequest, key string, params dbgen.AttachmentCreateParams) (UploadResult, error) {
	err := db.InTx(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		claimed, err := q.AttachmentUnclaimedBlobDelete(ctx, []string{key})
		if err != nil {
			return fmt.Errorf("error claiming the uploaded blob: %w", err)
		}
		if claimed == 0 {
			return errUploadExpired
		}
		if params.Version, err = takeVersion(ctx, q, req.Generation); err != nil {
			return err
		}
		created, err := q.AttachmentCreate(ctx, params)
		if err != nil {
			return fmt.Errorf("error recording the attachment: %w", err)
		}
		if created == 0 {
			return errStoredMeanwhile
		}
		return nil
	})
	switch {
	case errors.Is(err, errStoredMeanwhile):
		stored, err := s.q.AttachmentGet(ctx, req.ID)
		if err != nil {
			return UploadResult{}, fmt.Errorf("error reading the stored attachment: %w", err)
		}
		if !bytes.Equal(stored.Sha256, params.Sha256) {
			return UploadResult{}, ErrConflict
		}
		return UploadResult{}, nil
	case err != nil:
		return UploadResult{}, err
	}
	return UploadResult{Version: params.Version}, nil
}

// compareWithStored reads an upload for an id that is already stored and reports whether
// it holds the same bytes (nil) or others (ErrConflict).
func (s *Service) compareWithStored(body io.Reader, stored []byte) error {
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(body, s.opts.MaxUploadBytes+1))
	if err != nil {
		return fmt.Errorf("error reading the upload: %w", err)
	}
	if n > s.opts.MaxUploadBytes {
		return &TooLargeError{Limit: s.opts.MaxUploadBytes}
	}
	if !bytes.Equal(h.Sum(nil), stored) {
		return ErrConflict
	}
	return nil
}

// discard removes the blobs of an upload that was not recorded, and then its
// registration. It runs even when the request was cancelled (a client that went away is
// the usual reason to be here); should it fail, the cleanup removes both later.
func (s *Service) discard(ctx context.Context, key string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
	defer cancel()
	if err := s.blobs.DeletePrefix(ctx, key); err != nil {
		s.log.WarnContext(ctx, "could not remove the blobs of an abandoned upload; the cleanup retries", "key", key, "error", err)
		return
	}
	if _, err := s.q.AttachmentUnclaimedBlobDelete(ctx, []string{key}); err != nil {
		s.log.WarnContext(ctx, "could not unregister an abandoned upload; the cleanup retries", "key", key, "error", err)
	}
}

// detectContentType returns the media type of an upload: the declared one when it is
// specific, else one sniffed from the first bytes (which the returned reader still yields).
func detectContentType(body io.Reader, declared string) (io.Reader, string, error) {
	if mt, _, err := mime.ParseMediaType(declared); err == nil && mt != "application/octet-stream" {
		return body, mt, nil
	}
	// Not io.ReadFull: it reports a short body as io.ErrUnexpectedEOF, which a cut
	// multipart body also returns, and a cut body must not pass for a short file.
	head := make([]byte, 512)
	n := 0
	for n < len(head) {
		m, err := body.Read(head[n:])
		n += m
		if err == io.EOF { // exactly EOF: an error wrapping it means a cut body
			break
		}
		if err != nil {
			return nil, "", err
		}
	}
	head = head[:n]
	return io.MultiReader(bytes.NewReader(head), body), http.DetectContentType(head), nil
}
