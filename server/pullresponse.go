package server

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strconv"

	"github.com/opendataensemble/synkronus/server/obsync"
)

// pullResponse writes a pull page straight from the database rows. data, geolocation and
// the members the contract does not name are stored as the client's JSON text and are
// copied verbatim, so a page costs no decoding and no re-encoding of the form data; and the
// page is streamed record by record instead of being built in one buffer first.
type pullResponse struct {
	page obsync.PullPage
}

func (r pullResponse) VisitSyncPullResponse(w http.ResponseWriter) error {
	p := r.page
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Repository-Generation", strconv.FormatInt(p.RepositoryGeneration, 10))
	w.WriteHeader(http.StatusOK)

	b := make([]byte, 0, 4<<10) // one record at a time; it grows to the largest
	b = append(b, `{"current_version":`...)
	b = strconv.AppendInt(b, p.CurrentVersion, 10)
	b = append(b, `,"repository_generation":`...)
	b = strconv.AppendInt(b, p.RepositoryGeneration, 10)
	b = append(b, `,"change_cutoff":`...)
	b = strconv.AppendInt(b, p.ChangeCutoff, 10)
	b = append(b, `,"has_more":`...)
	b = strconv.AppendBool(b, p.HasMore)
	b = append(b, `,"sync_format_version":"1.0","records":[`...)
	bw := bufio.NewWriterSize(w, 32<<10)
	for i := range p.Records {
		if i > 0 {
			b = append(b, ',')
		}
		b = obsync.AppendRecordJSON(b, &p.Records[i])
		if _, err := bw.Write(b); err != nil {
			return err
		}
		b = b[:0]
	}
	b = append(b, "]}\n"...)
	if _, err := bw.Write(b); err != nil {
		return err
	}
	return bw.Flush()
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
