package obsync_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/obsync"
)

// validFields is a complete record as Formulus sends it; cases override single fields.
func validFields() map[string]string {
	return map[string]string{
		"observation_id": `"obs_1712345678901_42"`,
		"form_type":      `"household"`,
		"form_version":   `"1.0.0"`,
		"data":           `{"name": "Ana", "age": 31}`,
		"created_at":     `"2025-12-01T10:11:12.345Z"`,
		"updated_at":     `"2025-12-01T10:11:12.345Z"`,
		"deleted":        `false`,
	}
}

// rawRecord builds record JSON from validFields with the given overrides; an override of ""
// removes the field.
func rawRecord(overrides map[string]string) json.RawMessage {
	f := validFields()
	for k, v := range overrides {
		if v == "" {
			delete(f, k)
		} else {
			f[k] = v
		}
	}
	parts := make([]string, 0, len(f))
	for k, v := range f {
		parts = append(parts, fmt.Sprintf("%q: %s", k, v))
	}
	return json.RawMessage("{" + strings.Join(parts, ", ") + "}")
}

func TestParseRecordRefuses(t *testing.T) {
	t.Parallel()
	long := `"` + strings.Repeat("x", 256) + `"`
	cases := []struct {
		name      string
		raw       json.RawMessage // when nil, built from overrides
		overrides map[string]string
		code      string
		mentions  string
	}{
		{name: "array instead of object", raw: json.RawMessage(`[1, 2]`), code: obsync.CodeInvalidRecord, mentions: "object"},
		{name: "string instead of object", raw: json.RawMessage(`"obs"`), code: obsync.CodeInvalidRecord},
		{name: "null record", raw: json.RawMessage(`null`), code: obsync.CodeInvalidRecord},
		{name: "empty", raw: json.RawMessage(` `), code: obsync.CodeInvalidRecord},
		{name: "broken JSON", raw: json.RawMessage(`{"observation_id": "a",`), code: obsync.CodeInvalidRecord},
		{name: "a member twice", raw: json.RawMessage(`{"observation_id": "a", "observation_id": "b"}`), code: obsync.CodeInvalidRecord, mentions: "observation_id"},
		{name: "an unknown member twice", raw: rawRecord(map[string]string{"note": `1, "note": 2`}), code: obsync.CodeInvalidRecord, mentions: "note"},
		{name: "invalid UTF-8", raw: json.RawMessage("{\"observation_id\": \"a\xff\"}"), code: obsync.CodeInvalidRecord, mentions: "UTF-8"},
		{name: "too large", raw: json.RawMessage(`{"data": "` + strings.Repeat("x", obsync.MaxRecordBytes) + `"}`), code: obsync.CodeTooLarge},

		{name: "observation_id missing", overrides: map[string]string{"observation_id": ""}, code: obsync.CodeMissingField, mentions: "observation_id"},
		{name: "observation_id null", overrides: map[string]string{"observation_id": "null"}, code: obsync.CodeMissingField, mentions: "observation_id"},
		{name: "observation_id empty", overrides: map[string]string{"observation_id": `""`}, code: obsync.CodeMissingField, mentions: "observation_id"},
		{name: "observation_id a number", overrides: map[string]string{"observation_id": `42`}, code: obsync.CodeInvalidField, mentions: "observation_id"},
		{name: "observation_id over 255 bytes", overrides: map[string]string{"observation_id": long}, code: obsync.CodeTooLarge, mentions: "observation_id"},
		{name: "observation_id with NUL", overrides: map[string]string{"observation_id": `"a\u0000b"`}, code: obsync.CodeInvalidField, mentions: "observation_id"},

		{name: "form_type not a string", overrides: map[string]string{"form_type": `["a"]`}, code: obsync.CodeInvalidField, mentions: "form_type"},
		{name: "form_type a number", overrides: map[string]string{"form_type": `3`}, code: obsync.CodeInvalidField, mentions: "form_type"},
		{name: "form_type with NUL", overrides: map[string]string{"form_type": `"house\u0000hold"`}, code: obsync.CodeInvalidField, mentions: "form_type"},
		{name: "form_type over 255 bytes", overrides: map[string]string{"form_type": long}, code: obsync.CodeTooLarge, mentions: "form_type"},
		{name: "form_version a number", overrides: map[string]string{"form_version": `1`}, code: obsync.CodeInvalidField, mentions: "form_version"},

		{name: "data missing", overrides: map[string]string{"data": ""}, code: obsync.CodeMissingField, mentions: "data"},
		{name: "data null", overrides: map[string]string{"data": "null"}, code: obsync.CodeMissingField, mentions: "data"},
		{name: "data an array", overrides: map[string]string{"data": `[{"a": 1}]`}, code: obsync.CodeInvalidField, mentions: "data"},
		{name: "data a string", overrides: map[string]string{"data": `"{}"`}, code: obsync.CodeInvalidField, mentions: "data"},
		{name: "data a number", overrides: map[string]string{"data": `7`}, code: obsync.CodeInvalidField, mentions: "data"},

		{name: "created_at missing", overrides: map[string]string{"created_at": ""}, code: obsync.CodeMissingField, mentions: "created_at"},
		{name: "created_at a number", overrides: map[string]string{"created_at": `1712345678901`}, code: obsync.CodeInvalidField, mentions: "created_at"},
		{name: "created_at not a date", overrides: map[string]string{"created_at": `"yesterday"`}, code: obsync.CodeInvalidField, mentions: "created_at"},
		{name: "created_at date only", overrides: map[string]string{"created_at": `"2025-12-01"`}, code: obsync.CodeInvalidField, mentions: "created_at"},
		{name: "created_at without offset", overrides: map[string]string{"created_at": `"2025-12-01T10:11:12"`}, code: obsync.CodeInvalidField, mentions: "created_at"},
		{name: "created_at empty", overrides: map[string]string{"created_at": `""`}, code: obsync.CodeInvalidField, mentions: "created_at"},
		{name: "created_at year 0000", overrides: map[string]string{"created_at": `"0000-06-01T00:00:00Z"`}, code: obsync.CodeInvalidField, mentions: "created_at"},
		{name: "created_at before year 1 in UTC", overrides: map[string]string{"created_at": `"0001-01-01T00:30:00+01:00"`}, code: obsync.CodeInvalidField, mentions: "created_at"},
		{name: "created_at month 13", overrides: map[string]string{"created_at": `"2025-13-01T00:00:00Z"`}, code: obsync.CodeInvalidField, mentions: "created_at"},
		{name: "updated_at missing", overrides: map[string]string{"updated_at": ""}, code: obsync.CodeMissingField, mentions: "updated_at"},
		{name: "updated_at not a date", overrides: map[string]string{"updated_at": `"Mon, 01 Dec 2025 10:11:12 GMT"`}, code: obsync.CodeInvalidField, mentions: "updated_at"},

		{name: "deleted a string", overrides: map[string]string{"deleted": `"true"`}, code: obsync.CodeInvalidField, mentions: "deleted"},
		{name: "deleted a number", overrides: map[string]string{"deleted": `1`}, code: obsync.CodeInvalidField, mentions: "deleted"},
		{name: "author an object", overrides: map[string]string{"author": `{"name": "a"}`}, code: obsync.CodeInvalidField, mentions: "author"},
		{name: "created_at a number", overrides: map[string]string{"created_at": `1733000000000`}, code: obsync.CodeInvalidField, mentions: "created_at"},

		{name: "geolocation an array", overrides: map[string]string{"geolocation": `[1, 2]`}, code: obsync.CodeInvalidField, mentions: "geolocation"},
		{name: "geolocation latitude a string", overrides: map[string]string{"geolocation": `{"latitude": "1", "longitude": 2}`}, code: obsync.CodeInvalidField, mentions: "geolocation"},
		{name: "geolocation latitude null", overrides: map[string]string{"geolocation": `{"latitude": null, "longitude": 2}`}, code: obsync.CodeInvalidField, mentions: "latitude"},
		{name: "geolocation accuracy a string", overrides: map[string]string{"geolocation": `{"latitude": 1, "longitude": 2, "accuracy": "5"}`}, code: obsync.CodeInvalidField, mentions: "accuracy"},
		{name: "geolocation altitude a boolean", overrides: map[string]string{"geolocation": `{"latitude": 1, "longitude": 2, "altitude": true}`}, code: obsync.CodeInvalidField, mentions: "altitude"},
		{name: "geolocation bad timestamp", overrides: map[string]string{"geolocation": `{"latitude": 1, "longitude": 2, "timestamp": "noon"}`}, code: obsync.CodeInvalidField, mentions: "timestamp"},
		{name: "geolocation timestamp an object", overrides: map[string]string{"geolocation": `{"latitude": 1, "longitude": 2, "timestamp": {}}`}, code: obsync.CodeInvalidField, mentions: "timestamp"},
		{name: "geolocation latitude twice", overrides: map[string]string{"geolocation": `{"latitude": 1, "longitude": 2, "latitude": 3}`}, code: obsync.CodeInvalidRecord, mentions: "latitude"},

		{name: "author a number", overrides: map[string]string{"author": `7`}, code: obsync.CodeInvalidField, mentions: "author"},
		{name: "author with NUL", overrides: map[string]string{"author": `"a\u0000"`}, code: obsync.CodeInvalidField, mentions: "author"},
		{name: "tags not an array", overrides: map[string]string{"tags": `"a,b"`}, code: obsync.CodeInvalidField, mentions: "tags"},
		{name: "tags with a number", overrides: map[string]string{"tags": `["a", 1]`}, code: obsync.CodeInvalidField, mentions: "tags"},
		{name: "tag with NUL", overrides: map[string]string{"tags": `["a\u0000"]`}, code: obsync.CodeInvalidField, mentions: "tag"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			raw := tc.raw
			if raw == nil {
				raw = rawRecord(tc.overrides)
			}
			_, rerr := obsync.ParseRecord(raw)
			require.NotNil(t, rerr, "record was accepted: %s", raw)
			require.Equal(t, tc.code, rerr.Code, rerr.Message)
			require.NotEmpty(t, rerr.Message)
			require.Contains(t, rerr.Message, tc.mentions)
		})
	}
}

