package appbundle

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/appbundle/appbundletest"
)

var testLimits = Limits{MaxUploadBytes: 64 << 20, MaxUncompressedBytes: 32 << 20, MaxFiles: 50, MaxRatio: 200}

func validateBytes(t *testing.T, archive []byte) (*bundle, *ValidationError) {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	require.NoError(t, err)
	b, err := validate(zr, int64(len(archive)), testLimits, time.Now())
	if err == nil {
		return b, nil
	}
	require.IsType(t, &ValidationError{}, err)
	return nil, err.(*ValidationError)
}

// requireProblem asserts that a problem with this path and code was reported.
func requireProblem(t *testing.T, ve *ValidationError, path, code string) {
	t.Helper()
	require.NotNil(t, ve, "the bundle was accepted")
	for _, p := range ve.Problems {
		if p.Path == path && p.Code == code {
			require.NotEmpty(t, p.Message)
			return
		}
	}
	t.Fatalf("no %s problem for %q among %+v", code, path, ve.Problems)
}

func TestValidateAcceptsSampleAndIndexesForms(t *testing.T) {
	t.Parallel()
	b, ve := validateBytes(t, appbundletest.Files(appbundletest.Sample()))
	require.Nil(t, ve)
	var paths []string
	for _, f := range b.files {
		paths = append(paths, f.Path)
	}
	require.IsIncreasing(t, paths)
	require.Len(t, paths, len(appbundletest.Sample()))
	for _, f := range b.files {
		require.Equal(t, int64(len(appbundletest.Sample()[f.Path])), f.Size)
		require.Equal(t, appbundletest.Modified, f.ModTime)
	}
	require.Equal(t, "text/html; charset=utf-8", b.files[indexOf(paths, "app/index.html")].ContentType)
	require.Equal(t, "text/jsx; charset=utf-8", b.files[indexOf(paths, "renderers/gps-picker/renderer.jsx")].ContentType)

	require.Equal(t, []string{"household", "person"}, sortedKeys(b.forms))
	person := b.forms["person"]
	require.Equal(t, []string{"core_id"}, sortedKeys(person.CoreFields), "x-core marks a core field")
	require.JSONEq(t, `{"type":"string","x-core":true}`, string(person.CoreFields["core_id"]), "titles are not part of a core field")
	require.NotEmpty(t, person.CoreHash)
	require.Equal(t, []Field{
		{Name: "age", Type: "integer", Default: []byte("30")},
		{Name: "core_id", Type: "string", Required: true, Core: true},
		{Name: "mood", Type: "integer"},
		{Name: "name", Type: "string", Required: true},
	}, person.Fields)
	household := b.forms["household"]
	require.Empty(t, household.CoreHash)
	require.Equal(t, Field{Name: "location", Type: "object", QuestionType: "gps"}, household.Fields[0])
	require.Equal(t, "integer|null", household.Fields[1].Type)
}

func indexOf(list []string, s string) int {
	for i, v := range list {
		if v == s {
			return i
		}
	}
	return -1
}

