package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
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
	b = jsonbytes.AppendString(b, r.ObservationID)
	b = append(b, `,"form_type":`...)
	b = jsonbytes.AppendString(b, r.FormType)
	b = append(b, `,"form_version":`...)
	b = jsonbytes.AppendString(b, r.FormVersion)
	b = append(b, `,"data":`...)
	b = append(b, r.Data...)
	b = append(b, `,"created_at":`...)
	b = jsonbytes.AppendString(b, r.CreatedAtText)
	b = append(b, `,"updated_at":`...)
	b = jsonbytes.AppendString(b, r.UpdatedAtText)
	b = append(b, `,"synced_at":`...)
	b = jsonbytes.AppendString(b, r.SyncedAt.UTC().Format(time.RFC3339Nano))
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
		b = jsonbytes.AppendString(b, *r.Author)
	}
	if r.DeviceID != nil {
		b = append(b, `,"device_id":`...)
		b = jsonbytes.AppendString(b, *r.DeviceID)
	}
	if r.Tags != nil {
		b = append(b, `,"tags":[`...)
		for i, t := range r.Tags {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonbytes.AppendString(b, t)
		}
		b = append(b, ']')
	}
	return append(b, '}')
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
