package obsync

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzSplitRecord checks splitRecord against encoding/json on every valid JSON object:
// each known member must come out as exactly the text encoding/json finds for it.
func FuzzSplitRecord(f *testing.F) {
	for _, seed := range []string{
		`{"observation_id":"a","data":{"x":"}]\"{[","y":[1,{"z":null}]},"deleted":false}`,
		`{ "form_type" : "f" , "tags" : [ "a" , "b" ] , "form_type":"g", "base_version": -1.5e3 }`,
		`{"\u0064ata":{"k":"v"},"geolocation":null,"author":"\u00e9\ud83d\ude00","other":{"data":1}}`,
		"{\n\t\"created_at\":\"2025-01-01T00:00:00Z\",\r\n\"updated_at\":true}",
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var members map[string]json.RawMessage
		if !json.Valid(raw) || json.Unmarshal(raw, &members) != nil {
			return
		}
		got := splitRecord(bytes.TrimSpace(raw))
		for key, want := range members {
			field := got.field([]byte(key))
			if field == nil {
				continue
			}
			if !bytes.Equal(*field, want) {
				t.Fatalf("member %q: split %q, encoding/json %q", key, *field, want)
			}
		}
		for _, name := range []string{"observation_id", "form_type", "form_version", "data", "created_at", "updated_at",
			"deleted", "geolocation", "author", "device_id", "tags", "base_version"} {
			if _, ok := members[name]; !ok && len(*got.field([]byte(name))) != 0 {
				t.Fatalf("member %q found by split but absent", name)
			}
		}
	})
}