func TestHashesIgnoreFormatting(t *testing.T) {
	t.Parallel()
	files := appbundletest.Sample()
	a, ve := validateBytes(t, appbundletest.Files(files))
	require.Nil(t, ve)
	files["forms/person/schema.json"] = `{"properties":{"mood":{"x-renderer":"likert","type":"integer"},"age":{"default":30,"type":"integer"},
		"name":{"title":"Name","type":"string"},"core_id":{"title":"Identifier","x-core":true,"type":"string"}},"required":["core_id","name"],"type":"object"}`
	files["forms/person/ui.json"] = "{\n  \"elements\": [ {\"scope\": \"#/properties/name\", \"type\": \"Control\"} ],\n  \"type\": \"VerticalLayout\"\n}\n"
	b, ve := validateBytes(t, appbundletest.Files(files))
	require.Nil(t, ve)
	require.Equal(t, a.forms["person"].SchemaHash, b.forms["person"].SchemaHash)
	require.Equal(t, a.forms["person"].UIHash, b.forms["person"].UIHash)
	require.Equal(t, a.forms["person"].CoreHash, b.forms["person"].CoreHash)

	files["forms/person/schema.json"] = strings.Replace(files["forms/person/schema.json"], `"title":"Identifier"`, `"title":"ID"`, 1)
	c, ve := validateBytes(t, appbundletest.Files(files))
	require.Nil(t, ve)
	require.NotEqual(t, a.forms["person"].SchemaHash, c.forms["person"].SchemaHash)
	require.Equal(t, a.forms["person"].CoreHash, c.forms["person"].CoreHash, "a new title is no core change")
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	files := appbundletest.Sample()
	delete(files, "app/index.html")
	delete(files, "forms/household/ui.json")
	files["forms/person/ui.json"] = `{"type": "VerticalLayout",`
	files["docs/a.md"] = "a"
	files["docs/b.md"] = "b"
	files["README.md"] = "hello"
	files["forms/person/notes.txt"] = "x"
	files["forms/loose.json"] = "{}"
	files["renderers/gps-picker/index.js"] = "x"
	files["forms/visit/schema.json"] = `{"type":"object","properties":{"q":{"type":"string","x-renderer":"stars"},"r":{"rendererType":"likert"}}}`
	files["forms/visit/ui.json"] = `[]`
	files["forms/visit/ext.json"] = `{"renderers": {"bad": "not an object", "odd": {"format": 7, "renderer": {"path": "ext/missing.js"}}}, "functions": []}`
	files["app/forms/ext.json"] = `[1, 2]`
	_, ve := validateBytes(t, appbundletest.Files(files))
	requireProblem(t, ve, "app/index.html", CodeMissingFile)
	requireProblem(t, ve, "forms/household/ui.json", CodeMissingFile)
	requireProblem(t, ve, "forms/person/ui.json", CodeInvalidJSON)
	requireProblem(t, ve, "docs", CodeUnexpectedPath)
	requireProblem(t, ve, "README.md", CodeUnexpectedPath)
	requireProblem(t, ve, "forms/person/notes.txt", CodeUnexpectedPath)
	requireProblem(t, ve, "forms/loose.json", CodeUnexpectedPath)
	requireProblem(t, ve, "renderers/gps-picker/index.js", CodeUnexpectedPath)
	requireProblem(t, ve, "forms/visit/schema.json", CodeMissingRenderer)
	requireProblem(t, ve, "forms/visit/ext.json", CodeInvalidExtension)
	requireProblem(t, ve, "app/forms/ext.json", CodeInvalidExtension)
	docs := 0
	for _, p := range ve.Problems {
		if p.Path == "docs" {
			docs++
		}
	}
	require.Equal(t, 1, docs, "an unexpected directory is reported once, not once per file")
	var visitProblems []string
	for _, p := range ve.Problems {
		if p.Path == "forms/visit/ext.json" || p.Path == "forms/visit/schema.json" {
			visitProblems = append(visitProblems, p.Message)
		}
	}
	joined := strings.Join(visitProblems, "\n")
	for _, want := range []string{`"stars"`, `renderer "bad" must be an object`, `renderer "odd": format`, `ext/missing.js`, `"functions" must be an object`} {
		require.Contains(t, joined, want)
	}
	require.NotContains(t, joined, `"likert"`, "a format declared by forms/ext.json resolves")
	require.Equal(t, ve.Total, len(ve.Problems))
	require.False(t, ve.TooLarge())
}

func TestValidateListsAtMostMaxProblems(t *testing.T) {
	t.Parallel()
	files := appbundletest.Sample()
	for i := range 40 {
		files[fmt.Sprintf("forms/f%02d/schema.json", i)] = "{"
		files[fmt.Sprintf("forms/f%02d/ui.json", i)] = "{"
		files[fmt.Sprintf("forms/f%02d/x.txt", i)] = ""
	}
	zr, err := zip.NewReader(bytes.NewReader(appbundletest.Files(files)), int64(len(appbundletest.Files(files))))
	require.NoError(t, err)
	limits := testLimits
	limits.MaxFiles = 1000
	_, err = validate(zr, 1<<20, limits, time.Now())
	ve := err.(*ValidationError)
	require.Equal(t, 120, ve.Total)
	require.Len(t, ve.Problems, MaxListedProblems)
	require.Contains(t, ve.Summary(), "120 problem(s) found, the first 100 are listed")
}

