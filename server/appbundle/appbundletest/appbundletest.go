// Package appbundletest builds app bundle archives for tests and benchmarks: valid
// bundles, and the hostile archives the server must refuse.
package appbundletest

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"fmt"
	"hash/crc32"
	"io/fs"
	"math/rand/v2"
	"slices"
	"time"
)

// Entry is one archive entry.
type Entry struct {
	Name string
	Body []byte
	// Mode marks links and other special entries; zero is a regular file.
	Mode fs.FileMode
	// Store keeps the body uncompressed instead of deflating it.
	Store bool
	// DeclaredSize, when set, is written as the entry's uncompressed size instead of the
	// body's (the deflated body is written as is): an archive that lies about its sizes.
	DeclaredSize uint64
}

// Modified is the modification time every entry gets, so that archives built alike are
// byte for byte the same.
var Modified = time.Date(2025, 11, 3, 9, 30, 0, 0, time.UTC)

// Zip builds an archive of the entries, in order. It panics on failure: the entries come
// from the test itself.
func Zip(entries ...Entry) []byte {
	var buf bytes.Buffer
	w := zip.NewWriter(&buf)
	for _, e := range entries {
		if err := add(w, e); err != nil {
			panic(fmt.Sprintf("building test archive entry %s: %v", e.Name, err))
		}
	}
	if err := w.Close(); err != nil {
		panic(err)
	}
	return buf.Bytes()
}

func add(w *zip.Writer, e Entry) error {
	fh := &zip.FileHeader{Name: e.Name, Method: zip.Deflate, Modified: Modified}
	if e.Store {
		fh.Method = zip.Store
	}
	if e.Mode != 0 {
		fh.SetMode(e.Mode)
	}
	if e.DeclaredSize == 0 {
		fw, err := w.CreateHeader(fh)
		if err != nil {
			return err
		}
		_, err = fw.Write(e.Body)
		return err
	}
	var compressed bytes.Buffer
	fw, err := flate.NewWriter(&compressed, flate.BestCompression)
	if err != nil {
		return err
	}
	if _, err := fw.Write(e.Body); err != nil {
		return err
	}
	if err := fw.Close(); err != nil {
		return err
	}
	fh.CRC32 = crc32.ChecksumIEEE(e.Body)
	fh.CompressedSize64 = uint64(compressed.Len())
	fh.UncompressedSize64 = e.DeclaredSize
	raw, err := w.CreateRaw(fh)
	if err != nil {
		return err
	}
	_, err = raw.Write(compressed.Bytes())
	return err
}

// Files builds an archive of regular files, in path order.
func Files(files map[string]string) []byte {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	entries := make([]Entry, len(names))
	for i, n := range names {
		entries[i] = Entry{Name: n, Body: []byte(files[n])}
	}
	return Zip(entries...)
}

// Sample returns the files of a small but complete bundle: the web app (with a file under
// app/forms/ that is not a form, and an extension module), two forms (one with core
// fields, one using a bundled renderer and one declared by an extension descriptor), and
// the renderer. Callers may change the map before building the archive.
func Sample() map[string]string {
	return map[string]string{
		"app/index.html":      `<!doctype html><html><head><script src="js/app.js"></script></head><body></body></html>`,
		"app/js/app.js":       `console.log("field app");`,
		"app/css/style.css":   `body { margin: 0 }`,
		"app/forms/notes.txt": `app/forms may hold files of the app that are not forms`,
		"app/ext/likert.js":   `export const LikertRenderer = () => null;`,
		"forms/ext.json":      `{"renderers": {"likert": {"name": "Likert", "format": "likert", "module": "ext/likert.js"}}}`,
		"forms/person/schema.json": `{"type": "object", "required": ["core_id", "name"], "properties": {
			"core_id": {"type": "string", "x-core": true, "title": "Identifier"},
			"name": {"type": "string", "title": "Name"},
			"age": {"type": "integer", "default": 30},
			"mood": {"type": "integer", "x-renderer": "likert"}}}`,
		"forms/person/ui.json":              `{"type": "VerticalLayout", "elements": [{"type": "Control", "scope": "#/properties/name"}]}`,
		"forms/household/schema.json":       `{"type": "object", "properties": {"location": {"type": "object", "x-renderer": "gps-picker", "x-question-type": "gps"}, "size": {"type": ["integer", "null"]}}}`,
		"forms/household/ui.json":           `{"type": "VerticalLayout", "elements": []}`,
		"renderers/gps-picker/renderer.jsx": `export default function GpsPicker() { return null; }`,
	}
}

// Large returns the files of a bundle of about totalBytes in n files (n > 3): the app's
// index, a form, and n-3 app files of pseudo-random bytes derived from seed, which do not
// compress, like the images and fonts that make up most of a real app's size.
func Large(n int, totalBytes int64, seed uint64) map[string]string {
	files := map[string]string{
		"app/index.html":          "<!doctype html><title>bench</title>",
		"forms/bench/schema.json": `{"type": "object", "properties": {"core_id": {"type": "string"}, "value": {"type": "number"}}}`,
		"forms/bench/ui.json":     `{"type": "VerticalLayout", "elements": []}`,
	}
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	size := int(totalBytes / int64(max(1, n-3)))
	for i := range n - 3 {
		b := make([]byte, size)
		for j := 0; j < len(b); j += 8 {
			v := rng.Uint64()
			for k := j; k < min(j+8, len(b)); k++ {
				b[k] = byte(v)
				v >>= 8
			}
		}
		files[fmt.Sprintf("app/assets/%02d/file-%05d.bin", i%64, i)] = string(b)
	}
	return files
}
