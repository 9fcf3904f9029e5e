package db

import (
	"context"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DBTX is what sqlc's generated queries run on (dbgen.New takes one).
type DBTX interface {
	Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error)
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error)
}

// Conn returns the pool as a DBTX whose every error is translated (see Translate).
func Conn(pool *pgxpool.Pool) DBTX { return translating{pool} }

// translating runs statements on a pool or a transaction and translates their errors.
type translating struct{ db DBTX }

func (t translating) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	tag, err := t.db.Exec(ctx, sql, args...)
	return tag, Translate(err)
}

func (t translating) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	rows, err := t.db.Query(ctx, sql, args...)
	if err != nil {
		return rows, Translate(err)
	}
	return translatedRows{rows}, nil
}

func (t translating) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return translatedRow{t.db.QueryRow(ctx, sql, args...)}
}

func (t translating) CopyFrom(ctx context.Context, table pgx.Identifier, columns []string, src pgx.CopyFromSource) (int64, error) {
	n, err := t.db.CopyFrom(ctx, table, columns, src)
	return n, Translate(err)
}

type translatedRow struct{ pgx.Row }

func (r translatedRow) Scan(dest ...any) error { return Translate(r.Row.Scan(dest...)) }

type translatedRows struct{ pgx.Rows }

func (r translatedRows) Err() error { return Translate(r.Rows.Err()) }

func (r translatedRows) Scan(dest ...any) error { return Translate(r.Rows.Scan(dest...)) }

// tx is a transaction (or savepoint) whose statements, savepoints and commit translate
// their errors.
type tx struct{ pgx.Tx }

func (t tx) Exec(ctx context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	return translating{t.Tx}.Exec(ctx, sql, args...)
}

func (t tx) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	return translating{t.Tx}.Query(ctx, sql, args...)
}

func (t tx) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	return translating{t.Tx}.QueryRow(ctx, sql, args...)
}

// Begin starts a savepoint.
func (t tx) Begin(ctx context.Context) (pgx.Tx, error) {
	sp, err := t.Tx.Begin(ctx)
	if err != nil {
		return nil, Translate(err)
	}
	return tx{sp}, nil
}

func (t tx) Commit(ctx context.Context) error { return Translate(t.Tx.Commit(ctx)) }

func (t tx) Rollback(ctx context.Context) error { return Translate(t.Tx.Rollback(ctx)) }
