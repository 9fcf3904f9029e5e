// Package obsync is observation sync: validating pushed records, resolving conflicts, and
// the push and pull transactions that keep every device's copy of the data in step.
package obsync

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
)

// Limits bound what one record may carry.
const (
	MaxIDBytes     = 255
	MaxTextBytes   = 255 // form_type and form_version
	MaxRecordBytes = 1 << 20
)

// Failure codes reported in failed_records; every such record is quarantined.
const (
	CodeInvalidRecord = "INVALID_RECORD"
	CodeMissingField  = "MISSING_FIELD"
	CodeInvalidField  = "INVALID_FIELD"
	CodeTooLarge      = "TOO_LARGE"
	// CodeRefused is a record PostgreSQL refused although it passed validation.
	CodeRefused = "REFUSED_BY_DATABASE"
)

// Warning codes of records stored with a remark.
const (
	// WarningConflict is a write that was based on an out-of-date copy.
	WarningConflict = "CONFLICT"
	// WarningMissingFormType is a record without form_type, stored with an empty one (the
	// code upstream uses for the same case).
	WarningMissingFormType = "MISSING_FORM_TYPE"
	// WarningUnusualValue is a record stored as sent although a value is outside its usual
	// range, or stored with a default for a missing member.
	WarningUnusualValue = "UNUSUAL_VALUE"
)

// Record is one validated observation as the client sent it. Data and Geolocation hold the
// client's JSON text unchanged, DataAt and GeolocationAt where it starts in the record;
// CreatedAtText and UpdatedAtText hold its timestamp text.
type Record struct {
	Index         int // position in its push
	ObservationID string
	FormType      string
	FormVersion   string
	Data          json.RawMessage
	DataAt        int
	Geolocation   json.RawMessage // nil when absent or null
	GeolocationAt int
	// Extra holds the members the contract does not name, as a JSON object of their text
	// as sent; nil when there are none.
	Extra         []byte
	Author        *string
	DeviceID      *string
	Tags          []string // nil when absent or null
	HasTags       bool
	CreatedAt     time.Time
	CreatedAtText string
	UpdatedAt     time.Time
	UpdatedAtText string
	Deleted       bool
	BaseVersion   *int64
	Hash          [32]byte
	// Warnings are the remarks on values stored as they are although they are unusual.
	Warnings []Warning
}

// RecordError explains why a record cannot be stored, in words a person can act on.
type RecordError struct {
	Code    string
	Message string
}

func (e *RecordError) Error() string { return e.Message }