func TestParseRecordKeepsClientText(t *testing.T) {
	t.Parallel()
	geo := `{"latitude": -1.2921, "longitude": 36.8219, "accuracy": 12.50, "altitude": null, "altitude_accuracy": null, "timestamp": "2025-12-01T08:11:00.000Z", "provider": "gps"}`
	data := `{ "z": 1.50,  "a": [1e3, "x\u00e9"], "nested": {"k": null} }`
	rec, rerr := obsync.ParseRecord(rawRecord(map[string]string{
		"data":         data,
		"created_at":   `"2025-12-01T10:11:12.345+02:00"`,
		"updated_at":   `"2025-12-01T10:11:12.345678901-05:30"`,
		"geolocation":  geo,
		"author":       `"ana"`,
		"device_id":    `"formulus-abc123"`,
		"tags":         `["urgent", "visit 2"]`,
		"base_version": `7`,
		"deleted":      `true`,
		"version":      `99`,
		"synced_at":    `"2020-01-01T00:00:00Z"`,
	}))
	require.Nil(t, rerr)
	require.Equal(t, "obs_1712345678901_42", rec.ObservationID)
	require.Equal(t, "household", rec.FormType)
	require.Equal(t, "1.0.0", rec.FormVersion)
	require.Equal(t, data, string(rec.Data))
	require.Equal(t, geo, string(rec.Geolocation))
	require.Equal(t, "2025-12-01T10:11:12.345+02:00", rec.CreatedAtText)
	require.Equal(t, "2025-12-01T10:11:12.345678901-05:30", rec.UpdatedAtText)
	require.Equal(t, "2025-12-01T08:11:12.345Z", rec.CreatedAt.UTC().Format("2006-01-02T15:04:05.000Z"))
	require.Equal(t, "2025-12-01T15:41:12.345678901Z", rec.UpdatedAt.UTC().Format("2006-01-02T15:04:05.000000000Z"))
	require.Equal(t, "ana", *rec.Author)
	require.Equal(t, "formulus-abc123", *rec.DeviceID)
	require.True(t, rec.HasTags)
	require.Equal(t, []string{"urgent", "visit 2"}, rec.Tags)
	require.NotNil(t, rec.BaseVersion)
	require.Equal(t, int64(7), *rec.BaseVersion)
	require.True(t, rec.Deleted)
	require.Nil(t, rec.Extra, "version and synced_at are the contract's (the server's) members")
	require.Empty(t, rec.Warnings)
}

