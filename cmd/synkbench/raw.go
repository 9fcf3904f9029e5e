package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/opendataensemble/synkronus/server/obsync"
)

// The tables of the raw PostgreSQL references: the plain one holds each pushed record as
// it was sent, under its id; the shaped one is a copy of observations (its columns,
// defaults and indexes), filled with the values the server stores, versions from a
// sequence and no lock: what PostgreSQL alone does with the server's rows, the most any
// design of the write could reach with this schema on this machine.
const (
	rawTable    = "synkbench_raw_push"
	shapedTable = "synkbench_raw_shaped"
)

// rawBatch is the rows of one push request as a reference inserts them: the arguments of
// its statement.
type rawBatch struct {
	records int
	args    []any
}

// rawBatches turns the plan's requests into the batches a reference inserts, one per
// request and the same batches per client, with row giving the arguments of a batch's
// records and their ids. Done before the timing starts, and for one reference at a time: what is held
// is walked by every collection of synkbench's heap while the reference runs.
func rawBatches(plan pushPlan, row func(ids []string, records []json.RawMessage) ([]any, error)) ([][]rawBatch, error) {
	out := make([][]rawBatch, len(plan.perClient))
	for c, batches := range plan.perClient {
		for _, b := range batches {
			var req struct {
				Records []json.RawMessage `json:"records"`
			}
			if err := json.Unmarshal(b.body, &req); err != nil {
				return nil, fmt.Errorf("error decoding a planned push: %w", err)
			}
			if len(req.Records) != len(b.ids) {
				return nil, fmt.Errorf("a planned push holds %d records and %d ids", len(req.Records), len(b.ids))
			}
			args, err := row(b.ids, req.Records)
			if err != nil {
				return nil, err
			}
			out[c] = append(out[c], rawBatch{records: len(req.Records), args: args})
		}
	}
	return out, nil
}

// plainRows is the plain reference's arguments: the records' ids and texts.
func plainRows(ids []string, records []json.RawMessage) ([]any, error) {
	texts := make([]string, len(records))
	for i, raw := range records {
		texts[i] = string(raw)
	}
	return []any{ids, texts}, nil
}

// shapedRows is the shaped reference's arguments: one array per column.
func shapedRows(ids []string, records []json.RawMessage) ([]any, error) {
	var formTypes, formVersions, data, geolocations, createdTexts, updatedTexts []string
	var authors, devices []*string
	var createdAts, updatedAts []time.Time
	var deleted []bool
	var hashes [][]byte
	var sizes []int32
	for _, raw := range records {
		r, rerr := obsync.ParseRecord(raw)
		if rerr != nil {
			return nil, fmt.Errorf("a planned record is refused: %s", rerr.Message)
		}
		formTypes, formVersions = append(formTypes, r.FormType), append(formVersions, r.FormVersion)
		data, geolocations = append(data, string(r.Data)), append(geolocations, string(r.Geolocation))
		authors, devices = append(authors, r.Author), append(devices, r.DeviceID)
		createdAts, createdTexts = append(createdAts, r.CreatedAt), append(createdTexts, r.CreatedAtText)
		updatedAts, updatedTexts = append(updatedAts, r.UpdatedAt), append(updatedTexts, r.UpdatedAtText)
		deleted, hashes, sizes = append(deleted, r.Deleted), append(hashes, r.Hash[:]), append(sizes, int32(len(raw)))
	}
	return []any{ids, formTypes, formVersions, data, geolocations, authors, devices,
		createdAts, createdTexts, updatedAts, updatedTexts, deleted, hashes, sizes}, nil
}

// rawResult is the figures of one reference.
type rawResult struct {
	stats phaseStats
	cpu   cpuUse
}

