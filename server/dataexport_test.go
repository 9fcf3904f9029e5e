package server_test

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/servertest"
)

// exportObservation is a pushed observation of a form type with the given data and extra
// members.
func exportObservation(id, formType, data string, extra ...string) string {
	s := fmt.Sprintf(`{"observation_id":%q,"form_type":%q,"form_version":"2","data":%s,`+
		`"created_at":"2025-12-01T10:11:12.345+02:00","updated_at":"2025-12-02T08:00:00.000Z","deleted":false`, id, formType, data)
	for _, e := range extra {
		s += "," + e
	}
	return s + "}"
}

// exportZip downloads an export and opens the archive, checking the response headers.
func exportZip(t *testing.T, env *servertest.Env, token, path, filename string) (*zip.Reader, *servertest.Response) {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: path, Token: token})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	require.Equal(t, "application/zip", res.Header.Get("Content-Type"))
	require.Equal(t, `attachment; filename="`+filename+`"`, res.Header.Get("Content-Disposition"))
	require.NotEmpty(t, res.Header.Get("X-Export-Version"))
	zr, err := zip.NewReader(bytes.NewReader(res.Body), int64(len(res.Body)))
	require.NoError(t, err, "the export is not a readable zip")
	return zr, res
}

func zipFiles(t *testing.T, zr *zip.Reader) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	for _, f := range zr.File {
		rc, err := f.Open()
		require.NoError(t, err)
		b, err := io.ReadAll(rc) // also checks the CRC
		require.NoError(t, err, f.Name)
		require.NoError(t, rc.Close())
		files[f.Name] = b
	}
	return files
}

// parquetTable is a Parquet file read back with the library: its columns and their types
// in file order, and its rows as column name -> Go value (nil for null).
type parquetTable struct {
	columns []string
	types   map[string]string
	rows    []map[string]any
	meta    map[string]string
}

func readParquet(t *testing.T, data []byte) parquetTable {
	t.Helper()
	f, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	require.NoError(t, err, "not a readable Parquet file")
	pt := parquetTable{types: map[string]string{}, meta: map[string]string{}}
	for _, kv := range f.Metadata().KeyValueMetadata {
		pt.meta[kv.Key] = kv.Value
	}
	for _, field := range f.Schema().Fields() {
		name := field.Name()
		pt.columns = append(pt.columns, name)
		typ := "?"
		var lt format.LogicalTypeValue
		if l := field.Type().LogicalType(); l != nil {
			lt = l.Value
		}
		switch lt.(type) {
		case *format.ListType:
			typ = "LIST<" + field.Fields()[0].Fields()[0].Type().String() + ">"
		case *format.StringType:
			typ = "STRING"
		case *format.JsonType:
			typ = "JSON"
		case *format.TimestampType:
			typ = "TIMESTAMP"
		default:
			typ = field.Type().Kind().String()
		}
		if field.Optional() {
			typ += "?"
		}
		pt.types[name] = typ
	}
	leafName := map[int]string{}
	for i, path := range f.Schema().Columns() {
		leafName[i] = path[0]
	}
	r := parquet.NewReader(f)
	defer r.Close()
	rows := make([]parquet.Row, 16)
	for {
		n, err := r.ReadRows(rows)
		for _, row := range rows[:n] {
			m := map[string]any{}
			for _, v := range row {
				name := leafName[v.Column()]
				switch {
				case strings.HasPrefix(pt.types[name], "LIST"):
					list, _ := m[name].([]string)
					if v.DefinitionLevel() == 0 {
						m[name] = nil
					} else if v.DefinitionLevel() == 1 {
						m[name] = []string{}
					} else {
						m[name] = append(list, string(v.ByteArray()))
					}
				case v.IsNull():
					m[name] = nil
				case pt.types[name] == "STRING" || pt.types[name] == "STRING?" || strings.HasPrefix(pt.types[name], "JSON"):
					m[name] = string(v.ByteArray())
				case strings.HasPrefix(pt.types[name], "TIMESTAMP"):
					m[name] = time.UnixMicro(v.Int64()).UTC()
				case v.Kind() == parquet.Int64:
					m[name] = v.Int64()
				case v.Kind() == parquet.Double:
					m[name] = v.Double()
				case v.Kind() == parquet.Boolean:
					m[name] = v.Boolean()
				default:
					t.Fatalf("unexpected value kind %s in column %s", v.Kind(), name)
				}
			}
			pt.rows = append(pt.rows, m)
		}
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
	}
	require.Len(t, pt.rows, int(f.NumRows()))
	return pt
}

