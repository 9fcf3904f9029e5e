package export

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"strconv"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/compress"
	"github.com/parquet-go/parquet-go/encoding"
)

// The Parquet writer keeps the current row group in memory: the values of each column's
// page being filled, and the encoded pages of every column until the row group is
// complete (a column's pages must be contiguous in the file). Both are bounded so that
// the export's memory depends neither on the number of rows nor on their size.
const (
	// rowGroupBytes is the estimated size at which a row group is written out: large
	// enough for analysis tools to read efficiently, small enough to keep memory low.
	rowGroupBytes = 8 << 20
	// pageBufferBudget is shared by the page buffers of all columns of a table.
	pageBufferBudget = 8 << 20
	minPageBuffer    = 4 << 10
	maxPageBuffer    = 256 << 10
	// rowBatch is how many rows are handed to the writer at once.
	rowBatch = 64
)

var metaNodes = map[string]parquet.Node{
	"observation_id":                parquet.String(),
	"form_type":                     parquet.String(),
	"form_version":                  parquet.String(),
	"version":                       parquet.Leaf(parquet.Int64Type),
	"created_at":                    parquet.Timestamp(parquet.Microsecond),
	"updated_at":                    parquet.Timestamp(parquet.Microsecond),
	"synced_at":                     parquet.Timestamp(parquet.Microsecond),
	"deleted":                       parquet.Leaf(parquet.BooleanType),
	"author":                        parquet.Optional(parquet.String()),
	"device_id":                     parquet.Optional(parquet.String()),
	"tags":                          parquet.Optional(parquet.List(parquet.String())),
	"geolocation.latitude":          parquet.Optional(parquet.Leaf(parquet.DoubleType)),
	"geolocation.longitude":         parquet.Optional(parquet.Leaf(parquet.DoubleType)),
	"geolocation.accuracy":          parquet.Optional(parquet.Leaf(parquet.DoubleType)),
	"geolocation.altitude":          parquet.Optional(parquet.Leaf(parquet.DoubleType)),
	"geolocation.altitude_accuracy": parquet.Optional(parquet.Leaf(parquet.DoubleType)),
	"geolocation.timestamp":         parquet.Optional(parquet.String()),
}

func dataNode(t columnType) parquet.Node {
	switch t {
	case typeInt:
		return parquet.Optional(parquet.Leaf(parquet.Int64Type))
	case typeDouble:
		return parquet.Optional(parquet.Leaf(parquet.DoubleType))
	case typeBool:
		return parquet.Optional(parquet.Leaf(parquet.BooleanType))
	case typeJSON:
		return parquet.Optional(parquet.JSON())
	}
	return parquet.Optional(parquet.String())
}

// columns is the root of a table's Parquet schema. parquet.Group would sort the columns
// by name; analysts expect the metadata first, then the form's fields in the order they
// first appeared.
type columns []parquet.Field

func (c columns) group() parquet.Group {
	g := make(parquet.Group, len(c))
	for _, f := range c {
		g[f.Name()] = f
	}
	return g
}

func (c columns) ID() int                     { return 0 }
func (c columns) String() string              { return c.group().String() }
func (c columns) Type() parquet.Type          { return parquet.Group{}.Type() }
func (c columns) Optional() bool              { return false }
func (c columns) Repeated() bool              { return false }
func (c columns) Required() bool              { return true }
func (c columns) Leaf() bool                  { return false }
func (c columns) Fields() []parquet.Field     { return c }
func (c columns) Encoding() encoding.Encoding { return nil }
func (c columns) Compression() compress.Codec { return nil }
func (c columns) GoType() reflect.Type        { return c.group().GoType() }
func (c *columns) add(name string, n parquet.Node) {
	*c = append(*c, parquet.Group{name: n}.Fields()[0])
}

// parquetTable writes one form type's observations as a Parquet file.
type parquetTable struct {
	schema *formSchema
	w      *parquet.Writer
	flat   flattener
	cells  []cell
	types  []columnType
	rows   []parquet.Row
	arena  []byte // the bytes the values of the pending rows refer to
	// flushed is the file size after the last complete row group.
	flushed int64
}

func newParquetTable(out io.Writer, s *formSchema, meta []string) *parquetTable {
	cols := make(columns, 0, len(metaColumns)+len(s.columns)+1)
	for _, name := range metaColumns {
		cols.add(name, metaNodes[name])
	}
	t := &parquetTable{schema: s, cells: make([]cell, len(s.columns)), types: make([]columnType, len(s.columns))}
	for i, c := range s.columns {
		t.types[i] = c.typ()
		cols.add(c.name, dataNode(t.types[i]))
	}
	if s.extra {
		cols.add(ExtraColumn, parquet.Optional(parquet.JSON()))
	}
	opts := []parquet.WriterOption{
		parquet.Compression(&parquet.Snappy),
		parquet.PageBufferSize(min(max(pageBufferBudget/len(cols), minPageBuffer), maxPageBuffer)),
		parquet.CreatedBy("synkronus", "", ""),
	}
	for i := 0; i+1 < len(meta); i += 2 {
		opts = append(opts, parquet.KeyValueMetadata(meta[i], meta[i+1]))
	}
	t.w = parquet.NewWriter(out, append(opts, parquet.NewSchema("observation", cols))...)
	return t
}

func (t *parquetTable) write(o *observation) error {
	row, err := t.row(o)
	if err != nil {
		return err
	}
	t.rows = append(t.rows, row)
	if len(t.rows) == rowBatch {
		return t.flushRows()
	}
	return nil
}