// TestParseRecordKeepsUnusualValuesWithAWarning covers what real devices send that lies
// outside the usual ranges: it is stored exactly as sent, and the push answers a warning.
func TestParseRecordKeepsUnusualValuesWithAWarning(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name     string
		over     map[string]string
		code     string
		mentions string
	}{
		{"iOS negative vertical accuracy", map[string]string{"geolocation": `{"latitude": 1, "longitude": 2, "altitude": null, "altitude_accuracy": -1}`}, obsync.WarningUnusualValue, "altitude_accuracy"},
		{"negative accuracy", map[string]string{"geolocation": `{"latitude": 1, "longitude": 2, "accuracy": -5.5}`}, obsync.WarningUnusualValue, "accuracy"},
		{"latitude 91", map[string]string{"geolocation": `{"latitude": 91, "longitude": 2}`}, obsync.WarningUnusualValue, "latitude"},
		{"latitude -90.5", map[string]string{"geolocation": `{"latitude": -90.5, "longitude": 2}`}, obsync.WarningUnusualValue, "latitude"},
		{"longitude 181", map[string]string{"geolocation": `{"latitude": 1, "longitude": 181}`}, obsync.WarningUnusualValue, "longitude"},
		{"no latitude", map[string]string{"geolocation": `{"longitude": 2, "accuracy": 3}`}, obsync.WarningUnusualValue, "latitude"},
		{"empty geolocation", map[string]string{"geolocation": `{}`}, obsync.WarningUnusualValue, "latitude"},
		{"form_type missing", map[string]string{"form_type": ""}, obsync.WarningMissingFormType, "form_type"},
		{"form_type null", map[string]string{"form_type": "null"}, obsync.WarningMissingFormType, "form_type"},
		{"form_version missing", map[string]string{"form_version": ""}, obsync.WarningUnusualValue, "form_version"},
		{"deleted missing", map[string]string{"deleted": ""}, obsync.WarningUnusualValue, "deleted"},
		{"base_version negative", map[string]string{"base_version": `-1`}, obsync.WarningUnusualValue, "base_version"},
		{"base_version fractional", map[string]string{"base_version": `1.5`}, obsync.WarningUnusualValue, "base_version"},
		{"base_version a string", map[string]string{"base_version": `"3"`}, obsync.WarningUnusualValue, "base_version"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, rerr := obsync.ParseRecord(rawRecord(tc.over))
			require.Nil(t, rerr)
			require.Len(t, r.Warnings, 1, "%+v", r.Warnings)
			w := r.Warnings[0]
			require.Equal(t, "obs_1712345678901_42", w.ID)
			require.Equal(t, tc.code, w.Code)
			require.Contains(t, w.Message, tc.mentions)
			if geo, ok := tc.over["geolocation"]; ok {
				require.Equal(t, geo, string(r.Geolocation), "the geolocation is kept as sent")
			}
		})
	}

	r, rerr := obsync.ParseRecord(rawRecord(map[string]string{"form_type": "", "form_version": "", "deleted": ""}))
	require.Nil(t, rerr)
	require.Equal(t, "", r.FormType)
	require.Equal(t, "", r.FormVersion)
	require.False(t, r.Deleted)
	require.Len(t, r.Warnings, 3)
	r, rerr = obsync.ParseRecord(rawRecord(map[string]string{"base_version": `-1`}))
	require.Nil(t, rerr)
	require.Nil(t, r.BaseVersion, "an unusable base_version is ignored")
}

