package appbundle

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"io/fs"
	"math"
	"slices"
	"strings"
	"time"
)

// bundleFile is a regular file of a bundle that passed validation.
type bundleFile struct {
	zf          *zip.File
	Path        string
	Size        int64
	SHA256      [32]byte
	ContentType string
	ModTime     time.Time
}

// bundle is a validated archive: its files in path order and its form index.
type bundle struct {
	files []*bundleFile
	forms map[string]*formIndex
}

// maxJSONBytes bounds a schema, UI or extension file: each is decoded in memory.
const maxJSONBytes = 8 << 20

// builtInRenderers are the question renderers every device has, so forms may name them
// without bundling them.
var builtInRenderers = []string{
	"text", "number", "integer", "boolean", "date", "time", "datetime", "range",
	"select", "combo", "radio", "checkbox", "toggle",
	"group", "categorization", "category",
	"multiselect", "textarea", "slider", "rating", "builtin-text", "html",
	"image", "signature", "audio", "video", "file", "qrcode",
}

// validator checks one archive and collects every problem it finds.
type validator struct {
	zr         *zip.Reader
	uploadSize int64
	limits     Limits
	now        time.Time

	p     problems
	files []*bundleFile
	// byFold finds files by their case-folded path (devices may unpack onto
	// case-insensitive file systems, where two such files would be one).
	byFold    map[string]*bundleFile
	renderers map[string]bool
	forms     map[string]*formIndex
	// refs are the renderer names the schemas use, checked once all files were read.
	refs []rendererRef
	// modules are the files extension descriptors point to.
	modules []moduleRef
}

type rendererRef struct{ path, key, name string }

type moduleRef struct{ extPath, what, target string }

// validate checks an archive completely and returns the bundle, or every problem found.
func validate(zr *zip.Reader, uploadSize int64, limits Limits, now time.Time) (*bundle, error) {
	v := &validator{zr: zr, uploadSize: uploadSize, limits: limits, now: now,
		byFold: map[string]*bundleFile{}, renderers: map[string]bool{}, forms: map[string]*formIndex{}}
	if len(zr.File) > limits.MaxFiles {
		v.p.add("", CodeTooManyFiles, "the archive has %d entries; the limit is %d", len(zr.File), limits.MaxFiles)
		return nil, v.p.err()
	}
	declared := v.entries()
	v.layout()
	if declared > uint64(limits.MaxUncompressedBytes) {
		// Refused before anything is decompressed.
		v.p.add("", CodeTooLarge, "the files declare %d bytes uncompressed; the limit is %d", declared, limits.MaxUncompressedBytes)
	} else {
		v.contents()
		v.references()
	}
	if err := v.p.err(); err != nil {
		return nil, err
	}
	slices.SortFunc(v.files, func(a, b *bundleFile) int { return strings.Compare(a.Path, b.Path) })
	return &bundle{files: v.files, forms: v.forms}, nil
}

// entries checks every entry's name and kind and collects the regular files; it returns
// the uncompressed size the files declare.
func (v *validator) entries() uint64 {
	var declared uint64
	for _, zf := range v.zr.File {
		name := zf.Name
		mode := zf.Mode()
		isDir := strings.HasSuffix(name, "/") || mode.IsDir()
		check := name
		if isDir && len(name) > 1 {
			check = strings.TrimSuffix(name, "/")
		}
		if code, msg := pathProblem(check); msg != "" {
			v.p.add(name, code, "%s", msg)
			continue
		}
		switch {
		case mode&fs.ModeSymlink != 0:
			v.p.add(name, CodeNotRegularFile, "the entry is a symbolic link")
			continue
		case mode&(fs.ModeDevice|fs.ModeCharDevice|fs.ModeNamedPipe|fs.ModeSocket|fs.ModeIrregular) != 0:
			v.p.add(name, CodeNotRegularFile, "the entry is not a regular file")
			continue
		case isDir:
			continue
		case zf.Flags&0x1 != 0:
			v.p.add(name, CodeUnsupported, "the entry is encrypted")
			continue
		case zf.Method != zip.Store && zf.Method != zip.Deflate:
			v.p.add(name, CodeUnsupported, "the entry uses compression method %d; only stored and deflated entries are supported", zf.Method)
			continue
		}
		fold := strings.ToLower(check)
		if other, dup := v.byFold[fold]; dup {
			if other.Path == check {
				v.p.add(check, CodeDuplicatePath, "the path appears more than once in the archive")
			} else {
				v.p.add(check, CodeDuplicatePath, "the path differs from %s only in letter case", other.Path)
			}
			continue
		}
		f := &bundleFile{zf: zf, Path: check, ContentType: contentType(check), ModTime: v.modTime(zf)}
		v.byFold[fold] = f
		v.files = append(v.files, f)
		if zf.UncompressedSize64 > math.MaxInt64-declared { // saturate: huge sizes must not wrap around
			declared = math.MaxInt64
		} else {
			declared += zf.UncompressedSize64
		}
	}
	// A file cannot also be a directory of another file's path.
	for _, f := range v.files {
		for i := strings.IndexByte(f.Path, '/'); i >= 0; i = next(f.Path, i) {
			if dir, clash := v.byFold[strings.ToLower(f.Path[:i])]; clash {
				v.p.add(f.Path, CodeDuplicatePath, "%s is a file, so it cannot also be a directory", dir.Path)
				break
			}
		}
	}
	return declared
}

