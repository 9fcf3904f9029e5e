// Package streambody lets a strict handler read a JSON request body itself, as it arrives,
// instead of receiving it decoded whole: a push can be tens of MiB, and decoding it into
// memory before the handler runs would cost several times that.
package streambody

import "io"

// JSON is a request body type the server's JSON deserializer does not decode: it hands
// over the body's reader, and the handler reads the body with it.
type JSON struct {
	r io.Reader
}

// SetReader is called by the deserializer with the request body.
func (b *JSON) SetReader(r io.Reader) { b.r = r }

// Reader returns the request body; nil when the request had an empty body.
func (b *JSON) Reader() io.Reader { return b.r }
