package appbundle

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
)

// upload is a received archive in a temporary file: archive/zip needs random access, and
// the whole upload is never held in memory.
type upload struct {
	file   *os.File
	size   int64
	sha256 [32]byte
	// dirHeaders counts the central directory header signatures in the file: an upper
	// bound of the entries archive/zip would parse, known before it allocates them.
	dirHeaders int
}

// UploadError reports that reading the upload failed: the client went away, sent a
// malformed body, or exceeded the request's size limit (an *http.MaxBytesError in Err).
type UploadError struct{ Err error }

func (e *UploadError) Error() string { return "error reading the upload: " + e.Err.Error() }

func (e *UploadError) Unwrap() error { return e.Err }

// readRecorder remembers the error its reader failed with, to tell it from write errors.
type readRecorder struct {
	r   io.Reader
	err error
}

func (r *readRecorder) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && err != io.EOF {
		r.err = err
	}
	return n, err
}

// receive copies r into a new temporary file, refusing more than maxBytes. The caller
// must call discard.
func receive(r io.Reader, dir string, maxBytes int64) (*upload, error) {
	f, err := os.CreateTemp(dir, "appbundle-*.zip")
	if err != nil {
		return nil, fmt.Errorf("error creating temporary file: %w", err)
	}
	u := &upload{file: f}
	h := sha256.New()
	sigs := &signatureCounter{sig: []byte("PK\x01\x02")}
	src := &readRecorder{r: io.LimitReader(r, maxBytes+1)}
	n, err := io.Copy(io.MultiWriter(f, h, sigs), src)
	u.size, u.dirHeaders = n, sigs.n
	switch {
	case src.err != nil:
		u.discard()
		return nil, &UploadError{Err: src.err}
	case err != nil:
		u.discard()
		return nil, fmt.Errorf("error writing the upload to a temporary file: %w", err)
	case n > maxBytes:
		u.discard()
		var p problems
		p.add("", CodeUploadTooLarge, "the upload exceeds the limit of %d bytes", maxBytes)
		return nil, p.err()
	}
	h.Sum(u.sha256[:0])
	return u, nil
}

// discard closes and removes the temporary file.
func (u *upload) discard() {
	_ = u.file.Close()
	_ = os.Remove(u.file.Name())
}

// signatureCounter counts the occurrences of sig in everything written to it, including
// those split across writes.
type signatureCounter struct {
	sig  []byte
	tail []byte // the last len(sig)-1 bytes written
	n    int
}

func (c *signatureCounter) Write(p []byte) (int, error) {
	k := len(c.sig) - 1
	// Occurrences that start in the previous write and end in this one.
	joined := append(append([]byte(nil), c.tail...), p[:min(k, len(p))]...)
	c.n += bytes.Count(joined, c.sig) + bytes.Count(p, c.sig)
	if len(p) >= k {
		c.tail = append(c.tail[:0], p[len(p)-k:]...)
	} else {
		c.tail = append(c.tail, p...)
		c.tail = c.tail[max(0, len(c.tail)-k):]
	}
	return len(p), nil
}
