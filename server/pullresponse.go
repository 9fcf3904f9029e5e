package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/opendataensemble/synkronus/server/obsync"
)

// pullResponse writes a pull page straight from the database rows. data and geolocation
// are stored as the client's JSON text and are copied verbatim, so a page costs no
// decoding and no re-encoding of the form data.
type pullResponse struct {
	page obsync.PullPage
}

var pullBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 64<<10); return &b }}

func (r pullResponse) VisitSyncPullResponse(w http.ResponseWriter) error {
	bp := pullBuffers.Get().(*[]byte)
	b := r.appendJSON((*bp)[:0])
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Repository-Generation", strconv.FormatInt(r.page.RepositoryGeneration, 10))
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(b)
	if cap(b) <= 8<<20 { // keep pooled buffers from pinning huge pages
		*bp = b
		pullBuffers.Put(bp)
	}
	return err
}

func (r pullResponse) appendJSON(b []byte) []byte {
	p := r.page
	b = append(b, `{"current_version":`...)
	b = strconv.AppendInt(b, p.CurrentVersion, 10)
	b = append(b, `,"repository_generation":`...)
	b = strconv.AppendInt(b, p.RepositoryGeneration, 10)
	b = append(b, `,"change_cutoff":`...)
	b = strconv.AppendInt(b, p.ChangeCutoff, 10)
	b = append(b, `,"has_more":`...)
	b = strconv.AppendBool(b, p.HasMore)
	b = append(b, `,"sync_format_version":"1.0","records":[`...)
	for i := range p.Records {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendRecord(b, &p.Records[i])
	}
	return append(b, "]}\n"...)
}

func appendRecord(b []byte, r *obsync.PulledRecord) []byte {
	b = append(b, `{"observation_id":`...)
	b = appendString(b, r.ObservationID)
	b = append(b, `,"form_type":`...)
	b = appendString(b, r.FormType)
	b = append(b, `,"form_version":`...)
	b = appendString(b, r.FormVersion)
	b = append(b, `,"data":`...)
	b = append(b, r.Data...)
	b = append(b, `,"created_at":`...)
	b = appendString(b, r.CreatedAtText)
	b = append(b, `,"updated_at":`...)
	b = appendString(b, r.UpdatedAtText)
	b = append(b, `,"synced_at":`...)
	b = appendString(b, r.SyncedAt.UTC().Format(time.RFC3339Nano))
	b = append(b, `,"deleted":`...)
	b = strconv.AppendBool(b, r.Deleted)
	b = append(b, `,"version":`...)
	b = strconv.AppendInt(b, r.Version, 10)
	if r.Geolocation != nil {
		b = append(b, `,"geolocation":`...)
		b = append(b, r.Geolocation...)
	}
	if r.Author != nil {
		b = append(b, `,"author":`...)
		b = appendString(b, *r.Author)
	}
	if r.DeviceID != nil {
		b = append(b, `,"device_id":`...)
		b = appendString(b, *r.DeviceID)
	}
	if r.Tags != nil {
		b = append(b, `,"tags":[`...)
		for i, t := range r.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, t)
		}
		b = append(b, ']')
	}
	return append(b, '}')
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