func TestValidateRefusesHostileArchives(t *testing.T) {
	t.Parallel()
	index := appbundletest.Entry{Name: "app/index.html", Body: []byte("<html></html>")}
	zeros := make([]byte, 8<<20)
	cases := []struct {
		name    string
		entries []appbundletest.Entry
		path    string
		code    string
	}{
		{"parent segment", []appbundletest.Entry{index, {Name: "../evil.sh", Body: []byte("x")}}, "../evil.sh", CodeUnsafePath},
		{"parent inside", []appbundletest.Entry{index, {Name: "app/../../evil", Body: []byte("x")}}, "app/../../evil", CodeUnsafePath},
		{"absolute", []appbundletest.Entry{index, {Name: "/etc/cron.d/evil", Body: []byte("x")}}, "/etc/cron.d/evil", CodeUnsafePath},
		{"drive letter", []appbundletest.Entry{index, {Name: "C:/Windows/evil.dll", Body: []byte("x")}}, "C:/Windows/evil.dll", CodeUnsafePath},
		{"backslashes", []appbundletest.Entry{index, {Name: `app\..\..\evil`, Body: []byte("x")}}, `app\..\..\evil`, CodeUnsafePath},
		{"parent directory entry", []appbundletest.Entry{index, {Name: "../outside/", Mode: fs.ModeDir | 0o755}}, "../outside/", CodeUnsafePath},
		{"dot segment", []appbundletest.Entry{index, {Name: "app/./x.js", Body: []byte("x")}}, "app/./x.js", CodeInvalidPath},
		{"control character", []appbundletest.Entry{index, {Name: "app/x\x00.js", Body: []byte("x")}}, "app/x\x00.js", CodeInvalidPath},
		{"symlink", []appbundletest.Entry{index, {Name: "app/passwd", Body: []byte("/etc/passwd"), Mode: fs.ModeSymlink | 0o777}}, "app/passwd", CodeNotRegularFile},
		{"named pipe", []appbundletest.Entry{index, {Name: "app/fifo", Mode: fs.ModeNamedPipe | 0o644}}, "app/fifo", CodeNotRegularFile},
		{"duplicate", []appbundletest.Entry{index, {Name: "app/a.js", Body: []byte("1")}, {Name: "app/a.js", Body: []byte("2")}}, "app/a.js", CodeDuplicatePath},
		{"case duplicate", []appbundletest.Entry{index, {Name: "app/A.js", Body: []byte("1")}, {Name: "app/a.js", Body: []byte("2")}}, "app/a.js", CodeDuplicatePath},
		{"file and directory", []appbundletest.Entry{index, {Name: "app/lib", Body: []byte("1")}, {Name: "app/lib/x.js", Body: []byte("2")}}, "app/lib/x.js", CodeDuplicatePath},
		{"ratio bomb", []appbundletest.Entry{index, {Name: "app/zeros.bin", Body: zeros}}, "app/zeros.bin", CodeCompressionRatio},
		{"declared 2 GB", []appbundletest.Entry{index, {Name: "app/huge.bin", Body: []byte("small"), DeclaredSize: 2 << 30}}, "", CodeTooLarge},
		{"declared sizes that wrap around", []appbundletest.Entry{index, {Name: "app/a.bin", Body: []byte("a"), DeclaredSize: 1 << 63},
			{Name: "app/b.bin", Body: []byte("b"), DeclaredSize: 1 << 63}}, "", CodeTooLarge},
		{"lying size", []appbundletest.Entry{index, {Name: "app/liar.bin", Body: bytes.Repeat([]byte("ab"), 5000), DeclaredSize: 10}}, "app/liar.bin", CodeCorruptEntry},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			_, ve := validateBytes(t, appbundletest.Zip(c.entries...))
			requireProblem(t, ve, c.path, c.code)
		})
	}

	t.Run("total size", func(t *testing.T) {
		t.Parallel()
		entries := []appbundletest.Entry{index}
		for i := range 5 {
			entries = append(entries, appbundletest.Entry{Name: fmt.Sprintf("app/part%d.bin", i), Body: bytes.Repeat([]byte{byte(i)}, 7<<20), Store: true})
		}
		_, ve := validateBytes(t, appbundletest.Zip(entries...))
		requireProblem(t, ve, "", CodeTooLarge)
		require.True(t, ve.TooLarge())
	})
	t.Run("too many entries", func(t *testing.T) {
		t.Parallel()
		entries := []appbundletest.Entry{index}
		for i := range testLimits.MaxFiles {
			entries = append(entries, appbundletest.Entry{Name: fmt.Sprintf("app/f%d.js", i)})
		}
		_, ve := validateBytes(t, appbundletest.Zip(entries...))
		requireProblem(t, ve, "", CodeTooManyFiles)
		require.True(t, ve.TooLarge())
	})
}

