package obsync

import (
	"bytes"
	"encoding/json"
	"testing"
	"unicode/utf8"
)

// FuzzSplitRecord checks splitRecord against encoding/json on every valid JSON object:
// each contract member must come out as exactly the text encoding/json finds for it, and
// the other members, put back together, as the rest of the object.
func FuzzSplitRecord(f *testing.F) {
	for _, seed := range []string{
		`{"observation_id":"a","data":{"x":"}]\"{[","y":[1,{"z":null}]},"deleted":false}`,
		`{ "form_type" : "f" , "tags" : [ "a" , "b" ] , "form_type":"g", "base_version": -1.5e3 }`,
		`{"\u0064ata":{"k":"v"},"geolocation":null,"author":"\u00e9\ud83d\ude00","other":{"data":1}}`,
		"{\n\t\"created_at\":\"2025-01-01T00:00:00Z\",\r\n\"updated_at\":true, \"heading\" : -1 }",
		`{"mocked":false,"x\"y":[{}],"speed":1e2}`,
		`{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var members map[string]json.RawMessage
		if !utf8.Valid(raw) || !json.Valid(raw) || json.Unmarshal(raw, &members) != nil {
			return
		}
		got, e := splitRecord(raw)
		if e != nil {
			return // a member named twice: encoding/json keeps the last, the push refuses the record
		}
		if n := len(got.named) + len(got.unnamed); n != len(members) {
			t.Fatalf("split found %d members, encoding/json %d", n, len(members))
		}
		others := map[string]json.RawMessage{}
		for key, want := range members {
			if !contractMembers[key] {
				others[key] = want
				continue
			}
			if g := got.get(key); !bytes.Equal(g, want) {
				t.Fatalf("member %q: split %q, encoding/json %q", key, g, want)
			}
		}
		var extra map[string]json.RawMessage
		if ex := got.extra(); ex != nil {
			if err := json.Unmarshal(ex, &extra); err != nil {
				t.Fatalf("the other members %q are not a JSON object: %v", ex, err)
			}
		}
		if len(extra) != len(others) {
			t.Fatalf("other members: split %v, encoding/json %v", extra, others)
		}
		for key, want := range others {
			if !bytes.Equal(extra[key], want) {
				t.Fatalf("other member %q: split %q, encoding/json %q", key, extra[key], want)
			}
		}
	})
}