// TestParseRecordKeepsUnknownMembers covers members the contract does not name, at the top
// and in the geolocation: they are kept as sent, without a warning, and are content.
func TestParseRecordKeepsUnknownMembers(t *testing.T) {
	t.Parallel()
	geo := `{"latitude": 1, "longitude": 2, "heading": -1, "speed": -1.0, "mocked": false, "timestamp": 1733047860000}`
	raw := json.RawMessage(`{"observation_id": "obs_1", "form_type": "f", "form_version": "1", "data": {},
		"created_at": "2025-12-01T10:11:12.345Z", "updated_at": "2025-12-01T10:11:12.345Z", "deleted": false,
		"app_build" : "2.1.0+77", "geolocation": ` + geo + `, "meta":{ "retries": [1, 2] }, "café": null}`)
	r, rerr := obsync.ParseRecord(raw)
	require.Nil(t, rerr)
	require.Empty(t, r.Warnings)
	require.Equal(t, geo, string(r.Geolocation))
	require.Equal(t, `{"app_build" : "2.1.0+77","meta":{ "retries": [1, 2] },"café": null}`, string(r.Extra),
		"the members as sent, in order")

	without, rerr := obsync.ParseRecord(json.RawMessage(`{"observation_id": "obs_1", "form_type": "f", "form_version": "1", "data": {},
		"created_at": "2025-12-01T10:11:12.345Z", "updated_at": "2025-12-01T10:11:12.345Z", "deleted": false, "geolocation": ` + geo + `}`))
	require.Nil(t, rerr)
	require.NotEqual(t, without.Hash, r.Hash, "unknown members are content")
}

