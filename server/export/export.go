// Package export writes the observations as ZIP archives for analysis: one Parquet or CSV
// table per form type with the form data flattened into typed columns, or one JSON
// document per observation. An archive is read from one snapshot and streamed as it is
// written, in memory that depends neither on the number of observations nor on their size.
package export

import (
	"bytes"
	"compress/flate"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// Format is the kind of archive an export writes.
type Format int

// The archive formats.
const (
	// Parquet is one Parquet file per form type.
	Parquet Format = iota
	// CSV is one CSV file per form type, with the Parquet file's columns.
	CSV
	// JSON is one JSON document per observation, in a folder per form type.
	JSON
)

// Filter selects the observations of an export.
type Filter struct {
	FormTypes      []string // all when empty
	SinceVersion   int64    // only observations whose version is greater
	IncludeDeleted bool
}

// Snapshot is the state of the repository an export reads.
type Snapshot struct {
	// CurrentVersion is the highest version in the snapshot: the SinceVersion of the
	// next incremental export.
	CurrentVersion int64
}

// formTypePage is how many form types are listed per query.
const formTypePage = 100

// Service runs exports.
type Service struct {
	pool  *pgxpool.Pool
	q     *dbgen.Queries
	slots chan struct{}
}

// NewService returns a Service that runs at most maxConcurrent exports at once; more
// wait for a turn. Each export holds a database connection and a snapshot while it
// streams, and keeps a CPU busy.
func NewService(pool *pgxpool.Pool, maxConcurrent int) *Service {
	return &Service{pool: pool, q: dbgen.New(pool), slots: make(chan struct{}, max(maxConcurrent, 1))}
}

// Export writes the archive of the observations f selects to the writer open returns.
// open is called once, inside the snapshot, before anything is written. An error after
// writing started leaves the archive incomplete (it lacks its directory).
func (s *Service) Export(ctx context.Context, format Format, f Filter, open func(Snapshot) io.Writer) error {
	select {
	case s.slots <- struct{}{}:
		defer func() { <-s.slots }()
	case <-ctx.Done():
		return ctx.Err()
	}
	// REPEATABLE READ: every query of the export sees the same snapshot, so the schema
	// inferred in the first pass over a form type matches the rows of the second.
	return db.InTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		q := s.q.WithTx(tx)
		st, err := q.SyncStateGet(ctx)
		if err != nil {
			return fmt.Errorf("error reading sync state: %w", err)
		}
		level := flate.BestSpeed
		if format == Parquet {
			level = flate.NoCompression // Parquet pages are compressed already
		}
		zw, err := newZipWriter(open(Snapshot{CurrentVersion: st.CurrentVersion}), time.Now(), level)
		if err != nil {
			return err
		}
		defer zw.discard()
		e := exporter{tx: tx, zip: zw, format: format, filter: f, snapshot: st.CurrentVersion}
		var after *string
		for {
			page, err := q.ObservationExportFormTypes(ctx, dbgen.ObservationExportFormTypesParams{
				After: after, FormTypes: f.FormTypes, SinceVersion: f.SinceVersion, IncludeDeleted: f.IncludeDeleted, MaxRows: formTypePage,
			})
			if err != nil {
				return fmt.Errorf("error listing form types: %w", err)
			}
			for _, ft := range page {
				if err := e.formType(ctx, ft); err != nil {
					return err
				}
			}
			if len(page) < formTypePage {
				break
			}
			after = &page[len(page)-1]
		}
		if err := zw.close(); err != nil {
			return fmt.Errorf("error finishing the archive: %w", err)
		}
		return nil
	})
}

// exporter is one export in progress.
type exporter struct {
	tx       pgx.Tx
	zip      *zipWriter
	format   Format
	filter   Filter
	snapshot int64
	names    formFileNames
	doc      []byte
	pretty   bytes.Buffer
}