func (t *parquetTable) flushRows() error {
	if _, err := t.w.WriteRows(t.rows); err != nil {
		return fmt.Errorf("error writing parquet rows: %w", err)
	}
	for i := range t.rows {
		t.rows[i] = t.rows[i][:0]
	}
	t.rows, t.arena = t.rows[:0], t.arena[:0]
	if t.w.Size()-t.flushed >= rowGroupBytes {
		if err := t.w.Flush(); err != nil {
			return fmt.Errorf("error writing a parquet row group: %w", err)
		}
		t.flushed = t.w.Size()
	}
	return nil
}

func (t *parquetTable) close() error {
	if err := t.flushRows(); err != nil {
		return err
	}
	if err := t.w.Close(); err != nil {
		return fmt.Errorf("error closing parquet file: %w", err)
	}
	return nil
}

// rowBuilder appends the values of one row, each at its column's position.
type rowBuilder struct {
	row parquet.Row
	col int
}

func (b *rowBuilder) required(v parquet.Value) {
	b.row = append(b.row, v.Level(0, 0, b.col))
	b.col++
}

func (b *rowBuilder) optional(v parquet.Value, present bool) {
	if present {
		b.row = append(b.row, v.Level(0, 1, b.col))
	} else {
		b.row = append(b.row, parquet.Value{}.Level(0, 0, b.col))
	}
	b.col++
}

func (t *parquetTable) text(s string) parquet.Value {
	start := len(t.arena)
	t.arena = append(t.arena, s...)
	return parquet.ByteArrayValue(t.arena[start:])
}

func (t *parquetTable) optionalText(s *string) (parquet.Value, bool) {
	if s == nil {
		return parquet.Value{}, false
	}
	return t.text(*s), true
}

func (t *parquetTable) row(o *observation) (parquet.Row, error) {
	var reuse parquet.Row
	if n := len(t.rows); n < cap(t.rows) {
		reuse = t.rows[:n+1][n][:0]
	}
	b := rowBuilder{row: reuse}
	b.required(t.text(o.ObservationID))
	b.required(t.text(o.FormType))
	b.required(t.text(o.FormVersion))
	b.required(parquet.Int64Value(o.Version))
	b.required(parquet.Int64Value(o.CreatedAt.UnixMicro()))
	b.required(parquet.Int64Value(o.UpdatedAt.UnixMicro()))
	b.required(parquet.Int64Value(o.SyncedAt.UnixMicro()))
	b.required(parquet.BooleanValue(o.Deleted))
	b.optional(t.optionalText(o.Author))
	b.optional(t.optionalText(o.DeviceID))
	b.tags(t, o.Tags)

	g := parseGeolocation(o.Geolocation)
	for _, n := range g.numbers {
		v, err := parseDouble(n)
		if err != nil {
			return nil, err
		}
		b.optional(parquet.DoubleValue(v), n != nil)
	}
	var ts []byte
	if g.timestamp != nil {
		ts, t.arena = unquote(g.timestamp, t.arena)
	}
	b.optional(parquet.ByteArrayValue(ts), g.timestamp != nil)

	start := len(t.arena)
	t.arena = t.schema.rowCells(&t.flat, o.Data, t.cells, t.arena)
	extra := t.arena[start:]
	for i, c := range t.cells {
		v, err := t.value(t.types[i], c)
		if err != nil {
			return nil, fmt.Errorf("error converting %s of observation %s: %w", t.schema.columns[i].name, o.ObservationID, err)
		}
		b.optional(v, c.value != nil && c.kind != kindNull)
	}
	if t.schema.extra {
		b.optional(parquet.ByteArrayValue(extra), len(extra) > 0)
	}
	return b.row, nil
}

// tags writes the tags list: absent (definition level 0), empty (1) or its elements (2),
// each but the first repeating the list (repetition level 1).
func (b *rowBuilder) tags(t *parquetTable, tags []string) {
	switch {
	case tags == nil:
		b.row = append(b.row, parquet.Value{}.Level(0, 0, b.col))
	case len(tags) == 0:
		b.row = append(b.row, parquet.Value{}.Level(0, 1, b.col))
	default:
		for i, tag := range tags {
			b.row = append(b.row, t.text(tag).Level(min(i, 1), 2, b.col))
		}
	}
	b.col++
}

// value converts a data cell to its column's type. The column types were inferred from
// the same snapshot, so a value that does not fit its column is a bug.
func (t *parquetTable) value(typ columnType, c cell) (parquet.Value, error) {
	if c.value == nil || c.kind == kindNull {
		return parquet.Value{}, nil
	}
	switch typ {
	case typeString:
		var s []byte
		s, t.arena = unquote(c.value, t.arena)
		return parquet.ByteArrayValue(s), nil
	case typeInt:
		v, err := strconv.ParseInt(string(c.value), 10, 64)
		return parquet.Int64Value(v), err
	case typeDouble:
		v, err := parseDouble(c.value)
		return parquet.DoubleValue(v), err
	case typeBool:
		return parquet.BooleanValue(c.value[0] == 't'), nil
	}
	var s []byte
	s, t.arena = compactJSON(c, t.arena)
	return parquet.ByteArrayValue(s), nil
}

// parseDouble reads a JSON number; one beyond the range of a double is an infinity.
func parseDouble(v []byte) (float64, error) {
	if v == nil {
		return 0, nil
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if ne, ok := err.(*strconv.NumError); ok && ne.Err == strconv.ErrRange {
		err = nil
	}
	return f, err
}

// compactJSON returns the cell's JSON text without insignificant whitespace, appending
// to buf only for arrays and objects, which may hold some.
func compactJSON(c cell, buf []byte) (s, newBuf []byte) {
	if c.kind != kindArray && c.kind != kindObject {
		return c.value, buf
	}
	start := len(buf)
	w := bytes.NewBuffer(buf)
	if err := json.Compact(w, c.value); err != nil {
		return c.value, buf
	}
	buf = w.Bytes()
	return buf[start:], buf
}
