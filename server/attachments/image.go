package attachments

import (
	"context"
	"errors"
	"fmt"
	"image"
	"io"
	"log/slog"

	"github.com/disintegration/imaging"

	"github.com/opendataensemble/synkronus/server/blobstore"
)

// Defaults of ImageOptions.
const (
	DefaultImageMaxWidth  = 2048
	DefaultImageMaxHeight = 2048
	DefaultJPEGQuality    = 85
	DefaultMaxPixels      = 40_000_000
)

// maxImageSide refuses to decode images wider or taller than this, whatever their pixel
// count: decoders allocate per row and column too.
const maxImageSide = 16384

// imageSlots bounds concurrent image processing: a decoded image holds up to 4 bytes per
// pixel, so this times MaxPixels bounds the memory processing can take.
const imageSlots = 2

// ImageOptions configure image processing. When enabled, JPEG and PNG uploads are
// decoded (turned upright by their EXIF orientation), scaled down to fit MaxWidth x
// MaxHeight and re-encoded in the same format. The processed copy is kept, and served by
// default, only when it is smaller than the upload; the upload itself is always kept.
type ImageOptions struct {
	Enabled bool
	// MaxWidth and MaxHeight bound the processed copy; 0 leaves that side unbounded.
	MaxWidth, MaxHeight int
	// JPEGQuality is the quality (1-100) of re-encoded JPEGs.
	JPEGQuality int
	// MaxPixels is the largest image (width x height) that is decoded; larger ones, like
	// images that fail to decode, are stored as uploaded. It keeps decompression bombs (a
	// few kilobytes that decode to gigabytes) from exhausting memory.
	MaxPixels int64
}

func (o *ImageOptions) setDefaults() {
	if o.JPEGQuality <= 0 || o.JPEGQuality > 100 {
		o.JPEGQuality = DefaultJPEGQuality
	}
	if o.MaxPixels <= 0 {
		o.MaxPixels = DefaultMaxPixels
	}
}

type imageProcessor struct {
	opts  ImageOptions
	slots chan struct{}
}

func newImageProcessor(opts ImageOptions) *imageProcessor {
	return &imageProcessor{opts: opts, slots: make(chan struct{}, imageSlots)}
}

// formats maps the content types that are processed to the name image.Decode gives their
// format and the encoder imaging uses for it.
var formats = map[string]struct {
	name   string
	format imaging.Format
}{
	"image/jpeg": {"jpeg", imaging.JPEG},
	"image/png":  {"png", imaging.PNG},
}

// handles reports whether uploads of contentType are processed.
func (p *imageProcessor) handles(contentType string) bool {
	_, ok := formats[contentType]
	return p.opts.Enabled && ok
}

// process makes the processed copy of the image stored at key (origSize bytes) and
// returns what it wrote, or nil when no copy is kept: the image was too large to decode,
// did not decode as its declared format, or processing did not make it smaller.
func (p *imageProcessor) process(ctx context.Context, blobs *blobstore.Store, log *slog.Logger, key, contentType string, origSize int64) (*blobstore.Written, error) {
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	r, err := blobs.Open(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("error reading the upload back: %w", err)
	}
	defer r.Close()
	f := formats[contentType]
	cfg, name, err := image.DecodeConfig(r)
	if err != nil || name != f.name {
		log.InfoContext(ctx, "image not processed: it does not decode as its content type", "key", key, "content_type", contentType)
		return nil, nil
	}
	if cfg.Width > maxImageSide || cfg.Height > maxImageSide || int64(cfg.Width)*int64(cfg.Height) > p.opts.MaxPixels {
		log.InfoContext(ctx, "image not processed: too large to decode", "key", key, "width", cfg.Width, "height", cfg.Height)
		return nil, nil
	}
	if _, err := r.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("error rewinding the upload: %w", err)
	}
	img, err := imaging.Decode(r, imaging.AutoOrientation(true))
	if err != nil {
		log.InfoContext(ctx, "image not processed: it does not decode", "key", key, "error", err)
		return nil, nil
	}
	img = p.fit(img)

	// Encode straight into the blob store. Anything not smaller than the upload is of no
	// use, so the write is bounded by that and abandoned beyond it.
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(imaging.Encode(pw, img, f.format, imaging.JPEGQuality(p.opts.JPEGQuality)))
	}()
	w, err := blobs.Write(ctx, processedKey(key), pr, blobstore.WriteOptions{ContentType: contentType, MaxBytes: max(origSize-1, 1)})
	pr.CloseWithError(err) // stops the encoder if the write ended early
	var tooLarge *blobstore.TooLargeError
	if errors.As(err, &tooLarge) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("error storing the processed image: %w", err)
	}
	return &w, nil
}

// fit scales img down (never up) to fit the configured bounds.
func (p *imageProcessor) fit(img image.Image) image.Image {
	maxW, maxH := p.opts.MaxWidth, p.opts.MaxHeight
	if maxW <= 0 {
		maxW = maxImageSide
	}
	if maxH <= 0 {
		maxH = maxImageSide
	}
	b := img.Bounds()
	if b.Dx() <= maxW && b.Dy() <= maxH {
		return img
	}
	return imaging.Fit(img, maxW, maxH, imaging.CatmullRom)
}
