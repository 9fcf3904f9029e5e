package server_test

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/export"
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

func TestExportRawJSONKeepsDataAsStored(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	seedExportData(t, env)
	zr, _ := exportZip(t, env, env.AdminToken(), "/api/dataexport/raw-json", "observations_raw_json.zip")
	files := zipFiles(t, zr)
	require.ElementsMatch(t, []string{"household/h-a.json", "household/h-b.json", "visit/v-1.json"}, mapKeys(files))

	doc := files["household/h-a.json"]
	require.True(t, bytes.HasPrefix(doc, []byte("{\n  \"observation_id\": \"h-a\",\n")), "pretty-printed: %s", doc)
	var got struct {
		ObservationID string          `json:"observation_id"`
		FormType      string          `json:"form_type"`
		Version       int64           `json:"version"`
		CreatedAt     string          `json:"created_at"`
		Deleted       bool            `json:"deleted"`
		Tags          []string        `json:"tags"`
		Author        string          `json:"author"`
		Geolocation   json.RawMessage `json:"geolocation"`
		Data          json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(doc, &got))
	require.Equal(t, "household", got.FormType)
	require.Equal(t, int64(1), got.Version)
	require.Equal(t, "2025-12-01T10:11:12.345+02:00", got.CreatedAt, "timestamps as the client sent them")
	require.Equal(t, []string{"urgent", "visit 2"}, got.Tags)
	require.Equal(t, "ana", got.Author)
	var compact bytes.Buffer
	require.NoError(t, json.Compact(&compact, []byte(householdA)))
	var gotCompact bytes.Buffer
	require.NoError(t, json.Compact(&gotCompact, got.Data))
	require.Equal(t, compact.String(), gotCompact.String(), "data is exactly as pushed: key order, numbers and escapes")
	require.Contains(t, string(doc), `"big": 9007199254740993`)
	require.Contains(t, string(doc), `"household": {`+"\n", "nested objects stay objects")
}

func TestExportCSVHasTheParquetColumns(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	seedExportData(t, env)
	token := env.AdminToken()
	zr, _ := exportZip(t, env, token, "/api/dataexport/csv", "observations_csv.zip")
	files := zipFiles(t, zr)
	require.ElementsMatch(t, []string{"household.csv", "visit.csv"}, mapKeys(files))
	pzr, _ := exportZip(t, env, token, "/api/dataexport/parquet", "observations_export.zip")
	pq := readParquet(t, zipFiles(t, pzr)["household.parquet"])

	body := files["household.csv"]
	require.True(t, bytes.HasPrefix(body, []byte("\ufeff")), "starts with a byte order mark for spreadsheets")
	records, err := csv.NewReader(bytes.NewReader(body[3:])).ReadAll()
	require.NoError(t, err)
	require.Equal(t, pq.columns, records[0], "the CSV header is the Parquet table's columns")
	require.Len(t, records, 3)
	row := map[string]string{}
	for i, name := range records[0] {
		row[name] = records[1][i]
	}
	require.Equal(t, "h-a", row["observation_id"])
	require.Equal(t, "2025-12-01T08:11:12.345Z", row["created_at"])
	require.Equal(t, "false", row["deleted"])
	require.Equal(t, `["urgent","visit 2"]`, row["tags"])
	require.Equal(t, "-1.2921", row["geolocation.latitude"])
	require.Equal(t, "", row["geolocation.altitude"])
	require.Equal(t, "4", row["data.household.size"])
	require.Equal(t, "1500.5", row["data.income"])
	require.Equal(t, "9007199254740993", row["data.big"])
	require.Equal(t, "12345678901234567890", row["data.huge"], "numbers as they were pushed")
	require.Equal(t, "true", row["data.consent"])
	require.Equal(t, `["maize","beans"]`, row["data.crops"])
	require.Equal(t, "café ☕ \"quoted\"", row["data.note"])
	require.Equal(t, "", row["data.nothing"])
	require.Equal(t, `[{"name":"A"},{"name":"B"}]`, row["data.members"])
}