func fail(code, format string, args ...any) *RecordError {
	return &RecordError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// contractMembers are the Observation members the contract names. version and synced_at
// are the server's: sent back on pull, ignored on push.
var contractMembers = map[string]bool{
	"observation_id": true, "form_type": true, "form_version": true, "data": true, "created_at": true,
	"updated_at": true, "deleted": true, "geolocation": true, "author": true, "device_id": true,
	"tags": true, "base_version": true, "version": true, "synced_at": true,
}

// PeekID returns the observation_id of a raw record when it has a readable one, for
// reporting a record that failed validation. NUL characters are replaced with U+FFFD: the
// answer is kept as the push receipt in a jsonb column, which cannot hold them, and one bad
// id must not fail the whole push.
func PeekID(raw json.RawMessage) string {
	var w struct {
		ID any `json:"observation_id"`
	}
	if json.Unmarshal(raw, &w) != nil {
		return ""
	}
	id, _ := w.ID.(string)
	return strings.ReplaceAll(id, "\x00", "\uFFFD")
}

// ParseRecord validates one pushed record and returns it, or the reason it cannot be stored.
//
// The rule: a record is stored when every device can read it back, exactly as it was sent,
// in the types and formats the contract declares. Unusual values that keep to those types
// (ranges, unknown members) are stored as sent with a warning; a missing form_type,
// form_version or deleted takes the value upstream gave it ("", "", false), with a warning.
// Anything else (no usable id, an updated_at conflict resolution cannot order, a member of
// the wrong type, text PostgreSQL cannot hold) cannot be stored and is quarantined.
func ParseRecord(raw json.RawMessage) (Record, *RecordError) {
	if !json.Valid(raw) {
		return Record{}, fail(CodeInvalidRecord, "record is not valid JSON")
	}
	return parseValidJSON(raw)
}

// parseValidJSON is ParseRecord for text already known to be valid JSON, such as an
// element of a push body the HTTP layer decoded: it is not scanned a second time.
func parseValidJSON(raw json.RawMessage) (Record, *RecordError) {
	var r Record
	if len(raw) > MaxRecordBytes {
		return r, fail(CodeTooLarge, "record is %d bytes; the limit is %d", len(raw), MaxRecordBytes)
	}
	if i := jsonbytes.SkipSpace(raw, 0); i >= len(raw) || raw[i] != '{' {
		return r, fail(CodeInvalidRecord, "record must be a JSON object")
	}
	if !utf8.Valid(raw) {
		return r, fail(CodeInvalidRecord, "record is not valid UTF-8")
	}
	w, e := splitRecord(raw)
	if e != nil {
		return r, e
	}
	warn := func(code, format string, args ...any) {
		r.Warnings = append(r.Warnings, Warning{ID: r.ObservationID, Code: code, Message: fmt.Sprintf(format, args...)})
	}
	if r.ObservationID, e = requiredText("observation_id", w.get("observation_id"), MaxIDBytes); e != nil {
		return r, e
	}
	if r.ObservationID == "" {
		return r, fail(CodeMissingField, "observation_id must not be empty")
	}
	var missing bool
	if r.FormType, missing, e = defaultedText("form_type", w.get("form_type")); e != nil {
		return r, e
	} else if missing {
		warn(WarningMissingFormType, "form_type is missing; the record was stored with an empty form_type")
	}
	if r.FormVersion, missing, e = defaultedText("form_version", w.get("form_version")); e != nil {
		return r, e
	} else if missing {
		warn(WarningUnusualValue, "form_version is missing; the record was stored with an empty form_version")
	}
	data := w.get("data")
	if isAbsent(data) {
		return r, fail(CodeMissingField, "data is required")
	}
	if data[0] != '{' {
		return r, fail(CodeInvalidField, "data must be a JSON object")
	}
	r.Data, r.DataAt = data, w.at("data")
	if r.CreatedAt, r.CreatedAtText, e = timestamp("created_at", w.get("created_at")); e != nil {
		return r, e
	}
	if r.UpdatedAt, r.UpdatedAtText, e = timestamp("updated_at", w.get("updated_at")); e != nil {
		return r, e
	}
	if del := w.get("deleted"); isAbsent(del) {
		warn(WarningUnusualValue, "deleted is missing; the record was stored as not deleted")
	} else if string(del) == "true" || string(del) == "false" {
		r.Deleted = string(del) == "true"
	} else {
		return r, fail(CodeInvalidField, "deleted must be true or false")
	}
	if geo := w.get("geolocation"); !isAbsent(geo) {
		notes, e := geolocation(geo)
		if e != nil {
			return r, e
		}
		r.Geolocation, r.GeolocationAt = geo, w.at("geolocation")
		for _, n := range notes {
			warn(WarningUnusualValue, "%s; the geolocation was stored as sent", n)
		}
	}
	if r.Author, e = optionalText("author", w.get("author")); e != nil {
		return r, e
	}
	if r.DeviceID, e = optionalText("device_id", w.get("device_id")); e != nil {
		return r, e
	}
	if r.Tags, r.HasTags, e = tags(w.get("tags")); e != nil {
		return r, e
	}
	if bv := w.get("base_version"); !isAbsent(bv) {
		var v int64
		if err := json.Unmarshal(bv, &v); err != nil || v < 0 {
			warn(WarningUnusualValue, "base_version %s is not a non-negative integer and was ignored", truncate(string(bv), 32))
		} else {
			r.BaseVersion = &v
		}
	}
	r.Extra = w.extra()
	r.Hash = r.contentHash()
	return r, nil
}

// wireRecord is where a record's members lie in its text.
type wireRecord struct {
	raw     []byte
	named   map[string]member // the contract's members
	unnamed []member          // the others, in order
}

// splitRecord locates the members of a record. A record naming a member twice is refused:
// which of the values the sender meant is unknowable, and storing one would drop the other.
func splitRecord(raw []byte) (wireRecord, *RecordError) {
	w := wireRecord{raw: raw, named: make(map[string]member, 12)}
	var dup *member
	eachMember(raw, func(m member) {
		seen := false
		if contractMembers[m.name] {
			_, seen = w.named[m.name]
			w.named[m.name] = m
		} else {
			for _, u := range w.unnamed {
				seen = seen || u.name == m.name
			}
			w.unnamed = append(w.unnamed, m)
		}
		if seen && dup == nil {
			dup = &m
		}
	})
	if dup != nil {
		return w, fail(CodeInvalidRecord, "the record names the member %q more than once", truncate(dup.name, 64))
	}
	return w, nil
}

// get returns the text of a contract member's value; nil when it is absent.
func (w wireRecord) get(name string) json.RawMessage {
	m, ok := w.named[name]
	if !ok {
		return nil
	}
	return w.raw[m.valStart:m.valEnd]
}

// at returns where a contract member's value starts in the record.
func (w wireRecord) at(name string) int { return w.named[name].valStart }

// extra returns the members the contract does not name as one JSON object, each member's
// text exactly as sent; nil when there are none.
func (w wireRecord) extra() []byte {
	if len(w.unnamed) == 0 {
		return nil
	}
	b := []byte{'{'}
	for i, m := range w.unnamed {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, w.raw[m.keyStart:m.valEnd]...)
	}
	return append(b, '}')
}