func TestParseRecordOptionalFields(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name   string
		over   map[string]string
		assert func(t *testing.T, r obsync.Record)
	}{
		{"all optional fields absent", nil, func(t *testing.T, r obsync.Record) {
			require.Nil(t, r.Geolocation)
			require.Nil(t, r.Author)
			require.Nil(t, r.DeviceID)
			require.False(t, r.HasTags)
			require.Nil(t, r.BaseVersion)
			require.False(t, r.Deleted)
		}},
		{"optional fields null", map[string]string{"geolocation": "null", "author": "null", "device_id": "null", "tags": "null", "base_version": "null"}, func(t *testing.T, r obsync.Record) {
			require.Nil(t, r.Geolocation)
			require.Nil(t, r.Author)
			require.Nil(t, r.DeviceID)
			require.False(t, r.HasTags)
			require.Nil(t, r.BaseVersion)
		}},
		{"empty tags are kept apart from no tags", map[string]string{"tags": "[]"}, func(t *testing.T, r obsync.Record) {
			require.True(t, r.HasTags)
			require.Empty(t, r.Tags)
		}},
		{"empty form_type and author are allowed", map[string]string{"form_type": `""`, "author": `""`}, func(t *testing.T, r obsync.Record) {
			require.Equal(t, "", r.FormType)
			require.Equal(t, "", *r.Author)
		}},
		{"base_version 0", map[string]string{"base_version": "0"}, func(t *testing.T, r obsync.Record) {
			require.Equal(t, int64(0), *r.BaseVersion)
		}},
		{"observation_id of exactly 255 bytes", map[string]string{"observation_id": `"` + strings.Repeat("é", 127) + `x"`}, func(t *testing.T, r obsync.Record) {
			require.Len(t, r.ObservationID, 255)
		}},
		{"NUL escaped inside data", map[string]string{"data": `{"note": "a\u0000b"}`}, func(t *testing.T, r obsync.Record) {
			require.Equal(t, `{"note": "a\u0000b"}`, string(r.Data))
		}},
		{"escaped text is decoded", map[string]string{"observation_id": `"obs-\u00e9\"1\\"`, "author": `"Ana\tB"`, "form_type": `"house\/hold"`, "created_at": `"2025-12-01T10:11:12\u002e345Z"`}, func(t *testing.T, r obsync.Record) {
			require.Equal(t, `obs-é"1\`, r.ObservationID)
			require.Equal(t, "Ana\tB", *r.Author)
			require.Equal(t, "house/hold", r.FormType)
			require.Equal(t, "2025-12-01T10:11:12.345Z", r.CreatedAtText)
			require.Equal(t, 345, r.CreatedAt.Nanosecond()/1e6)
		}},
		{"deleted true", map[string]string{"deleted": `true`}, func(t *testing.T, r obsync.Record) {
			require.True(t, r.Deleted)
		}},
		{"empty data object", map[string]string{"data": `{}`}, func(t *testing.T, r obsync.Record) {
			require.Equal(t, `{}`, string(r.Data))
		}},
		{"geolocation at the limits", map[string]string{"geolocation": `{"latitude": -90, "longitude": 180, "accuracy": 0}`}, func(t *testing.T, r obsync.Record) {
			require.Equal(t, `{"latitude": -90, "longitude": 180, "accuracy": 0}`, string(r.Geolocation))
		}},
		{"years 0001 and 9999", map[string]string{"created_at": `"0001-01-01T00:00:00Z"`, "updated_at": `"9999-12-31T23:59:59.999Z"`}, func(t *testing.T, r obsync.Record) {
			require.Equal(t, 1, r.CreatedAt.Year())
			require.Equal(t, 9999, r.UpdatedAt.Year())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r, rerr := obsync.ParseRecord(rawRecord(tc.over))
			require.Nil(t, rerr)
			tc.assert(t, r)
		})
	}
}

func TestParseRecordContentHash(t *testing.T) {
	t.Parallel()
	parse := func(over map[string]string) obsync.Record {
		t.Helper()
		r, rerr := obsync.ParseRecord(rawRecord(over))
		require.Nil(t, rerr)
		return r
	}
	base := parse(map[string]string{"data": `{"a": 1, "b": [1, 2]}`})
	require.Equal(t, base.Hash, parse(map[string]string{"data": `{"a": 1, "b": [1, 2]}`}).Hash, "the same record has the same hash")
	require.Equal(t, base.Hash, parse(map[string]string{"data": `{"a": 1, "b": [1, 2]}`, "base_version": "3"}).Hash, "base_version is not content")

	for name, over := range map[string]map[string]string{
		"data":         {"data": `{"a": 2, "b": [1, 2]}`},
		"form_type":    {"data": `{"a": 1, "b": [1, 2]}`, "form_type": `"visit"`},
		"form_version": {"data": `{"a": 1, "b": [1, 2]}`, "form_version": `"2"`},
		"updated_at":   {"data": `{"a": 1, "b": [1, 2]}`, "updated_at": `"2025-12-02T00:00:00Z"`},
		"created_at":   {"data": `{"a": 1, "b": [1, 2]}`, "created_at": `"2025-12-02T00:00:00Z"`},
		"deleted":      {"data": `{"a": 1, "b": [1, 2]}`, "deleted": "true"},
		"geolocation":  {"data": `{"a": 1, "b": [1, 2]}`, "geolocation": `{"latitude": 1, "longitude": 2}`},
		"author":       {"data": `{"a": 1, "b": [1, 2]}`, "author": `"ana"`},
		"empty author": {"data": `{"a": 1, "b": [1, 2]}`, "author": `""`},
		"device_id":    {"data": `{"a": 1, "b": [1, 2]}`, "device_id": `"d"`},
		"empty tags":   {"data": `{"a": 1, "b": [1, 2]}`, "tags": `[]`},
	} {
		require.NotEqual(t, base.Hash, parse(over).Hash, "a change of %s is a change of content", name)
	}
}