func next(s string, i int) int {
	j := strings.IndexByte(s[i+1:], '/')
	if j < 0 {
		return -1
	}
	return i + 1 + j
}

// modTime is the entry's modification time in whole seconds, or the push time when the
// archive does not record one.
func (v *validator) modTime(zf *zip.File) time.Time {
	t := zf.Modified
	if t.IsZero() || t.Year() < 1980 {
		t = v.now
	}
	return t.UTC().Truncate(time.Second)
}

// layout checks where files are: app/ with app/index.html, forms/<form>/{schema,ui}.json
// (plus ext.json descriptors), renderers/<renderer>/renderer.jsx, nothing else.
func (v *validator) layout() {
	hasIndex := false
	formFiles := map[string]map[string]bool{}
	unexpectedTop := map[string]bool{}
	for _, f := range v.files {
		segs := strings.Split(f.Path, "/")
		switch segs[0] {
		case "app":
			hasIndex = hasIndex || f.Path == "app/index.html"
		case "forms":
			switch {
			case len(segs) == 2 && segs[1] == "ext.json":
			case len(segs) == 3 && (segs[2] == "schema.json" || segs[2] == "ui.json" || segs[2] == "ext.json"):
				if formFiles[segs[1]] == nil {
					formFiles[segs[1]] = map[string]bool{}
				}
				formFiles[segs[1]][segs[2]] = true
			default:
				v.p.add(f.Path, CodeUnexpectedPath, "files under forms/ must be forms/<form>/schema.json, ui.json or ext.json, or forms/ext.json")
			}
		case "renderers":
			if len(segs) == 3 && segs[2] == "renderer.jsx" {
				v.renderers[segs[1]] = true
			} else {
				v.p.add(f.Path, CodeUnexpectedPath, "files under renderers/ must be renderers/<renderer>/renderer.jsx")
			}
		default:
			if !unexpectedTop[segs[0]] {
				unexpectedTop[segs[0]] = true
				v.p.add(segs[0], CodeUnexpectedPath, "unexpected top-level entry: a bundle holds only app/, forms/ and renderers/")
			}
		}
	}
	if !hasIndex {
		v.p.add("app/index.html", CodeMissingFile, "the bundle has no app/index.html")
	}
	for _, form := range sortedKeys(formFiles) {
		for _, name := range []string{"schema.json", "ui.json"} {
			if !formFiles[form][name] {
				v.p.add("forms/"+form+"/"+name, CodeMissingFile, "form %q has no %s", form, name)
			}
		}
	}
}

var (
	errTotalExceeded = errors.New("the archive's total size limit was exceeded")
	errRatioExceeded = errors.New("the entry's compression ratio limit was exceeded")
)

