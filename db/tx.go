package db

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// InTx runs fn in a transaction with the given options, committing when fn returns nil.
// The transaction fn receives translates the errors of its statements (see Translate).
// The rollback uses a fresh short context so that it still happens when the request's
// context was cancelled mid-transaction.
func InTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	_, err := InTxValue(ctx, pool, opts, func(t pgx.Tx) (struct{}, error) { return struct{}{}, fn(t) })
	return err
}

// InTxValue is InTx for a transaction that produces a value: fn's value is returned once
// the transaction has committed, and the zero value with any error.
func InTxValue[T any](ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) (T, error)) (T, error) {
	var zero T
	raw, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return zero, fmt.Errorf("error beginning transaction: %w", Translate(err))
	}
	defer func() {
		rbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = raw.Rollback(rbCtx) // a no-op after a successful commit
	}()
	v, err := fn(tx{raw})
	if err != nil {
		return zero, err
	}
	if err := raw.Commit(ctx); err != nil {
		return zero, fmt.Errorf("error committing transaction: %w", Translate(err))
	}
	return v, nil
}