func TestExportFilters(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := seedExportData(t, env)
	token := env.AdminToken()

	zr, _ := exportZip(t, env, token, "/api/dataexport/parquet?form_type=visit", "observations_export.zip")
	require.ElementsMatch(t, []string{"visit.parquet"}, mapKeys(zipFiles(t, zr)))
	zr, _ = exportZip(t, env, token, "/api/dataexport/raw-json?form_type=visit&form_type=household&form_type=none", "observations_raw_json.zip")
	require.Len(t, zr.File, 3)

	zr, _ = exportZip(t, env, token, "/api/dataexport/parquet?include_deleted=true", "observations_export.zip")
	hh := readParquet(t, zipFiles(t, zr)["household.parquet"])
	rows := hh.byID(t)
	require.Len(t, rows, 3)
	require.Equal(t, true, rows["h-gone"]["deleted"])
	require.Equal(t, int64(5), rows["h-gone"]["version"])
	require.Equal(t, "JSON?", hh.types["data.household.size"], "the deleted observation's text size makes the column mixed")
	require.Equal(t, `"unknown"`, rows["h-gone"]["data.household.size"])
	require.Equal(t, `4`, rows["h-a"]["data.household.size"])

	// Incremental: only what changed after the version of the previous export.
	_, res := exportZip(t, env, token, "/api/dataexport/parquet", "observations_export.zip")
	since := res.Header.Get("X-Export-Version")
	dev.push(exportObservation("v-2", "visit", `{"temperature": 38}`), exportObservation("h-a", "household", `{"household": {"size": 5}}`))
	zr, res = exportZip(t, env, token, "/api/dataexport/parquet?since_version="+since, "observations_export.zip")
	require.Equal(t, "7", res.Header.Get("X-Export-Version"))
	files := zipFiles(t, zr)
	require.Len(t, files, 2)
	visit := readParquet(t, files["visit.parquet"])
	require.Len(t, visit.rows, 1)
	require.Equal(t, "v-2", visit.rows[0]["observation_id"])
	require.Equal(t, int64(38), visit.rows[0]["data.temperature"], "the schema is inferred from the exported rows only")
	household := readParquet(t, files["household.parquet"])
	require.Len(t, household.rows, 1)
	require.Equal(t, int64(5), household.rows[0]["data.household.size"])
	require.Equal(t, int64(7), household.rows[0]["version"])

	zr, _ = exportZip(t, env, token, "/api/dataexport/csv?since_version=7", "observations_csv.zip")
	require.Empty(t, zr.File)
}

func TestExportOfAnEmptyRepository(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("viewer", "read-only")
	for path, name := range map[string]string{
		"/api/dataexport/parquet": "observations_export.zip", "/api/dataexport/raw-json": "observations_raw_json.zip",
		"/api/dataexport/csv": "observations_csv.zip",
	} {
		zr, res := exportZip(t, env, token, path, name)
		require.Empty(t, zr.File, path)
		require.Equal(t, "0", res.Header.Get("X-Export-Version"))
	}
}

