package appbundle

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Field is one top-level property of a form's schema, as the form index records it.
type Field struct {
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Required     bool            `json:"required"`
	QuestionType string          `json:"question_type,omitempty"`
	Default      json.RawMessage `json:"default,omitempty"`
	Core         bool            `json:"core"`
}

// formIndex is what a version records about one form. Every hash is the SHA-256 of
// canonical JSON, so formatting changes are not changes, and the same rule serves
// validation, changes and the forms list (upstream hashed core fields two different ways).
type formIndex struct {
	Name       string
	SchemaHash string
	UIHash     string
	// CoreFields maps each core field to its coreProperties, canonical JSON.
	CoreFields map[string]json.RawMessage
	CoreHash   string
	Fields     []Field
}

// coreProperties are what must stay the same of a core field: what the stored data means.
// Titles, descriptions and the like may change.
var coreProperties = []string{"type", "format", "x-question-type", "default", "x-core"}

// parseJSON decodes one JSON document, keeping numbers as written.
func parseJSON(b []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("unexpected data after the JSON document")
	}
	return v, nil
}

// canonical encodes a decoded document with sorted object keys and no insignificant
// whitespace, so that equal documents have equal bytes.
func canonical(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // values produced by parseJSON always encode
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// indexSchema reads a form's schema: its hash, its fields and its core fields.
func indexSchema(form string, schema map[string]any) *formIndex {
	idx := &formIndex{Name: form, SchemaHash: hashHex(canonical(schema)), CoreFields: map[string]json.RawMessage{}}
	props, _ := schema["properties"].(map[string]any)
	required := map[string]bool{}
	if list, ok := schema["required"].([]any); ok {
		for _, r := range list {
			if name, ok := r.(string); ok {
				required[name] = true
			}
		}
	}
	names := make([]string, 0, len(props))
	for name := range props {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		prop, _ := props[name].(map[string]any)
		f := Field{Name: name, Type: typeName(prop["type"]), Required: required[name]}
		f.QuestionType, _ = prop["x-question-type"].(string)
		if d, ok := prop["default"]; ok {
			f.Default = canonical(d)
		}
		xCore, _ := prop["x-core"].(bool)
		f.Core = strings.HasPrefix(name, "core_") || xCore
		if f.Core {
			kept := map[string]any{}
			for _, k := range coreProperties {
				if v, ok := prop[k]; ok {
					kept[k] = v
				}
			}
			idx.CoreFields[name] = canonical(kept)
		}
		idx.Fields = append(idx.Fields, f)
	}
	idx.CoreHash = coreHash(idx.CoreFields)
	return idx
}

// coreHash is the one hash of a form's core fields; empty when it has none.
func coreHash(core map[string]json.RawMessage) string {
	if len(core) == 0 {
		return ""
	}
	return hashHex(canonical(core))
}

// typeName renders a JSON Schema type: a name, or several joined by "|".
func typeName(t any) string {
	switch v := t.(type) {
	case string:
		return v
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			if s, ok := e.(string); ok {
				parts = append(parts, s)
			}
		}
		return strings.Join(parts, "|")
	}
	return ""
}

// coreChanges lists how the core fields of a form differ from those of the active
// version; nil when they are the same.
func coreChanges(active, pushed map[string]json.RawMessage) []string {
	var out []string
	for _, name := range sortedKeys(active) {
		switch p, ok := pushed[name]; {
		case !ok:
			out = append(out, fmt.Sprintf("core field %q was removed", name))
		case !bytes.Equal(p, active[name]):
			out = append(out, fmt.Sprintf("core field %q changed (was %s, now %s)", name, active[name], p))
		}
	}
	for _, name := range sortedKeys(pushed) {
		if _, ok := active[name]; !ok {
			out = append(out, fmt.Sprintf("core field %q was added", name))
		}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