func (pt parquetTable) byID(t *testing.T) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, r := range pt.rows {
		out[r["observation_id"].(string)] = r
	}
	return out
}

// The metadata columns every table starts with, and their types.
var exportMetaTypes = []struct{ name, typ string }{
	{"observation_id", "STRING"}, {"form_type", "STRING"}, {"form_version", "STRING"}, {"version", "INT64"},
	{"created_at", "TIMESTAMP"}, {"updated_at", "TIMESTAMP"}, {"synced_at", "TIMESTAMP"}, {"deleted", "BOOLEAN"},
	{"author", "STRING?"}, {"device_id", "STRING?"}, {"tags", "LIST<STRING>?"},
	{"geolocation.latitude", "DOUBLE?"}, {"geolocation.longitude", "DOUBLE?"}, {"geolocation.accuracy", "DOUBLE?"},
	{"geolocation.altitude", "DOUBLE?"}, {"geolocation.altitude_accuracy", "DOUBLE?"}, {"geolocation.timestamp", "STRING?"},
}

const householdA = `{
	"household": {"size": 4, "head": {"name": "Amina", "age": 34}},
	"income": 1500.5, "consent": true, "crops": ["maize", "beans"], "mixed": 1,
	"big": 9007199254740993, "huge": 12345678901234567890, "note": "caf\u00e9 ☕ \"quoted\"",
	"a.b": "dotted key", "a": {"b": "nested"}, "back\\slash": 1,
	"with space": 7, "quote\"d": true, "ünï": "x", "": "empty key",
	"nothing": null, "flag": false, "members": [{"name": "A"}, {"name": "B"}], "empty": {}
}`

const householdB = `{"household": {"size": 6}, "income": 1200, "consent": false, "mixed": "one",
	"big": -9223372036854775808, "huge": 1, "flag": true, "members": []}`

func seedExportData(t *testing.T, env *servertest.Env) *syncDevice {
	t.Helper()
	dev := newSyncDevice(t, env, env.CreateUser("collector", "read-write"), "formulus-1")
	dev.push(
		exportObservation("h-a", "household", householdA,
			`"geolocation":{"latitude":-1.2921,"longitude":36.8219,"accuracy":12,"altitude":null,"timestamp":"2025-12-01T08:11:00.000Z"}`,
			`"author":"ana"`, `"device_id":"dev-1"`, `"tags":["urgent","visit 2"]`),
		exportObservation("h-b", "household", householdB, `"tags":[]`),
		exportObservation("v-1", "visit", `{"temperature": 37.5, "date": "2025-01-02"}`),
		exportObservation("h-gone", "household", `{"household": {"size": "unknown"}, "only_deleted": 1}`),
	)
	gone := exportObservation("h-gone", "household", `{"household": {"size": "unknown"}, "only_deleted": 1}`)
	dev.push(strings.Replace(gone, `"deleted":false`, `"deleted":true`, 1))
	return dev
}

