package server

import (
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
)

// uploadBodyError reports a multipart upload body that could not be read: malformed,
// without the expected file part, or cut short (usually because the client went away).
// Its message is for the client; the cause, which may name addresses, is not.
type uploadBodyError struct {
	msg string
	err error
}

func (e *uploadBodyError) Error() string { return e.msg }
func (e *uploadBodyError) Unwrap() error { return e.err }

// readFailure tags an error reading the body; exceeding the body limit keeps its own
// type, which is answered with 413.
func readFailure(err error) error {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return err
	}
	return &uploadBodyError{msg: "the body is not well-formed multipart or ended early", err: err}
}

// formFile is the file part of a streamed multipart body. Reading it to its end also
// reads the rest of the body, and fails if that holds another part of the same name or is
// malformed or cut short: whoever reads a formFile to io.EOF has received one complete,
// well-formed upload, without the body ever being held in memory.
type formFile struct {
	body  *multipart.Reader
	part  *multipart.Part
	field string
	end   error // set once the part is read: io.EOF or why the rest of the body failed
}

// multipartFile finds the part named field in body. Parts with other names before it are
// read and dropped (the body limit bounds them), so that a file sent under another name
// is refused instead of stored empty.
func multipartFile(body *multipart.Reader, field string) (*formFile, error) {
	for {
		part, err := body.NextPart()
		if err == io.EOF { // exactly: a cut body is an error wrapping io.EOF
			return nil, &uploadBodyError{msg: fmt.Sprintf("the multipart body has no part named %q", field)}
		}
		if err != nil {
			return nil, readFailure(err)
		}
		if part.FormName() == field {
			return &formFile{body: body, part: part, field: field}, nil
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			return nil, readFailure(err)
		}
	}
}

// ContentType is the media type the client declared for the file, if any.
func (f *formFile) ContentType() string { return f.part.Header.Get("Content-Type") }

func (f *formFile) Read(p []byte) (int, error) {
	if f.end != nil {
		return 0, f.end
	}
	n, err := f.part.Read(p)
	switch {
	case err == io.EOF:
		f.end = f.checkRest()
		return n, f.end
	case err != nil:
		f.end = readFailure(err)
		return n, f.end
	}
	return n, nil
}

// checkRest reads the parts after the file: io.EOF when the body ends properly.
func (f *formFile) checkRest() error {
	for {
		part, err := f.body.NextPart()
		if err == io.EOF {
			return io.EOF
		}
		if err != nil {
			return readFailure(err)
		}
		if part.FormName() == f.field {
			return &uploadBodyError{msg: fmt.Sprintf("the multipart body has more than one part named %q", f.field)}
		}
		if _, err := io.Copy(io.Discard, part); err != nil {
			return readFailure(err)
		}
	}
}