func TestReadCountsBytesAgainstTheBudget(t *testing.T) {
	t.Parallel()
	archive := appbundletest.Zip(appbundletest.Entry{Name: "app/a.txt", Body: bytes.Repeat([]byte("0123456789"), 1000)})
	zr, err := zip.NewReader(bytes.NewReader(archive), int64(len(archive)))
	require.NoError(t, err)
	v := &validator{uploadSize: int64(len(archive)), limits: testLimits}
	budget := int64(9999)
	_, _, err = v.read(zr.File[0], &budget, nil)
	require.ErrorIs(t, err, errTotalExceeded, "the archive's remaining budget stops reading")
	budget = 10000
	n, _, err := v.read(zr.File[0], &budget, nil)
	require.NoError(t, err)
	require.Equal(t, int64(10000), n)
	require.Zero(t, budget)
}

func TestPathProblem(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"app/index.html", "forms/person/schema.json", "app/a b/ü.js", "app/...", "app/x:y"} {
		code, msg := pathProblem(ok)
		require.Empty(t, code+msg, ok)
	}
	for name, code := range map[string]string{
		"": CodeInvalidPath, "/x": CodeUnsafePath, "..": CodeUnsafePath, "a/../b": CodeUnsafePath, `a\b`: CodeUnsafePath,
		"c:x": CodeUnsafePath, "a//b": CodeInvalidPath, "a/": CodeInvalidPath, "a/\x7f": CodeInvalidPath, "\xff": CodeInvalidPath,
		strings.Repeat("a", 256): CodeInvalidPath, strings.Repeat("a/", 600): CodeInvalidPath,
	} {
		got, msg := pathProblem(name)
		require.Equal(t, code, got, "%q", name)
		require.NotEmpty(t, msg)
	}
}

func TestParseVersionName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]int32{"0001": 1, "3": 3, "0042": 42, "12345": 12345} {
		got, err := ParseVersionName(in)
		require.NoError(t, err)
		require.Equal(t, want, got)
	}
	for _, bad := range []string{"", "0", "0000", "-1", "+1", "1.0", "../0001", "abc", "0001 *", "9999999999", " 1"} {
		_, err := ParseVersionName(bad)
		require.IsType(t, &InvalidRequestError{}, err, "%q", bad)
	}
	require.Equal(t, "0007", VersionName(7))
	require.Equal(t, "12345", VersionName(12345))
}

func TestSignatureCounterFindsSplitSignatures(t *testing.T) {
	t.Parallel()
	data := []byte("xxPK\x01\x02yyPK\x01\x02PK\x01\x02z")
	for split := range len(data) + 1 {
		for second := split; second <= len(data); second++ {
			c := &signatureCounter{sig: []byte("PK\x01\x02")}
			_, _ = c.Write(data[:split])
			_, _ = c.Write(data[split:second])
			_, _ = c.Write(data[second:])
			require.Equal(t, 3, c.n, "split at %d and %d", split, second)
		}
	}
}

func TestCoreChanges(t *testing.T) {
	t.Parallel()
	active := map[string]json.RawMessage{"core_id": json.RawMessage(`{"type":"string"}`), "core_date": json.RawMessage(`{"format":"date","type":"string"}`)}
	require.Empty(t, coreChanges(active, active))
	pushed := map[string]json.RawMessage{"core_id": json.RawMessage(`{"type":"integer"}`), "core_new": json.RawMessage(`{}`)}
	require.Equal(t, []string{
		`core field "core_date" was removed`,
		`core field "core_id" changed (was {"type":"string"}, now {"type":"integer"})`,
		`core field "core_new" was added`,
	}, coreChanges(active, pushed))
}
