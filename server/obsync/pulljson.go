package obsync

import (
	"strconv"
	"time"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
)

// AppendRecordJSON appends r as the JSON object a pull returns. data, geolocation and the
// members the contract does not name are the client's stored JSON text and are copied
// verbatim: no decoding, no re-encoding.
func AppendRecordJSON(b []byte, r *PulledRecord) []byte {
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
	if len(r.Extra) > 2 {
		// The members the contract does not name follow the named ones, as sent: the
		// stored object without its braces.
		b = append(b, ',')
		b = append(b, r.Extra[1:len(r.Extra)-1]...)
	}
	return append(b, '}')
}
