package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// rawTable is the plain table of the raw PostgreSQL reference: each pushed record as it
// was sent, under its id.
const rawTable = "synkbench_raw_push"

// rawBatch is the rows of one push request as the reference inserts them.
type rawBatch struct {
	ids     []string
	records []string // JSON text
}

// rawBatches splits the plan's requests into the rows the reference inserts, one batch
// per request and the same batches per client. Done before the timing starts.
func rawBatches(plan pushPlan) ([][]rawBatch, error) {
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
			rb := rawBatch{ids: b.ids, records: make([]string, len(req.Records))}
			for i, r := range req.Records {
				rb.records[i] = string(r)
			}
			out[c] = append(out[c], rb)
		}
	}
	return out, nil
}

// runRawPush is the raw PostgreSQL reference for the push phase: as many clients as push,
// each on its own connection inserting its batches one after another, one transaction
// (a single INSERT) per batch, into a plain table with a primary key, with
// synchronous_commit on as the server has it. Records per second over this rate is how
// close the server comes to what PostgreSQL alone does with the same rows on this machine.
// The CPU time is that of the inserts, not of preparing them.
func runRawPush(ctx context.Context, databaseURL string, plan pushPlan) (phaseStats, cpuUse, error) {
	batches, err := rawBatches(plan)
	if err != nil {
		return phaseStats{}, cpuUse{}, err
	}
	cfg, err := pgxpool.ParseConfig(databaseURL)
	if err != nil {
		return phaseStats{}, cpuUse{}, fmt.Errorf("error parsing the database URL: %w", err)
	}
	cfg.MaxConns = int32(len(batches))
	cfg.ConnConfig.RuntimeParams["synchronous_commit"] = "on"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return phaseStats{}, cpuUse{}, fmt.Errorf("error connecting to the benchmark database: %w", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(ctx, "CREATE TABLE "+rawTable+" (observation_id text PRIMARY KEY, record json NOT NULL)"); err != nil {
		return phaseStats{}, cpuUse{}, fmt.Errorf("error creating the reference table: %w", err)
	}
	conns := make([]*pgxpool.Conn, len(batches))
	for i := range conns {
		if conns[i], err = pool.Acquire(ctx); err != nil {
			return phaseStats{}, cpuUse{}, fmt.Errorf("error connecting to the benchmark database: %w", err)
		}
		defer conns[i].Release()
	}
	insert := "INSERT INTO " + rawTable + " (observation_id, record) SELECT * FROM unnest($1::text[], $2::json[])"
	latencies := make([][]time.Duration, len(batches))
	stopCPU := measureCPU(0)
	wall, err := runConcurrently(ctx, len(batches), func(ctx context.Context, w int) error {
		for _, b := range batches[w] {
			began := time.Now()
			if _, err := conns[w].Exec(ctx, insert, b.ids, b.records); err != nil {
				return fmt.Errorf("error inserting into the reference table: %w", err)
			}
			latencies[w] = append(latencies[w], time.Since(began))
		}
		return nil
	})
	if err != nil {
		return phaseStats{}, cpuUse{}, err
	}
	var records, requests int
	for _, bs := range batches {
		for _, b := range bs {
			records += len(b.ids)
			requests++
		}
	}
	return newPhaseStats(records, requests, wall, latencies), stopCPU(requests), nil
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
