package jsonbytes

import (
	"errors"
	"fmt"
	"io"
)

// Reader reads JSON text from a stream one token or one whole value at a time, holding in
// memory only the value being read (and what the last read from the stream brought).
type Reader struct {
	r        io.Reader
	buf      []byte
	pos, end int   // buf[pos:end] is read and not consumed
	offset   int64 // of buf[0] in the stream
	err      error // of the stream, once it returned one (io.EOF at its end)
}

// SyntaxError is text that is not JSON.
type SyntaxError struct {
	Offset int64 // of the offending byte in the stream
	Byte   byte
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("unexpected %q at byte %d", e.Byte, e.Offset)
}

// ErrUnexpectedEnd is a stream that ends inside a JSON value.
var ErrUnexpectedEnd = errors.New("the JSON text ends before its value does")

const minRead = 32 << 10

// NewReader reads JSON text from r.
func NewReader(r io.Reader) *Reader {
	return &Reader{r: r, buf: make([]byte, 0, minRead)}
}

// fill reads from the stream until at least want bytes are unconsumed, or the stream ends
// or fails (then returns false; the error is in rd.err).
func (rd *Reader) fill(want int) bool {
	for rd.end-rd.pos < want {
		if rd.err != nil {
			return false
		}
		if rd.pos > 0 { // move the unconsumed bytes to the front
			n := copy(rd.buf[:cap(rd.buf)], rd.buf[rd.pos:rd.end])
			rd.offset += int64(rd.pos)
			rd.pos, rd.end = 0, n
		}
		if need := max(want, rd.end+minRead); need > cap(rd.buf) {
			buf := make([]byte, max(need, 2*cap(rd.buf)))
			copy(buf, rd.buf[:rd.end])
			rd.buf = buf
		}
		buf := rd.buf[:cap(rd.buf)]
		n, err := rd.r.Read(buf[rd.end:])
		rd.end += n
		rd.buf = buf[:rd.end]
		if err != nil {
			rd.err = err
		}
	}
	return true
}

// readErr is the error for a stream that ended or failed where more text was needed.
func (rd *Reader) readErr() error {
	if errors.Is(rd.err, io.EOF) {
		return ErrUnexpectedEnd
	}
	return rd.err
}

// Peek skips whitespace and returns the next byte without consuming it. At the end of the
// stream it returns io.EOF, or the stream's error.
func (rd *Reader) Peek() (byte, error) {
	for {
		rd.pos = SkipSpace(rd.buf[:rd.end], rd.pos)
		if rd.pos < rd.end {
			return rd.buf[rd.pos], nil
		}
		if !rd.fill(1) {
			return 0, rd.err
		}
	}
}

// Consume skips whitespace and consumes the next byte when it is c, reporting whether it
// was. An error is returned only when the stream ended or failed first.
func (rd *Reader) Consume(c byte) (bool, error) {
	next, err := rd.Peek()
	if err != nil {
		return false, rd.readErr()
	}
	if next != c {
		return false, nil
	}
	rd.pos++
	return true, nil
}

// Value skips whitespace and reads the next JSON value whole, checked as encoding/json
// checks it. The text returned is valid until the next call. Errors: *SyntaxError,
// ErrUnexpectedEnd, or the stream's own error.
func (rd *Reader) Value() ([]byte, error) {
	if _, err := rd.Peek(); err != nil {
		return nil, rd.readErr()
	}
	for {
		avail := rd.buf[rd.pos:rd.end]
		final := rd.err != nil // no more text will come
		n, st := Scan(avail, 0, final)
		switch st {
		case Complete:
			rd.pos += n
			return avail[:n], nil
		case Invalid:
			if n == len(avail) { // a number cut short by the end of the text
				return nil, ErrUnexpectedEnd
			}
			return nil, &SyntaxError{Offset: rd.offset + int64(rd.pos+n), Byte: avail[n]}
		}
		// Incomplete: read at least as much again, so that scanning a large value from its
		// start again and again costs no more than twice its length in all.
		if !rd.fill(2*len(avail)) && final {
			return nil, rd.readErr()
		}
	}
}

// Offset returns the position in the stream of the next unconsumed byte.
func (rd *Reader) Offset() int64 { return rd.offset + int64(rd.pos) }
