package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"

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
		b = obsync.AppendRecordJSON(b, &p.Records[i])
	}
	return append(b, "]}\n"...)
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
