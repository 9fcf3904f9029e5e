package obsync

import (
	"encoding/json"
	"strings"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
)

// splitRecord finds the members of a record, a JSON object known to be valid JSON. It
// only locates where each value starts and ends, without decoding or copying: on the push
// path this replaces two further passes of encoding/json over every record (the body was
// already validated as a whole). Keys are matched exactly; a repeated key keeps its last
// value, as encoding/json does.
func splitRecord(raw []byte) wireRecord {
	var w wireRecord
	i := jsonbytes.SkipSpace(raw, 0)
	if i >= len(raw) || raw[i] != '{' {
		return w
	}
	jsonbytes.Members(raw, i, func(key, value []byte) {
		if field := w.field(key); field != nil {
			*field = value
		}
	})
	return w
}

func (w *wireRecord) field(key []byte) *json.RawMessage {
	name := string(key) // does not allocate in the switch below
	if strings.IndexByte(name, '\\') >= 0 {
		var unescaped string
		if json.Unmarshal(append(append([]byte{'"'}, key...), '"'), &unescaped) != nil {
			return nil
		}
		name = unescaped
	}
	switch name {
	case "observation_id":
		return &w.ObservationID
	case "form_type":
		return &w.FormType
	case "form_version":
		return &w.FormVersion
	case "data":
		return &w.Data
	case "created_at":
		return &w.CreatedAt
	case "updated_at":
		return &w.UpdatedAt
	case "deleted":
		return &w.Deleted
	case "geolocation":
		return &w.Geolocation
	case "author":
		return &w.Author
	case "device_id":
		return &w.DeviceID
	case "tags":
		return &w.Tags
	case "base_version":
		return &w.BaseVersion
	}
	return nil
}
