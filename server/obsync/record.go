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
	"strings"
	"time"
	"unicode/utf8"
)

// Limits bound what one record may carry.
const (
	MaxIDBytes     = 255
	MaxTextBytes   = 255
	MaxTags        = 100
	MaxRecordBytes = 1 << 20
)

// Failure codes reported in failed_records.
const (
	CodeInvalidRecord = "INVALID_RECORD"
	CodeMissingField  = "MISSING_FIELD"
	CodeInvalidField  = "INVALID_FIELD"
	CodeTooLarge      = "TOO_LARGE"
	// CodeRefused is a record PostgreSQL refused although it passed validation.
	CodeRefused = "REFUSED_BY_DATABASE"
)

// Record is one validated observation as the client sent it. Data and Geolocation hold the
// client's JSON text unchanged; CreatedAtText and UpdatedAtText its timestamp text.
type Record struct {
	Index         int // position in its push
	ObservationID string
	FormType      string
	FormVersion   string
	Data          json.RawMessage
	Geolocation   json.RawMessage // nil when absent or null
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
}

// RecordError explains why a record was refused, in words a person can act on.
type RecordError struct {
	Code    string
	Message string
}

func (e *RecordError) Error() string { return e.Message }

func fail(code, format string, args ...any) *RecordError {
	return &RecordError{Code: code, Message: fmt.Sprintf(format, args...)}
}

// wireRecord holds the contract's Observation members as raw JSON text, so that a wrong
// type in one member is reported for that member instead of failing the whole record.
type wireRecord struct {
	ObservationID json.RawMessage `json:"observation_id"`
	FormType      json.RawMessage `json:"form_type"`
	FormVersion   json.RawMessage `json:"form_version"`
	Data          json.RawMessage `json:"data"`
	CreatedAt     json.RawMessage `json:"created_at"`
	UpdatedAt     json.RawMessage `json:"updated_at"`
	Deleted       json.RawMessage `json:"deleted"`
	Geolocation   json.RawMessage `json:"geolocation"`
	Author        json.RawMessage `json:"author"`
	DeviceID      json.RawMessage `json:"device_id"`
	Tags          json.RawMessage `json:"tags"`
	BaseVersion   json.RawMessage `json:"base_version"`
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

// ParseRecord validates one pushed record and returns it, or the reason it is refused.
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
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		return r, fail(CodeInvalidRecord, "record must be a JSON object")
	}
	if !utf8.Valid(raw) {
		return r, fail(CodeInvalidRecord, "record is not valid UTF-8")
	}
	w := splitRecord(raw)
	var e *RecordError
	if r.ObservationID, e = requiredText("observation_id", w.ObservationID, MaxIDBytes, false); e != nil {
		return r, e
	}
	if r.FormType, e = requiredText("form_type", w.FormType, MaxTextBytes, true); e != nil {
		return r, e
	}
	if r.FormVersion, e = requiredText("form_version", w.FormVersion, MaxTextBytes, true); e != nil {
		return r, e
	}
	if isAbsent(w.Data) {
		return r, fail(CodeMissingField, "data is required")
	}
	if w.Data[0] != '{' {
		return r, fail(CodeInvalidField, "data must be a JSON object")
	}
	r.Data = w.Data
	if r.CreatedAt, r.CreatedAtText, e = timestamp("created_at", w.CreatedAt); e != nil {
		return r, e
	}
	if r.UpdatedAt, r.UpdatedAtText, e = timestamp("updated_at", w.UpdatedAt); e != nil {
		return r, e
	}
	if isAbsent(w.Deleted) {
		return r, fail(CodeMissingField, "deleted is required")
	}
	if err := json.Unmarshal(w.Deleted, &r.Deleted); err != nil {
		return r, fail(CodeInvalidField, "deleted must be true or false")
	}
	if r.Geolocation, e = geolocation(w.Geolocation); e != nil {
		return r, e
	}
	if r.Author, e = optionalText("author", w.Author); e != nil {
		return r, e
	}
	if r.DeviceID, e = optionalText("device_id", w.DeviceID); e != nil {
		return r, e
	}
	if r.Tags, r.HasTags, e = tags(w.Tags); e != nil {
		return r, e
	}
	if !isAbsent(w.BaseVersion) {
		var v int64
		if err := json.Unmarshal(w.BaseVersion, &v); err != nil || v < 0 {
			return r, fail(CodeInvalidField, "base_version must be a non-negative integer")
		}
		r.BaseVersion = &v
	}
	r.Hash = r.contentHash()
	return r, nil
}

