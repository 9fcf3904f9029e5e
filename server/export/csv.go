package export

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/opendataensemble/synkronus/server/jsonbytes"
)

// csvTable writes one form type's observations as CSV with the Parquet table's columns.
// Values are text: numbers as they were pushed, booleans as true/false, timestamps in
// RFC 3339 (UTC), the tags and JSON columns as JSON, and null as an empty cell.
type csvTable struct {
	schema *formSchema
	w      *csv.Writer
	flat   flattener
	cells  []cell
	types  []columnType
	record []string
	buf    []byte
}

// utf8BOM lets spreadsheets recognise the encoding; CSV readers of R, Python and DuckDB
// skip it.
const utf8BOM = "\ufeff"

func newCSVTable(out io.Writer, s *formSchema) (*csvTable, error) {
	if _, err := io.WriteString(out, utf8BOM); err != nil {
		return nil, err
	}
	t := &csvTable{schema: s, w: csv.NewWriter(out), cells: make([]cell, len(s.columns)), types: make([]columnType, len(s.columns))}
	header := append([]string(nil), metaColumns...)
	for i, c := range s.columns {
		t.types[i] = c.typ()
		header = append(header, c.name)
	}
	if s.extra {
		header = append(header, ExtraColumn)
	}
	return t, t.w.Write(header)
}

func csvTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func (t *csvTable) write(o *observation) error {
	rec := append(t.record[:0],
		o.ObservationID, o.FormType, o.FormVersion, strconv.FormatInt(o.Version, 10),
		csvTime(o.CreatedAt), csvTime(o.UpdatedAt), csvTime(o.SyncedAt), strconv.FormatBool(o.Deleted),
		optional(o.Author), optional(o.DeviceID), t.tags(o.Tags))
	g := parseGeolocation(o.Geolocation)
	for _, n := range g.numbers {
		rec = append(rec, string(n))
	}
	t.buf = t.buf[:0]
	if g.timestamp != nil {
		var ts []byte
		ts, t.buf = unquote(g.timestamp, t.buf)
		rec = append(rec, string(ts))
	} else {
		rec = append(rec, "")
	}
	start := len(t.buf)
	t.buf = t.schema.rowCells(&t.flat, o.Data, t.cells, t.buf)
	extra := string(t.buf[start:])
	for i, c := range t.cells {
		rec = append(rec, t.text(t.types[i], c))
	}
	if t.schema.extra {
		rec = append(rec, extra)
	}
	t.record = rec
	if err := t.w.Write(rec); err != nil {
		return fmt.Errorf("error writing a CSV row: %w", err)
	}
	return nil
}

func (t *csvTable) text(typ columnType, c cell) string {
	if c.value == nil || c.kind == kindNull {
		return ""
	}
	var s []byte
	if typ == typeString {
		s, t.buf = unquote(c.value, t.buf)
	} else {
		s, t.buf = compactJSON(c, t.buf)
	}
	return string(s)
}

func (t *csvTable) tags(tags []string) string {
	if tags == nil {
		return ""
	}
	b := append(t.buf[:0], '[')
	for i, tag := range tags {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsonbytes.AppendString(b, tag)
	}
	t.buf = append(b, ']')
	return string(t.buf)
}

func optional(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (t *csvTable) close() error {
	t.w.Flush()
	if err := t.w.Error(); err != nil {
		return fmt.Errorf("error writing CSV: %w", err)
	}
	return nil
}
