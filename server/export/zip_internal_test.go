package export

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// More entries than the classic end record can count need the ZIP64 records; the archive
// must read back with archive/zip, entry by entry.
func TestZipWriterManyEntriesReadBack(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	modified := time.Date(2026, 1, 5, 7, 30, 10, 0, time.UTC)
	z, err := newZipWriter(&buf, modified, flate.NoCompression)
	require.NoError(t, err)
	const n = 70_000
	for i := range n {
		w, err := z.create(fmt.Sprintf("form/%d.json", i))
		require.NoError(t, err)
		_, err = fmt.Fprintf(w, `{"n": %d}`, i)
		require.NoError(t, err)
	}
	require.NoError(t, z.close())

	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	require.Len(t, zr.File, n)
	for _, i := range []int{0, 1, 65_534, 65_535, 65_536, n - 1} {
		f := zr.File[i]
		require.Equal(t, fmt.Sprintf("form/%d.json", i), f.Name)
		require.Equal(t, modified, f.Modified.UTC())
		rc, err := f.Open()
		require.NoError(t, err)
		b, err := io.ReadAll(rc)
		require.NoError(t, err, "content and CRC")
		require.Equal(t, fmt.Sprintf(`{"n": %d}`, i), string(b))
	}
}

func TestZipWriterStoresUnicodeNamesAndEmptyEntries(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	z, err := newZipWriter(&buf, time.Now(), flate.NoCompression)
	require.NoError(t, err)
	_, err = z.create("ünï/☕.parquet")
	require.NoError(t, err)
	w, err := z.create("b.bin")
	require.NoError(t, err)
	payload := bytes.Repeat([]byte{0, 1, 2, 3}, 100_000)
	_, err = w.Write(payload)
	require.NoError(t, err)
	require.NoError(t, z.close())

	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	require.NoError(t, err)
	require.Len(t, zr.File, 2)
	require.Equal(t, "ünï/☕.parquet", zr.File[0].Name)
	require.Zero(t, zr.File[0].UncompressedSize64)
	rc, err := zr.File[1].Open()
	require.NoError(t, err)
	b, err := io.ReadAll(rc)
	require.NoError(t, err)
	require.Equal(t, payload, b)
	require.Greater(t, zr.File[1].CompressedSize64, uint64(len(payload)), "stored, not compressed")
}

func TestFileName(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"household":  "household",
		"a/b":        "a%2Fb",
		"..":         "%2E%2E",
		"../x":       "%2E.%2Fx",
		"100%":       "100%25",
		`C:\x*?"<>|`: `C%3A%5Cx%2A%3F%22%3C%3E%7C`,
		"con":        "%63on",
		"LPT1.txt":   "%4CPT1.txt",
		"console":    "console",
		"trailing. ": "trailing.%20",
		"tab\there":  "tab%09here",
		"":           "%00",
		"café ☕":     "café ☕",
	} {
		require.Equal(t, want, fileName(in), "%q", in)
	}
	long := string(bytes.Repeat([]byte("é"), 150)) // 300 bytes
	got := fileName(long)
	require.LessOrEqual(t, len(got), maxNameBytes)
	require.NotEqual(t, got, fileName(long[:len(long)-2]+"e"), "cut names stay distinct")
}

func TestColumnNamesKeepKeysApartFromNesting(t *testing.T) {
	t.Parallel()
	var f flattener
	var names []string
	f.walk([]byte(`{"a.b": 1, "a": {"b": 2, "": 3}, "back\\slash": 4, "e\u0301": 5, "x": {}, "q\"": [1]}`),
		func(name []byte, _ valueKind, _ []byte) { names = append(names, string(name)) })
	require.Equal(t, []string{`data.a\.b`, "data.a.b", `data.a.\e`, `data.back\\slash`, "data.e\u0301", `data.q"`}, names)
}

func TestKindOf(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]valueKind{
		"0": kindInt, "-12": kindInt, "9223372036854775807": kindInt, "9223372036854775808": kindFloat,
		"1.0": kindFloat, "1e3": kindFloat, "-0.5E-2": kindFloat, `"1"`: kindString, "true": kindBool,
		"false": kindBool, "null": kindNull, "[]": kindArray, "{}": kindObject,
	} {
		require.Equal(t, want, kindOf([]byte(in)), in)
	}
}