// runRawPush runs the raw PostgreSQL references for the push phase, plain then shaped:
// as many clients as push, each on its own connection inserting its batches one after
// another, one transaction (a single INSERT) per batch, with synchronous_commit on as the
// server has it. Records per second over the plain rate is how close the server comes to
// what PostgreSQL alone does with the same records on this machine. The CPU time is that
// of the inserts, not of preparing them.
func runRawPush(ctx context.Context, databaseURL string, plan pushPlan) (plain, shaped rawResult, err error) {
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return plain, shaped, fmt.Errorf("error parsing the database URL: %w", err)
	}
	cfg.MaxConns = int32(len(plan.perClient))
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return plain, shaped, fmt.Errorf("error connecting to the benchmark database: %w", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+rawTable+" (observation_id text PRIMARY KEY, record json NOT NULL);"+
		"CREATE TABLE "+shapedTable+" (LIKE observations INCLUDING ALL);"+
		"CREATE SEQUENCE "+shapedTable+"_version"); err != nil {
		return plain, shaped, fmt.Errorf("error creating the reference tables: %w", err)
	}
	conns := make([]*pgxpool.Conn, len(plan.perClient))
	for i := range conns {
		if conns[i], err = pool.Acquire(ctx); err != nil {
			return plain, shaped, fmt.Errorf("error connecting to the benchmark database: %w", err)
		}
		defer conns[i].Release()
	}
	plain, err = timeInserts(ctx, conns, plan, plainRows,
		"INSERT INTO "+rawTable+" (observation_id, record) SELECT * FROM unnest($1::text[], $2::json[])")
	if err != nil {
		return plain, shaped, err
	}
	shaped, err = timeInserts(ctx, conns, plan, shapedRows, `INSERT INTO `+shapedTable+` (
    observation_id, version, form_type, form_version, data, geolocation, author, device_id,
    created_at, created_at_text, updated_at, updated_at_text, deleted, content_hash,
    record_bytes, synced_at, pushed_by, client_id, transmission_id)
SELECT id, nextval('`+shapedTable+`_version'), ft, fv, d::json, NULLIF(g, '')::json, a, dev,
       ca, cat, ua, uat, del, h, rb, now(), 'synkbench', 'synkbench', 'reference'
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
            $8::timestamptz[], $9::text[], $10::timestamptz[], $11::text[], $12::boolean[], $13::bytea[],
            $14::integer[]) AS t(id, ft, fv, d, g, a, dev, ca, cat, ua, uat, del, h, rb)`)
	return plain, shaped, err
}

// timeInserts has each connection insert its client's batches, one statement each, with
// the arguments row gives.
func timeInserts(ctx context.Context, conns []*pgxpool.Conn, plan pushPlan, row func([]string, []json.RawMessage) ([]any, error), insert string) (rawResult, error) {
	batches, err := rawBatches(plan, row)
	if err != nil {
		return rawResult{}, err
	}
	latencies := make([][]time.Duration, len(batches))
	stopCPU := measureCPU(0)
	wall, err := runConcurrently(ctx, len(batches), func(ctx context.Context, w int) error {
		for _, b := range batches[w] {
			began := time.Now()
			if _, err := conns[w].Exec(ctx, insert, b.args...); err != nil {
				return fmt.Errorf("error inserting into a reference table: %w", err)
			}
			latencies[w] = append(latencies[w], time.Since(began))
		}
		return nil
	})
	if err != nil {
		return rawResult{}, err
	}
	var records, requests int
	for _, bs := range batches {
		for _, b := range bs {
			records += b.records
			requests++
		}
	}
	return rawResult{newPhaseStats(records, requests, wall, latencies), stopCPU(requests)}, nil
}

// pushesPerCommit returns how many pushes shared a transaction on average, from the
// transactions (xmin) that stored the push receipts.
func pushesPerCommit(ctx context.Context, databaseURL string) (float64, error) {
	conn, err := pgx.Connect(ctx, databaseURL)
	if err != nil {
		return 0, fmt.Errorf("error connecting to the benchmark database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var pushes, commits int
	if err := conn.QueryRow(ctx, "SELECT count(*), count(DISTINCT xmin::text) FROM push_receipts").Scan(&pushes, &commits); err != nil {
		return 0, fmt.Errorf("error counting the push commits: %w", err)
	}
	if commits == 0 {
		return 0, nil
	}
	return round(float64(pushes)/float64(commits), 2), nil
}