// contents reads every file once: its size and hash, counted as decompressed, and the
// JSON of schema, UI and extension files.
func (v *validator) contents() {
	budget := v.limits.MaxUncompressedBytes
	for _, f := range v.files {
		role := jsonRole(f.Path)
		var doc *bytes.Buffer
		var also io.Writer // nil unless the content is needed beyond its hash
		if role != "" {
			if f.zf.UncompressedSize64 > maxJSONBytes {
				v.p.add(f.Path, CodeTooLarge, "the file is larger than %d bytes, the limit for schema, UI and extension files", maxJSONBytes)
			} else {
				doc = bytes.NewBuffer(make([]byte, 0, f.zf.UncompressedSize64))
				also = doc
			}
		}
		n, sum, err := v.read(f.zf, &budget, also)
		switch {
		case errors.Is(err, errTotalExceeded):
			v.p.add("", CodeTooLarge, "the files decompress to more than %d bytes, the limit", v.limits.MaxUncompressedBytes)
			return
		case errors.Is(err, errRatioExceeded):
			v.p.add(f.Path, CodeCompressionRatio, "the file decompresses to more than %d times its compressed size", v.limits.MaxRatio)
			continue
		case errors.Is(err, zip.ErrChecksum):
			v.p.add(f.Path, CodeCorruptEntry, "the file's checksum does not match its content")
			continue
		case err != nil:
			v.p.add(f.Path, CodeCorruptEntry, "the file is damaged and cannot be decompressed")
			continue
		}
		f.Size, f.SHA256 = n, sum
		if doc != nil {
			v.document(f.Path, role, doc.Bytes())
		}
	}
}

// read decompresses one entry, counting the bytes actually produced: it stops as soon as
// the entry exceeds the archive's remaining budget or its own compression ratio limit.
func (v *validator) read(zf *zip.File, budget *int64, also io.Writer) (int64, [32]byte, error) {
	var sum [32]byte
	rc, err := zf.Open()
	if err != nil {
		return 0, sum, err
	}
	defer rc.Close()
	// The compressed bytes read for an entry can be no more than the upload holds,
	// whatever its header claims.
	compressed := int64(min(zf.CompressedSize64, uint64(v.uploadSize)))
	ratioLimit := max(RatioFloorBytes, compressed*v.limits.MaxRatio)
	limit := min(*budget, ratioLimit)
	h := sha256.New()
	var w io.Writer = h
	if also != nil {
		w = io.MultiWriter(h, also)
	}
	n, err := io.Copy(w, io.LimitReader(rc, limit+1))
	switch {
	case n > limit && limit == *budget:
		return n, sum, errTotalExceeded
	case n > limit:
		return n, sum, errRatioExceeded
	case err != nil:
		return n, sum, err
	}
	*budget -= n
	h.Sum(sum[:0])
	return n, sum, nil
}

// jsonRole says which JSON file of the layout a path is: "schema", "ui", "ext" or "".
func jsonRole(p string) string {
	segs := strings.Split(p, "/")
	switch {
	case p == "forms/ext.json" || p == "app/forms/ext.json":
		return "ext"
	case len(segs) == 3 && segs[0] == "forms" && (segs[2] == "schema.json" || segs[2] == "ui.json" || segs[2] == "ext.json"):
		return strings.TrimSuffix(segs[2], ".json")
	}
	return ""
}

// document checks one schema, UI or extension file and records what the form index and
// the reference checks need of it.
func (v *validator) document(p, role string, b []byte) {
	doc, err := parseJSON(b)
	if err != nil {
		v.p.add(p, CodeInvalidJSON, "the file is not valid JSON: %v", err)
		return
	}
	form := strings.Split(p, "/")[1]
	switch role {
	case "schema":
		schema, ok := doc.(map[string]any)
		if !ok {
			v.p.add(p, CodeInvalidJSON, "a form schema must be a JSON object")
			return
		}
		idx := indexSchema(form, schema)
		if prev := v.forms[form]; prev != nil {
			idx.UIHash = prev.UIHash
		}
		v.forms[form] = idx
		v.collectRendererRefs(p, schema)
	case "ui":
		h := hashHex(canonical(doc))
		if idx := v.forms[form]; idx != nil {
			idx.UIHash = h
		} else {
			v.forms[form] = &formIndex{Name: form, UIHash: h}
		}
	case "ext":
		v.extension(p, doc)
	}
}

// collectRendererRefs records every renderer a schema names (x-renderer or rendererType,
// at any depth).
func (v *validator) collectRendererRefs(p string, doc any) {
	switch d := doc.(type) {
	case map[string]any:
		for _, key := range []string{"x-renderer", "rendererType"} {
			if name, ok := d[key].(string); ok {
				v.refs = append(v.refs, rendererRef{path: p, key: key, name: name})
			}
		}
		for _, k := range sortedKeys(d) {
			v.collectRendererRefs(p, d[k])
		}
	case []any:
		for _, e := range d {
			v.collectRendererRefs(p, e)
		}
	}
}

