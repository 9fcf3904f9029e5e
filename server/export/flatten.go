package export

import (
	"encoding/json"
	"strconv"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
)

// Limits of the flattened tables.
const (
	// MaxDataColumns bounds the data columns of one form type: every column costs the
	// Parquet writer buffers, so a form type whose observations bring ever new keys must
	// not grow the export's memory. Fields past the limit go to the ExtraColumn.
	MaxDataColumns = 2000
	// maxDepth is the nesting depth below which objects are kept whole, as JSON text.
	maxDepth = 32
)

// ExtraColumn holds, as a JSON object keyed by column name without the "data." prefix,
// the fields of an observation that did not get a column of their own.
const ExtraColumn = "data_extra"

// valueKind is the JSON type of a value met while flattening.
type valueKind uint8

const (
	kindNull valueKind = iota
	kindBool
	kindInt   // an integer literal that fits in int64
	kindFloat // any other number
	kindString
	kindArray
	kindObject // only for objects nested deeper than maxDepth
)

// kindOf classifies the value text v (valid JSON, not empty).
func kindOf(v []byte) valueKind {
	switch v[0] {
	case 'n':
		return kindNull
	case 't', 'f':
		return kindBool
	case '"':
		return kindString
	case '[':
		return kindArray
	case '{':
		return kindObject
	}
	for _, c := range v {
		if c == '.' || c == 'e' || c == 'E' {
			return kindFloat
		}
	}
	if _, err := strconv.ParseInt(string(v), 10, 64); err != nil {
		return kindFloat // an integer beyond int64
	}
	return kindInt
}

// flattener walks form data, naming each leaf value by its path. Column names start
// with "data." and join the keys with dots; inside a key a backslash is written `\\`
// and a dot `\.`, and an empty key is written `\e`, so every name maps back to exactly
// one path and a key "a.b" never meets the nested field {"a": {"b": ...}}.
type flattener struct {
	name []byte
}

// walk calls leaf with the column name (valid until leaf returns), the kind and the text
// of every value in data that is not an object; an empty object yields nothing. Objects
// nested deeper than maxDepth are leaves of kindObject.
func (f *flattener) walk(data []byte, leaf func(name []byte, kind valueKind, value []byte)) {
	i := jsonbytes.SkipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return
	}
	f.name = append(f.name[:0], "data"...)
	f.object(data, i, 0, leaf)
}

func (f *flattener) object(b []byte, i, depth int, leaf func([]byte, valueKind, []byte)) {
	jsonbytes.Members(b, i, func(key, value []byte) {
		mark := len(f.name)
		f.name = appendKey(append(f.name, '.'), key)
		if value[0] == '{' && depth+1 < maxDepth {
			f.object(value, 0, depth+1, leaf)
		} else {
			leaf(f.name, kindOf(value), value)
		}
		f.name = f.name[:mark]
	})
}

// appendKey appends a key, given as written in JSON without its quotes, as one segment
// of a column name.
func appendKey(b, key []byte) []byte {
	for _, c := range key {
		if c == '\\' {
			key = unescapeKey(key)
			break
		}
	}
	if len(key) == 0 {
		return append(b, `\e`...)
	}
	for _, c := range key {
		switch c {
		case '\\', '.':
			b = append(b, '\\', c)
		default:
			b = append(b, c)
		}
	}
	return b
}

func unescapeKey(key []byte) []byte {
	quoted := make([]byte, 0, len(key)+2)
	quoted = append(append(append(quoted, '"'), key...), '"')
	var s string
	if json.Unmarshal(quoted, &s) != nil {
		return key // not reachable for stored JSON; keep the text as written
	}
	return []byte(s)
}

// unquote returns the content of the JSON string literal v, appending to buf only when
// it holds escapes; the result aliases v or buf.
func unquote(v, buf []byte) (s, newBuf []byte) {
	inner := v[1 : len(v)-1]
	for _, c := range inner {
		if c == '\\' {
			var str string
			if json.Unmarshal(v, &str) != nil {
				return inner, buf
			}
			start := len(buf)
			buf = append(buf, str...)
			return buf[start:], buf
		}
	}
	return inner, buf
}

// columnType is how a data column is written.
type columnType uint8

const (
	typeString columnType = iota
	typeInt
	typeDouble
	typeBool
	typeJSON
)

// dataColumn is one flattened field of a form type and the kinds of value it held.
type dataColumn struct {
	name string
	seen uint8 // bit set of valueKind
}

func (c dataColumn) typ() columnType {
	switch c.seen &^ (1 << kindNull) {
	case 0, 1 << kindString:
		return typeString // a field that only ever held null is an empty text column
	case 1 << kindBool:
		return typeBool
	case 1 << kindInt:
		return typeInt
	case 1 << kindFloat, 1<<kindInt | 1<<kindFloat:
		return typeDouble
	}
	return typeJSON
}

// formSchema is the inferred table of one form type: its data columns in the order they
// first appeared (in version order), and whether some fields did not fit.
type formSchema struct {
	columns []dataColumn
	index   map[string]int
	extra   bool
}

func newFormSchema() *formSchema {
	return &formSchema{index: map[string]int{}}
}

// observe records one observation's data.
func (s *formSchema) observe(f *flattener, data []byte) {
	f.walk(data, func(name []byte, kind valueKind, _ []byte) {
		if i, ok := s.index[string(name)]; ok {
			s.columns[i].seen |= 1 << kind
			return
		}
		if len(s.columns) >= MaxDataColumns {
			s.extra = true
			return
		}
		s.index[string(name)] = len(s.columns)
		s.columns = append(s.columns, dataColumn{name: string(name), seen: 1 << kind})
	})
}

// cell is one value of a row: its kind and JSON text; a nil text is a missing value.
type cell struct {
	kind  valueKind
	value []byte
}

// rowCells fills cells (one per data column) from data and returns the JSON object of
// the fields without a column ("" when there are none), appended to extra. A key given
// twice keeps its last value, as JSON.parse does.
func (s *formSchema) rowCells(f *flattener, data []byte, cells []cell, extra []byte) []byte {
	clear(cells)
	start := len(extra)
	f.walk(data, func(name []byte, kind valueKind, value []byte) {
		if i, ok := s.index[string(name)]; ok {
			cells[i] = cell{kind: kind, value: value}
			return
		}
		if len(extra) == start {
			extra = append(extra, '{')
		} else {
			extra = append(extra, ',')
		}
		extra = jsonbytes.AppendString(extra, string(name[len("data."):]))
		extra = append(extra, ':')
		extra = append(extra, value...)
	})
	if len(extra) > start {
		extra = append(extra, '}')
	}
	return extra
}