// The two passes over a form type read its observations with a plain query whose rows
// are handled one at a time as they arrive: sqlc's generated code collects whole result
// sets, and a page of rows could be as large as its records (up to 1 MiB each).
const (
	selectData = `SELECT data FROM observations
WHERE form_type = $1 AND version > $2 AND ($3 OR NOT deleted) ORDER BY version`
	selectRows = `SELECT observation_id, version, form_type, form_version, data, geolocation, extra, author, device_id, tags,
       created_at, created_at_text, updated_at, updated_at_text, synced_at, deleted
FROM observations
WHERE form_type = $1 AND version > $2 AND ($3 OR NOT deleted) ORDER BY version`
)

func (e *exporter) formType(ctx context.Context, formType string) error {
	name := e.names.next(formType)
	if e.format == JSON {
		return e.rows(ctx, formType, func(o *observation) error { return e.document(name, o) })
	}
	schema, err := e.infer(ctx, formType)
	if err != nil {
		return err
	}
	var t tableWriter
	if e.format == CSV {
		w, err := e.zip.create(name + ".csv")
		if err != nil {
			return err
		}
		if t, err = newCSVTable(w, schema); err != nil {
			return err
		}
	} else {
		w, err := e.zip.create(name + ".parquet")
		if err != nil {
			return err
		}
		t = newParquetTable(w, schema, []string{
			"synkronus.form_type", formType,
			"synkronus.snapshot_version", strconv.FormatInt(e.snapshot, 10),
			"synkronus.since_version", strconv.FormatInt(e.filter.SinceVersion, 10),
		})
	}
	if err := e.rows(ctx, formType, t.write); err != nil {
		return err
	}
	return t.close()
}

// infer is the first pass: the columns of a form type's table.
func (e *exporter) infer(ctx context.Context, formType string) (*formSchema, error) {
	rows, err := e.tx.Query(ctx, selectData, formType, e.filter.SinceVersion, e.filter.IncludeDeleted)
	if err != nil {
		return nil, fmt.Errorf("error reading observations: %w", err)
	}
	defer rows.Close()
	s := newFormSchema()
	var f flattener
	for rows.Next() {
		s.observe(&f, rows.RawValues()[0])
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("error reading observations: %w", err)
	}
	return s, nil
}

// rows is the second pass: it hands each observation of a form type to fn.
func (e *exporter) rows(ctx context.Context, formType string, fn func(*observation) error) error {
	rows, err := e.tx.Query(ctx, selectRows, formType, e.filter.SinceVersion, e.filter.IncludeDeleted)
	if err != nil {
		return fmt.Errorf("error reading observations: %w", err)
	}
	defer rows.Close()
	var o observation
	for rows.Next() {
		err := rows.Scan(&o.ObservationID, &o.Version, &o.FormType, &o.FormVersion, &o.Data, &o.Geolocation, &o.Extra, &o.Author,
			&o.DeviceID, &o.Tags, &o.CreatedAt, &o.CreatedAtText, &o.UpdatedAt, &o.UpdatedAtText, &o.SyncedAt, &o.Deleted)
		if err != nil {
			return fmt.Errorf("error reading an observation: %w", err)
		}
		if err := fn(&o); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("error reading observations: %w", err)
	}
	return nil
}

// document writes one observation as a pretty-printed JSON document: what a pull returns
// for it, with data exactly as stored.
func (e *exporter) document(dir string, o *observation) error {
	e.doc = obsync.AppendRecordJSON(e.doc[:0], &o.PulledRecord)
	e.pretty.Reset()
	if err := json.Indent(&e.pretty, e.doc, "", "  "); err != nil {
		return fmt.Errorf("error formatting observation %s: %w", o.ObservationID, err)
	}
	e.pretty.WriteByte('\n')
	w, err := e.zip.create(dir + "/" + fileName(o.ObservationID) + ".json")
	if err != nil {
		return err
	}
	_, err = e.pretty.WriteTo(w)
	return err
}