// extension checks an ext.json descriptor: an object whose optional definitions,
// functions and renderers members are objects; renderers declare the formats forms may
// use, and the modules they name must be in the bundle.
func (v *validator) extension(p string, doc any) {
	ext, ok := doc.(map[string]any)
	if !ok {
		v.p.add(p, CodeInvalidExtension, "an extension descriptor must be a JSON object")
		return
	}
	members := func(key string) map[string]any {
		raw, present := ext[key]
		if !present {
			return nil
		}
		m, ok := raw.(map[string]any)
		if !ok {
			v.p.add(p, CodeInvalidExtension, "%q must be an object", key)
		}
		return m
	}
	members("definitions")
	functions := members("functions")
	for _, name := range sortedKeys(functions) {
		fn, ok := functions[name].(map[string]any)
		if !ok {
			v.p.add(p, CodeInvalidExtension, "function %q must be an object", name)
			continue
		}
		if n, _ := fn["name"].(string); n == "" {
			v.p.add(p, CodeInvalidExtension, "function %q has no name", name)
		}
		v.moduleRef(p, "function "+name, fn["module"], true)
	}
	renderers := members("renderers")
	for _, name := range sortedKeys(renderers) {
		r, ok := renderers[name].(map[string]any)
		if !ok {
			v.p.add(p, CodeInvalidExtension, "renderer %q must be an object", name)
			continue
		}
		v.renderers[name] = true
		if format, present := r["format"]; present {
			if s, ok := format.(string); ok && s != "" {
				v.renderers[s] = true
			} else {
				v.p.add(p, CodeInvalidExtension, "renderer %q: format must be a non-empty string", name)
			}
		}
		v.moduleRef(p, "renderer "+name, r["module"], true)
		for _, part := range []string{"renderer", "tester"} {
			switch e := r[part].(type) {
			case nil, string: // absent, or an export name within the module (the older form)
			case map[string]any:
				v.moduleRef(p, "renderer "+name+" "+part, e["path"], false)
				if exp, present := e["export"]; present {
					if _, ok := exp.(string); !ok {
						v.p.add(p, CodeInvalidExtension, "renderer %q: %s export must be a string", name, part)
					}
				}
			default:
				v.p.add(p, CodeInvalidExtension, "renderer %q: %s must be a string or an object with a path", name, part)
			}
		}
	}
}

// moduleRef records a module path an extension names; optional says whether it may be
// absent.
func (v *validator) moduleRef(extPath, what string, raw any, optional bool) {
	if raw == nil && optional {
		return
	}
	s, ok := raw.(string)
	if !ok || s == "" {
		v.p.add(extPath, CodeInvalidExtension, "%s: the module path must be a non-empty string", what)
		return
	}
	v.modules = append(v.modules, moduleRef{extPath: extPath, what: what, target: s})
}

// references checks what could only be checked once every file was read: renderer names
// and extension modules resolve.
func (v *validator) references() {
	for _, r := range v.refs {
		if !v.renderers[r.name] && !slices.Contains(builtInRenderers, r.name) {
			v.p.add(r.path, CodeMissingRenderer, "%s %q names no renderer in renderers/, no extension renderer and no built-in renderer", r.key, r.name)
		}
	}
	for _, m := range v.modules {
		target := strings.TrimPrefix(m.target, "./")
		if _, msg := pathProblem(target); msg != "" {
			v.p.add(m.extPath, CodeInvalidExtension, "%s: module %q must be a path inside the bundle", m.what, m.target)
			continue
		}
		dir := m.extPath[:strings.LastIndexByte(m.extPath, '/')]
		found := false
		for _, candidate := range []string{dir + "/" + target, "app/" + target, target} {
			if f := v.byFold[strings.ToLower(candidate)]; f != nil && f.Path == candidate {
				found = true
				break
			}
		}
		if !found {
			v.p.add(m.extPath, CodeInvalidExtension, "%s: module %q is not in the bundle (looked beside the descriptor, under app/ and at the top)", m.what, m.target)
		}
	}
}