// unquote decodes v, a value in valid JSON text, into the string s: a string without
// escapes is its text between the quotes (most are; encoding/json would check the whole
// value again first), anything else goes through encoding/json, which also refuses a
// value that is not a string.
func unquote(v []byte, s *string) error {
	if len(v) >= 2 && v[0] == '"' && bytes.IndexByte(v[1:len(v)-1], '\\') < 0 {
		*s = string(v[1 : len(v)-1])
		return nil
	}
	return json.Unmarshal(v, s)
}

func isAbsent(v json.RawMessage) bool {
	return len(v) == 0 || string(v) == "null"
}

func requiredText(field string, v json.RawMessage, maxBytes int) (string, *RecordError) {
	if isAbsent(v) {
		return "", fail(CodeMissingField, "%s is required", field)
	}
	var s string
	if err := unquote(v, &s); err != nil {
		return "", fail(CodeInvalidField, "%s must be a string", field)
	}
	return s, checkText(field, s, maxBytes)
}

// defaultedText reads a member that is required by the contract but that upstream stored
// as "" when it was missing; missing reports that.
func defaultedText(field string, v json.RawMessage) (s string, missing bool, e *RecordError) {
	if isAbsent(v) {
		return "", true, nil
	}
	s, e = requiredText(field, v, MaxTextBytes)
	return s, false, e
}

func optionalText(field string, v json.RawMessage) (*string, *RecordError) {
	if isAbsent(v) {
		return nil, nil
	}
	var s string
	if err := unquote(v, &s); err != nil {
		return nil, fail(CodeInvalidField, "%s must be a string or null", field)
	}
	return &s, checkText(field, s, math.MaxInt)
}

// checkText refuses what PostgreSQL text cannot hold (NUL) and over-long values.
func checkText(field, s string, maxBytes int) *RecordError {
	if len(s) > maxBytes {
		return fail(CodeTooLarge, "%s is %d bytes; the limit is %d", field, len(s), maxBytes)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return fail(CodeInvalidField, "%s must not contain NUL characters", field)
	}
	return nil
}

func timestamp(field string, v json.RawMessage) (time.Time, string, *RecordError) {
	if isAbsent(v) {
		return time.Time{}, "", fail(CodeMissingField, "%s is required", field)
	}
	var s string
	if err := unquote(v, &s); err != nil {
		return time.Time{}, "", fail(CodeInvalidField, "%s must be an RFC 3339 date-time string", field)
	}
	t, e := parseTime(field, s)
	return t, s, e
}

func parseTime(field, s string) (time.Time, *RecordError) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || len(s) > 64 {
		return time.Time{}, fail(CodeInvalidField, "%s %q is not an RFC 3339 date-time such as 2025-01-31T09:30:00.000Z", field, truncate(s, 64))
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, fail(CodeInvalidField, "%s %q is outside the years 0001 to 9999", field, s)
	}
	if strings.IndexByte(s, 0) >= 0 {
		return time.Time{}, fail(CodeInvalidField, "%s must not contain NUL characters", field)
	}
	return t, nil
}

