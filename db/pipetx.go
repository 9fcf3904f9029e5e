package db

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// PipeTx is a transaction that sends its BEGIN together with its first statement, and can
// send its COMMIT together with its last: two round trips fewer than a pgx.Tx. It is meant
// for short transactions that hold a lock others wait for, where every round trip is time
// the lock is held for nothing. It runs the queries of sqlc (dbgen.New takes it) and
// translates their errors (see Translate). It has no savepoints.
type PipeTx struct {
	conn         *pgxpool.Conn
	begin        string
	begun        bool // BEGIN was sent
	ended        bool // COMMIT was sent and succeeded
	commitOnNext bool
}

// InPipeTx runs fn in a PipeTx with the given options and commits when fn returns nil,
// unless fn already committed with CommitWithNext. The rollback after an error uses a fresh
// short context, so that it still happens when ctx was cancelled.
func InPipeTx[T any](ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(*PipeTx) (T, error)) (T, error) {
	var zero T
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return zero, fmt.Errorf("error acquiring a connection: %w", Translate(err))
	}
	defer conn.Release()
	tx := &PipeTx{conn: conn, begin: beginSQL(opts)}
	v, err := fn(tx)
	if err == nil && tx.begun && !tx.ended {
		err = tx.exec(ctx, "COMMIT")
		if err != nil {
			err = fmt.Errorf("error committing transaction: %w", err)
		} else {
			tx.ended = true
		}
	}
	if err != nil {
		if tx.begun && !tx.ended {
			rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if _, rbErr := conn.Exec(rbCtx, "ROLLBACK"); rbErr != nil {
				// The connection's state is unknown: it must not serve anyone else.
				_ = conn.Conn().Close(rbCtx)
			}
		}
		return zero, err
	}
	return v, nil
}

// beginSQL is the BEGIN statement of opts.
func beginSQL(opts pgx.TxOptions) string {
	parts := []string{"BEGIN"}
	if opts.IsoLevel != "" {
		parts = append(parts, "ISOLATION LEVEL", string(opts.IsoLevel))
	}
	if opts.AccessMode != "" {
		parts = append(parts, string(opts.AccessMode))
	}
	if opts.DeferrableMode != "" {
		parts = append(parts, string(opts.DeferrableMode))
	}
	return strings.Join(parts, " ")
}

// CommitWithNext makes the next statement carry the transaction's COMMIT: the transaction
// commits once that statement succeeds, and is rolled back when it fails. It must be the
// transaction's last statement.
func (t *PipeTx) CommitWithNext() { t.commitOnNext = true }

// start sends a statement, after BEGIN when it is the first and before COMMIT when
// CommitWithNext asked for it, in one round trip, and reads BEGIN's result. commit tells
// whether the batch carries the COMMIT; finish must end the batch.
func (t *PipeTx) start(ctx context.Context, sql string, args []any) (br pgx.BatchResults, commit bool, err error) {
	if t.ended {
		return nil, false, pgx.ErrTxClosed
	}
	b := &pgx.Batch{}
	withBegin := !t.begun
	if withBegin {
		b.Queue(t.begin)
	}
	b.Queue(sql, args...)
	commit = t.commitOnNext
	if commit {
		b.Queue("COMMIT")
	}
	t.begun, t.commitOnNext = true, false
	br = t.conn.SendBatch(ctx, b)
	if withBegin {
		if _, err := br.Exec(); err != nil {
			return nil, false, Translate(errors.Join(err, br.Close()))
		}
	}
	return br, commit, nil
}

// finish reads COMMIT's result when the batch carried it, after the statement's result was
// read (err is what reading it returned), and ends the batch.
func (t *PipeTx) finish(br pgx.BatchResults, commit bool, err error) error {
	if err == nil && commit {
		tag, cerr := br.Exec()
		switch {
		case cerr != nil:
			err = fmt.Errorf("error committing transaction: %w", cerr)
		case tag.String() != "COMMIT":
			err = fmt.Errorf("error committing transaction: %w", pgx.ErrTxCommitRollback)
		default:
			t.ended = true
		}
	}
	return Translate(errors.Join(err, br.Close()))
}

// exec sends a statement without arguments on its own.
func (t *PipeTx) exec(ctx context.Context, sql string) error {
	_, err := t.conn.Exec(ctx, sql)
	return Translate(err)
}

// Exec runs a statement that returns no rows.
func (t *PipeTx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	br, commit, err := t.start(ctx, sql, args)
	if err != nil {
		return pgconn.CommandTag{}, err
	}
	tag, err := br.Exec()
	return tag, t.finish(br, commit, err)
}

// QueryRow runs a statement and returns its first row. The statement runs when Scan is
// called, which reports its error, and COMMIT's when it carries it.
func (t *PipeTx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return pipeRow{t: t, ctx: ctx, sql: sql, args: args}
}

type pipeRow struct {
	t    *PipeTx
	ctx  context.Context
	sql  string
	args []any
}

func (r pipeRow) Scan(dest ...any) error {
	br, commit, err := r.t.start(r.ctx, r.sql, r.args)
	if err != nil {
		return err
	}
	return r.t.finish(br, commit, br.QueryRow().Scan(dest...))
}

// errRowsCommit refuses a COMMIT carried by a statement that returns rows: its result
// would only be known once the caller closed them.
var errRowsCommit = errors.New("a statement that returns rows cannot carry the COMMIT")

// Query runs a statement and returns its rows.
func (t *PipeTx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if t.commitOnNext {
		return nil, errRowsCommit
	}
	br, _, err := t.start(ctx, sql, args)
	if err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, t.finish(br, false, err)
	}
	return translatedRows{&batchRows{Rows: rows, br: br}}, nil
}

// batchRows are the rows of a statement sent as a batch, which they end when closed.
type batchRows struct {
	pgx.Rows
	br pgx.BatchResults
}

func (r *batchRows) Close() {
	r.Rows.Close()
	if r.br != nil {
		_ = r.br.Close() // an error of the connection is the next statement's
		r.br = nil
	}
}

// errCopyInPipeTx refuses COPY, which a PipeTx does not send.
var errCopyInPipeTx = errors.New("COPY is not supported in a PipeTx")

// CopyFrom is refused (errCopyInPipeTx): PipeTx has CopyFrom only to run sqlc's queries.
func (t *PipeTx) CopyFrom(context.Context, pgx.Identifier, []string, pgx.CopyFromSource) (int64, error) {
	return 0, errCopyInPipeTx
}
