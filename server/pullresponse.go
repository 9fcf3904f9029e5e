package server

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/opendataensemble/synkronus/server/obsync"
)

// pullResponse writes a pull page straight from the database rows. data, geolocation and
// the members the contract does not name are stored as the client's JSON text and are
// copied verbatim, so a page costs no decoding and no re-encoding of the form data; and the
// page is streamed, record by record, instead of being built in one buffer first.
type pullResponse struct {
	page obsync.PullPage
}

func (r pullResponse) VisitSyncPullResponse(w http.ResponseWriter) error {
	var size pageWriter // a first pass only counts, so that the answer has a Content-Length
	r.write(&size)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Repository-Generation", strconv.FormatInt(r.page.RepositoryGeneration, 10))
	h.Set("Content-Length", strconv.FormatInt(size.n, 10))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 32<<10)
	out := pageWriter{w: bw}
	r.write(&out)
	if out.err != nil {
		return out.err
	}
	return bw.Flush()
}

// pageWriter writes a page to w, or only counts its bytes when w is nil. Small members are
// gathered in buf; large stored JSON goes to w directly. The first write error is kept and
// ends the writing.
type pageWriter struct {
	w   io.Writer
	buf []byte
	n   int64
	err error
}

// flush writes what buf holds.
func (p *pageWriter) flush() {
	p.write(p.buf)
	p.buf = p.buf[:0]
}

func (p *pageWriter) write(b []byte) {
	p.n += int64(len(b))
	if p.w != nil && p.err == nil {
		_, p.err = p.w.Write(b)
	}
}

// raw writes stored JSON text as it is.
func (p *pageWriter) raw(b []byte) {
	p.flush()
	p.write(b)
}

func (r pullResponse) write(p *pageWriter) {
	page := r.page
	p.buf = append(p.buf, `{"current_version":`...)
	p.buf = strconv.AppendInt(p.buf, page.CurrentVersion, 10)
	p.buf = append(p.buf, `,"repository_generation":`...)
	p.buf = strconv.AppendInt(p.buf, page.RepositoryGeneration, 10)
	p.buf = append(p.buf, `,"change_cutoff":`...)
	p.buf = strconv.AppendInt(p.buf, page.ChangeCutoff, 10)
	p.buf = append(p.buf, `,"has_more":`...)
	p.buf = strconv.AppendBool(p.buf, page.HasMore)
	p.buf = append(p.buf, `,"sync_format_version":"1.0","records":[`...)
	for i := range page.Records {
		if p.err != nil {
			return
		}
		if i > 0 {
			p.buf = append(p.buf, ',')
		}
		writeRecord(p, &page.Records[i])
	}
	p.buf = append(p.buf, "]}\n"...)
	p.flush()
}

func writeRecord(p *pageWriter, r *obsync.PulledRecord) {
	p.buf = append(p.buf, `{"observation_id":`...)
	p.buf = appendString(p.buf, r.ObservationID)
	p.buf = append(p.buf, `,"form_type":`...)
	p.buf = appendString(p.buf, r.FormType)
	p.buf = append(p.buf, `,"form_version":`...)
	p.buf = appendString(p.buf, r.FormVersion)
	p.buf = append(p.buf, `,"data":`...)
	p.raw(r.Data)
	p.buf = append(p.buf, `,"created_at":`...)
	p.buf = appendString(p.buf, r.CreatedAtText)
	p.buf = append(p.buf, `,"updated_at":`...)
	p.buf = appendString(p.buf, r.UpdatedAtText)
	p.buf = append(p.buf, `,"synced_at":`...)
	p.buf = appendString(p.buf, r.SyncedAt.UTC().Format(time.RFC3339Nano))
	p.buf = append(p.buf, `,"deleted":`...)
	p.buf = strconv.AppendBool(p.buf, r.Deleted)
	p.buf = append(p.buf, `,"version":`...)
	p.buf = strconv.AppendInt(p.buf, r.Version, 10)
	if r.Geolocation != nil {
		p.buf = append(p.buf, `,"geolocation":`...)
		p.raw(r.Geolocation)
	}
	if r.Author != nil {
		p.buf = append(p.buf, `,"author":`...)
		p.buf = appendString(p.buf, *r.Author)
	}
	if r.DeviceID != nil {
		p.buf = append(p.buf, `,"device_id":`...)
		p.buf = appendString(p.buf, *r.DeviceID)
	}
	if r.Tags != nil {
		p.buf = append(p.buf, `,"tags":[`...)
		for i, t := range r.Tags {
			if i > 0 {
				p.buf = append(p.buf, ',')
			}
			p.buf = appendString(p.buf, t)
		}
		p.buf = append(p.buf, ']')
	}
	if len(r.Extra) > 2 {
		// The members the contract does not name follow the named ones, as sent: the
		// stored object without its braces.
		p.buf = append(p.buf, ',')
		p.raw(r.Extra[1 : len(r.Extra)-1])
	}
	p.buf = append(p.buf, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping only what JSON requires.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				b = append(b, s[start:i]...)
				b = append(b, `\ufffd`...)
				i++
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[start:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		}
		i++
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// rawJSON passes stored JSON text through to a typed response; nil stays absent.
func rawJSON(raw []byte) *json.RawMessage {
	if raw == nil {
		return nil
	}
	m := json.RawMessage(raw)
	return &m
}

func tagsOf(tags []string) *[]string {
	if tags == nil {
		return nil
	}
	return &tags
}