// geolocation checks the members of a geolocation object the contract names: each must
// have its type (the contract lets timestamp also be milliseconds since the epoch). Values
// outside the usual ranges, and a position without latitude or longitude, are returned as
// notes: the object is stored as sent. Members the contract does not name are not looked at.
func geolocation(v json.RawMessage) (notes []string, e *RecordError) {
	if v[0] != '{' {
		return nil, fail(CodeInvalidField, "geolocation must be an object or null")
	}
	seen := map[string]bool{}
	var lat, lon *float64
	eachMember(v, func(m member) {
		if e != nil {
			return
		}
		val := v[m.valStart:m.valEnd]
		number := func(nullable bool) *float64 {
			if nullable && string(val) == "null" {
				return nil
			}
			if val[0] != '-' && (val[0] < '0' || val[0] > '9') {
				kind := "a number"
				if nullable {
					kind += " or null"
				}
				e = fail(CodeInvalidField, "geolocation %s must be %s", m.name, kind)
				return nil
			}
			f, err := strconv.ParseFloat(string(val), 64)
			if err != nil {
				notes = append(notes, fmt.Sprintf("geolocation %s %s is out of range", m.name, truncate(string(val), 32)))
				return nil
			}
			return &f
		}
		switch m.name {
		case "latitude", "longitude", "accuracy", "altitude", "altitude_accuracy", "timestamp":
			if seen[m.name] {
				e = fail(CodeInvalidRecord, "geolocation names the member %q more than once", m.name)
				return
			}
			seen[m.name] = true
		}
		switch m.name {
		case "latitude":
			lat = number(false)
		case "longitude":
			lon = number(false)
		case "accuracy", "altitude_accuracy":
			if f := number(m.name == "altitude_accuracy"); f != nil && *f < 0 {
				notes = append(notes, fmt.Sprintf("geolocation %s %v is negative (an unknown accuracy)", m.name, *f))
			}
		case "altitude":
			number(true)
		case "timestamp":
			var s string
			switch {
			case val[0] == '"' && unquote(val, &s) == nil:
				_, e = parseTime("geolocation timestamp", s)
			case val[0] == '-' || (val[0] >= '0' && val[0] <= '9'):
				number(false) // milliseconds since the epoch
			default:
				e = fail(CodeInvalidField, "geolocation timestamp must be an RFC 3339 date-time string or a number of milliseconds")
			}
		}
	})
	if e != nil {
		return nil, e
	}
	switch {
	case !seen["latitude"] || !seen["longitude"]:
		notes = append(notes, "geolocation has no latitude or no longitude")
	case lat != nil && math.Abs(*lat) > 90:
		notes = append(notes, fmt.Sprintf("geolocation latitude %v is outside -90..90", *lat))
	case lon != nil && math.Abs(*lon) > 180:
		notes = append(notes, fmt.Sprintf("geolocation longitude %v is outside -180..180", *lon))
	}
	return notes, nil
}

func tags(v json.RawMessage) ([]string, bool, *RecordError) {
	if isAbsent(v) {
		return nil, false, nil
	}
	var ts []string
	if err := json.Unmarshal(v, &ts); err != nil {
		return nil, false, fail(CodeInvalidField, "tags must be an array of strings or null")
	}
	for _, t := range ts {
		if e := checkText("a tag", t, math.MaxInt); e != nil {
			return nil, false, e
		}
	}
	if ts == nil {
		ts = []string{}
	}
	return ts, true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// contentHash identifies the record's content, so that re-pushing the same content is
// recognised and mints no new version. JSON values are hashed as sent: clients re-send
// the text they stored, and compacting every record first would cost a third pass over it.
func (r *Record) contentHash() [32]byte {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	optional := func(s *string) []byte {
		if s == nil {
			return []byte{0xff}
		}
		return []byte("=" + *s)
	}
	field([]byte(r.FormType))
	field([]byte(r.FormVersion))
	field(r.Data)
	if r.Geolocation == nil {
		field([]byte{0xff})
	} else {
		field(r.Geolocation)
	}
	field(optional(r.Author))
	field(optional(r.DeviceID))
	if r.HasTags {
		tagsJSON, _ := json.Marshal(r.Tags)
		field(tagsJSON)
	} else {
		field([]byte{0xff})
	}
	field([]byte(r.CreatedAtText))
	field([]byte(r.UpdatedAtText))
	if r.Deleted {
		field([]byte{1})
	} else {
		field([]byte{0})
	}
	if r.Extra != nil {
		field(r.Extra) // absent for records without: their hashes stay what they were
	}
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