func TestExportParquetTypesEveryValue(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	seedExportData(t, env)
	zr, res := exportZip(t, env, env.CreateUser("analyst", "read-only"), "/api/dataexport/parquet", "observations_export.zip")
	require.Equal(t, "5", res.Header.Get("X-Export-Version"))
	files := zipFiles(t, zr)
	require.ElementsMatch(t, []string{"household.parquet", "visit.parquet"}, mapKeys(files))

	hh := readParquet(t, files["household.parquet"])
	for i, m := range exportMetaTypes {
		require.Equal(t, m.name, hh.columns[i], "metadata columns come first, in order")
		require.Equal(t, m.typ, hh.types[m.name], m.name)
	}
	wantData := []struct{ name, typ string }{
		{"data.household.size", "INT64?"}, {"data.household.head.name", "STRING?"}, {"data.household.head.age", "INT64?"},
		{"data.income", "DOUBLE?"}, {"data.consent", "BOOLEAN?"}, {"data.crops", "JSON?"}, {"data.mixed", "JSON?"},
		{"data.big", "INT64?"}, {"data.huge", "DOUBLE?"}, {"data.note", "STRING?"},
		{`data.a\.b`, "STRING?"}, {"data.a.b", "STRING?"}, {`data.back\\slash`, "INT64?"},
		{"data.with space", "INT64?"}, {`data.quote"d`, "BOOLEAN?"}, {"data.ünï", "STRING?"}, {`data.\e`, "STRING?"},
		{"data.nothing", "STRING?"}, {"data.flag", "BOOLEAN?"}, {"data.members", "JSON?"},
	}
	require.Len(t, hh.columns, len(exportMetaTypes)+len(wantData), "columns: %v", hh.columns)
	for i, d := range wantData {
		require.Equal(t, d.name, hh.columns[len(exportMetaTypes)+i], "data columns in order of first appearance")
		require.Equal(t, d.typ, hh.types[d.name], d.name)
	}
	require.Equal(t, "household", hh.meta["synkronus.form_type"])

	rows := hh.byID(t)
	require.Len(t, rows, 2, "the deleted observation is left out")
	a, b := rows["h-a"], rows["h-b"]
	require.Equal(t, "household", a["form_type"])
	require.Equal(t, "2", a["form_version"])
	require.Equal(t, int64(1), a["version"])
	require.Equal(t, time.Date(2025, 12, 1, 8, 11, 12, 345e6, time.UTC), a["created_at"])
	require.Equal(t, time.Date(2025, 12, 2, 8, 0, 0, 0, time.UTC), a["updated_at"])
	require.WithinDuration(t, time.Now(), a["synced_at"].(time.Time), time.Minute)
	require.Equal(t, false, a["deleted"])
	require.Equal(t, "ana", a["author"])
	require.Equal(t, "dev-1", a["device_id"])
	require.Equal(t, []string{"urgent", "visit 2"}, a["tags"])
	require.Equal(t, -1.2921, a["geolocation.latitude"])
	require.Equal(t, 36.8219, a["geolocation.longitude"])
	require.Equal(t, 12.0, a["geolocation.accuracy"])
	require.Nil(t, a["geolocation.altitude"])
	require.Nil(t, a["geolocation.altitude_accuracy"])
	require.Equal(t, "2025-12-01T08:11:00.000Z", a["geolocation.timestamp"])

	require.Equal(t, int64(4), a["data.household.size"])
	require.Equal(t, "Amina", a["data.household.head.name"])
	require.Equal(t, int64(34), a["data.household.head.age"])
	require.Equal(t, 1500.5, a["data.income"])
	require.Equal(t, true, a["data.consent"])
	require.Equal(t, `["maize","beans"]`, a["data.crops"])
	require.Equal(t, `1`, a["data.mixed"])
	require.Equal(t, int64(9007199254740993), a["data.big"], "integers are not rounded through float64")
	require.Equal(t, 12345678901234567890.0, a["data.huge"])
	require.Equal(t, "café ☕ \"quoted\"", a["data.note"])
	require.Equal(t, "dotted key", a[`data.a\.b`])
	require.Equal(t, "nested", a["data.a.b"])
	require.Equal(t, int64(1), a[`data.back\\slash`])
	require.Equal(t, int64(7), a["data.with space"])
	require.Equal(t, true, a[`data.quote"d`])
	require.Equal(t, "x", a["data.ünï"])
	require.Equal(t, "empty key", a[`data.\e`])
	require.Nil(t, a["data.nothing"])
	require.Equal(t, false, a["data.flag"])
	require.Equal(t, `[{"name":"A"},{"name":"B"}]`, a["data.members"])

	require.Equal(t, int64(2), b["version"])
	require.Nil(t, b["author"])
	require.Nil(t, b["device_id"])
	require.Equal(t, []string{}, b["tags"])
	require.Nil(t, b["geolocation.latitude"])
	require.Nil(t, b["geolocation.timestamp"])
	require.Equal(t, int64(6), b["data.household.size"])
	require.Nil(t, b["data.household.head.name"], "a field the observation lacks is null")
	require.Equal(t, 1200.0, b["data.income"])
	require.Equal(t, `"one"`, b["data.mixed"], "mixed types are JSON text")
	require.Equal(t, int64(-9223372036854775808), b["data.big"])
	require.Equal(t, 1.0, b["data.huge"])
	require.Equal(t, `[]`, b["data.members"])
	require.Nil(t, b["data.crops"])

	visit := readParquet(t, files["visit.parquet"])
	require.Equal(t, []string{"data.temperature", "data.date"}, visit.columns[len(exportMetaTypes):])
	v := visit.byID(t)["v-1"]
	require.Equal(t, 37.5, v["data.temperature"])
	require.Equal(t, "2025-01-02", v["data.date"])
	require.Nil(t, v["tags"])
}

func mapKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