func isAbsent(v json.RawMessage) bool {
	return len(v) == 0 || string(v) == "null"
}

func requiredText(field string, v json.RawMessage, maxBytes int, allowEmpty bool) (string, *RecordError) {
	if isAbsent(v) {
		return "", fail(CodeMissingField, "%s is required", field)
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", fail(CodeInvalidField, "%s must be a string", field)
	}
	if s == "" && !allowEmpty {
		return "", fail(CodeMissingField, "%s must not be empty", field)
	}
	return s, checkText(field, s, maxBytes)
}

func optionalText(field string, v json.RawMessage) (*string, *RecordError) {
	if isAbsent(v) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return nil, fail(CodeInvalidField, "%s must be a string or null", field)
	}
	return &s, checkText(field, s, MaxTextBytes)
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
	if err := json.Unmarshal(v, &s); err != nil {
		return time.Time{}, "", fail(CodeInvalidField, "%s must be an RFC 3339 date-time string", field)
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || len(s) > 64 {
		return time.Time{}, "", fail(CodeInvalidField, "%s %q is not an RFC 3339 date-time such as 2025-01-31T09:30:00.000Z", field, truncate(s, 64))
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return time.Time{}, "", fail(CodeInvalidField, "%s %q is outside the years 0001 to 9999", field, s)
	}
	return t, s, nil
}

type wireGeolocation struct {
	Latitude         *float64        `json:"latitude"`
	Longitude        *float64        `json:"longitude"`
	Accuracy         *float64        `json:"accuracy"`
	Altitude         *float64        `json:"altitude"`
	AltitudeAccuracy *float64        `json:"altitude_accuracy"`
	Timestamp        json.RawMessage `json:"timestamp"`
}

func geolocation(v json.RawMessage) (json.RawMessage, *RecordError) {
	if isAbsent(v) {
		return nil, nil
	}
	if v[0] != '{' {
		return nil, fail(CodeInvalidField, "geolocation must be an object or null")
	}
	var g wireGeolocation
	if err := json.Unmarshal(v, &g); err != nil {
		return nil, fail(CodeInvalidField, "geolocation has a field of the wrong type: %v", err)
	}
	switch {
	case g.Latitude == nil || g.Longitude == nil:
		return nil, fail(CodeMissingField, "geolocation needs latitude and longitude")
	case math.Abs(*g.Latitude) > 90:
		return nil, fail(CodeInvalidField, "geolocation latitude %v is outside -90..90", *g.Latitude)
	case math.Abs(*g.Longitude) > 180:
		return nil, fail(CodeInvalidField, "geolocation longitude %v is outside -180..180", *g.Longitude)
	case g.Accuracy != nil && *g.Accuracy < 0:
		return nil, fail(CodeInvalidField, "geolocation accuracy must not be negative")
	case g.AltitudeAccuracy != nil && *g.AltitudeAccuracy < 0:
		return nil, fail(CodeInvalidField, "geolocation altitude_accuracy must not be negative")
	}
	if !isAbsent(g.Timestamp) {
		if _, _, e := timestamp("geolocation timestamp", g.Timestamp); e != nil {
			return nil, e
		}
	}
	return v, nil
}

func tags(v json.RawMessage) ([]string, bool, *RecordError) {
	if isAbsent(v) {
		return nil, false, nil
	}
	var ts []string
	if err := json.Unmarshal(v, &ts); err != nil {
		return nil, false, fail(CodeInvalidField, "tags must be an array of strings or null")
	}
	if len(ts) > MaxTags {
		return nil, false, fail(CodeTooLarge, "%d tags; the limit is %d", len(ts), MaxTags)
	}
	for _, t := range ts {
		if e := checkText("a tag", t, MaxTextBytes); e != nil {
			return nil, false, e
		}
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
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}