func TestExportNamesFilesSafely(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("collector", "read-write"), "formulus-1")
	formTypes := []string{"../../etc/passwd", "a/b", `C:\x`, "CON", "Visit", "visit", "", ".hidden", "ends with dot.", "100%"}
	var records []string
	for i, ft := range formTypes {
		records = append(records, exportObservation(fmt.Sprintf("../obs/%d", i), ft, fmt.Sprintf(`{"n": %d}`, i)))
	}
	dev.push(records...)
	token := env.AdminToken()

	zr, _ := exportZip(t, env, token, "/api/dataexport/parquet", "observations_export.zip")
	files := zipFiles(t, zr)
	require.Len(t, files, len(formTypes), "one file per form type, none overwriting another")
	seen := map[string]bool{}
	got := map[string]bool{}
	for name, body := range files {
		require.True(t, strings.HasSuffix(name, ".parquet"), name)
		require.NotContains(t, name, "/")
		require.NotContains(t, name, `\`)
		require.NotContains(t, name, ":")
		require.False(t, strings.HasPrefix(name, "."), name)
		lower := strings.ToLower(name)
		require.False(t, seen[lower], "%s collides on a case-insensitive file system", name)
		seen[lower] = true
		rows := readParquet(t, body).rows
		require.Len(t, rows, 1)
		got[rows[0]["form_type"].(string)] = true
	}
	require.Len(t, got, len(formTypes))
	require.Contains(t, mapKeys(files), "%2E.%2F..%2Fetc%2Fpasswd.parquet")
	require.Contains(t, mapKeys(files), "%43ON.parquet")
	require.True(t, seen["visit~2.parquet"], "the second of Visit and visit gets a suffix")

	zr, _ = exportZip(t, env, token, "/api/dataexport/raw-json", "observations_raw_json.zip")
	for _, f := range zr.File {
		dir, file, ok := strings.Cut(f.Name, "/")
		require.True(t, ok, f.Name)
		require.NotContains(t, file, "/", f.Name)
		require.NotEqual(t, "..", dir)
		require.False(t, strings.HasPrefix(file, "."), f.Name)
	}
	require.Len(t, zr.File, len(formTypes))
}

func TestExportAccess(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	for _, path := range []string{"/api/dataexport/parquet", "/api/dataexport/raw-json", "/api/dataexport/csv"} {
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: path})
		requireSyncProblem(t, res, http.StatusUnauthorized, "")
	}
	token := env.CreateUser("writer", "read-write")
	// Older clients (the synk CLI) call the root path without x-ode-version.
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/dataexport/parquet", Token: token, NoVersion: true})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	require.Equal(t, "application/zip", res.Header.Get("Content-Type"))

	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/dataexport/csv?since_version=-1", Token: token})
	requireSyncProblem(t, res, http.StatusBadRequest, "")
	res = env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/dataexport/raw-json?form_type=a%00b", Token: token})
	requireSyncProblem(t, res, http.StatusBadRequest, "")
}

func TestExportMovesFieldsPastTheColumnLimitToOneColumn(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("collector", "read-write"), "formulus-1")
	var data strings.Builder
	data.WriteString(`{`)
	for i := range export.MaxDataColumns + 2 {
		fmt.Fprintf(&data, `"f%d": %d,`, i, i)
	}
	data.WriteString(`"last": {"x.y": "z"}}`)
	dev.push(exportObservation("wide", "wide", data.String()))
	zr, _ := exportZip(t, env, env.AdminToken(), "/api/dataexport/parquet", "observations_export.zip")
	wide := readParquet(t, zipFiles(t, zr)["wide.parquet"])
	require.Len(t, wide.columns, len(exportMetaTypes)+export.MaxDataColumns+1)
	require.Equal(t, export.ExtraColumn, wide.columns[len(wide.columns)-1])
	require.Equal(t, "JSON?", wide.types[export.ExtraColumn])
	row := wide.rows[0]
	require.Equal(t, int64(1999), row["data.f1999"])
	require.JSONEq(t, `{"f2000": 2000, "f2001": 2001, "last.x\\.y": "z"}`, row[export.ExtraColumn].(string))
}

// An export that fails after its first bytes went out must not look like a complete
// download: the connection is cut, and the client's read fails.
func TestExportFailureAfterTheStartBreaksTheDownload(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	dev := newSyncDevice(t, env, env.CreateUser("collector", "read-write"), "formulus-1")
	random := make([]byte, 30<<10)
	for batch := range 8 {
		var records []string
		for i := range 40 {
			_, _ = rand.Read(random)
			records = append(records, exportObservation(fmt.Sprintf("o-%d-%d", batch, i), fmt.Sprintf("form-%d", batch%2),
				fmt.Sprintf(`{"noise": %q}`, hex.EncodeToString(random))))
		}
		dev.push(records...)
	}

	req, err := http.NewRequest(http.MethodGet, env.HTTP.URL+"/api/dataexport/parquet", nil)
	require.NoError(t, err)
	req.Header.Set("X-Ode-Version", servertest.Version)
	req.Header.Set("Authorization", "Bearer "+env.AdminToken())
	res, err := env.HTTP.Client().Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	_, err = io.ReadFull(res.Body, make([]byte, 1024))
	require.NoError(t, err)

	// The export is now blocked on this client; take its database connection away.
	var terminated bool
	require.Eventually(t, func() bool {
		err := env.Pool.QueryRow(t.Context(), `SELECT coalesce(bool_or(pg_terminate_backend(pid)), false) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'SELECT observation_id, version%'`).Scan(&terminated)
		return err == nil && terminated
	}, 10*time.Second, 20*time.Millisecond)

	body, err := io.ReadAll(res.Body)
	require.Error(t, err, "the download must break, not end as if complete (%d more bytes read)", len(body))
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// A second, independent Parquet reader: DuckDB, from the npm package pinned in tools/duckdb
// (.ci/run installs it; elsewhere `npm ci --prefix tools/duckdb`). It must see the same
// columns, with the same types, and the same values as the parquet-go read-back above.
func TestExportParquetOpensInDuckDB(t *testing.T) {
	t.Parallel()
	script, err := filepath.Abs(filepath.Join("..", "tools", "duckdb", "query.mjs"))
	require.NoError(t, err)
	node, err := exec.LookPath("node")
	if _, statErr := os.Stat(filepath.Join(filepath.Dir(script), "node_modules", "@duckdb")); err != nil || statErr != nil {
		if os.Getenv("SYNKRONUS_REQUIRE_DUCKDB") != "" {
			t.Fatal("DuckDB is required here but not installed: run npm ci --prefix tools/duckdb")
		}
		t.Skip("DuckDB is not installed: run npm ci --prefix tools/duckdb (needs Node.js) to read the export with it too")
	}
	env := servertest.New(t)
	seedExportData(t, env)
	zr, _ := exportZip(t, env, env.AdminToken(), "/api/dataexport/parquet", "observations_export.zip")
	file := filepath.Join(t.TempDir(), "household.parquet")
	require.NoError(t, os.WriteFile(file, zipFiles(t, zr)["household.parquet"], 0o600))

	query := `SELECT observation_id, version, created_at, deleted, tags, "geolocation.latitude",
		"data.household.size", "data.big", "data.income", "data.consent", "data.crops", "data.a\.b", "data.ünï"
		FROM read_parquet('` + file + `') ORDER BY observation_id`
	out, err := exec.Command(node, script, query).CombinedOutput()
	require.NoError(t, err, "%s", out)
	var got struct {
		Columns []string `json:"columns"`
		Types   []string `json:"types"`
		Rows    [][]any  `json:"rows"`
	}
	require.NoError(t, json.Unmarshal(out, &got), "%s", out)
	// The JSON column reads as VARCHAR: DuckDB types Parquet's JSON annotation as JSON only
	// when its json extension is loaded, which this offline install does not fetch.
	require.Equal(t, []string{"VARCHAR", "BIGINT", "TIMESTAMP WITH TIME ZONE", "BOOLEAN", "VARCHAR[]", "DOUBLE",
		"BIGINT", "BIGINT", "DOUBLE", "BOOLEAN", "VARCHAR", "VARCHAR", "VARCHAR"}, got.Types, "columns %v", got.Columns)
	require.Len(t, got.Rows, 2, "the deleted observation is left out")
	a := got.Rows[0]
	require.Equal(t, "h-a", a[0])
	require.Equal(t, "1", a[1], "DuckDB prints BIGINT as a string")
	require.Contains(t, a[2], "2025-12-01 08:11:12.345")
	require.Equal(t, false, a[3])
	require.Equal(t, []any{"urgent", "visit 2"}, a[4])
	require.Equal(t, -1.2921, a[5])
	require.Equal(t, "4", a[6])
	require.Equal(t, "9007199254740993", a[7], "a large integer keeps every digit")
	require.Equal(t, 1500.5, a[8])
	require.Equal(t, true, a[9])
	require.Equal(t, `["maize","beans"]`, a[10])
	require.Equal(t, "dotted key", a[11])
	require.Equal(t, "x", a[12])
	b := got.Rows[1]
	require.Equal(t, "h-b", b[0])
	require.Equal(t, []any{}, b[4], "an empty tag list stays an empty list")
	require.Nil(t, b[5], "no geolocation is null, not zero")
	require.Equal(t, "-9223372036854775808", b[7])
	require.Equal(t, 1200.0, b[8])
	require.Nil(t, b[11], "a field the record lacks is null")
}
