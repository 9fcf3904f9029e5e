package db_test

import (
	"context"
	"errors"
	"net"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/db/dbtest"
)

// Code outside package db sees only the package's sentinels, whichever way it runs a
// statement: on the pool, in a transaction or in a savepoint.
func TestErrorsAreTranslatedOnce(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewDB(t)
	ctx := t.Context()
	conn := db.Conn(pool)

	var n int
	err := conn.QueryRow(ctx, "SELECT 1 WHERE false").Scan(&n)
	require.ErrorIs(t, err, db.ErrNotFound)
	require.ErrorIs(t, err, pgx.ErrNoRows, "the driver's error stays in the chain for logs")

	_, err = conn.Exec(ctx, "SELECT $1::text", "a\x00b")
	var dataErr *db.DataError
	require.ErrorAs(t, err, &dataErr)
	require.Equal(t, "22021", dataErr.Code)
	require.Contains(t, dataErr.Message, "0x00")

	rows, err := conn.Query(ctx, "SELECT 1/x FROM (VALUES (1), (0)) AS v(x)")
	require.NoError(t, err)
	for rows.Next() { // up to the row that fails
	}
	require.ErrorAs(t, rows.Err(), &dataErr, "errors met while reading rows too")
	require.Equal(t, "22012", dataErr.Code)

	err = db.InTx(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "CREATE TEMP TABLE t (id int PRIMARY KEY)")
		require.NoError(t, err)
		_, err = tx.Exec(ctx, "INSERT INTO t VALUES (1)")
		require.NoError(t, err)
		sp, err := tx.Begin(ctx)
		require.NoError(t, err)
		_, err = sp.Exec(ctx, "INSERT INTO t VALUES (1)")
		require.ErrorIs(t, err, db.ErrUniqueViolation, "in a savepoint")
		require.NoError(t, sp.Rollback(ctx))
		_, err = tx.Exec(ctx, "INSERT INTO t VALUES (NULL)")
		require.ErrorAs(t, err, &dataErr, "a NOT NULL violation is the data's fault")
		return err
	})
	require.ErrorAs(t, err, &dataErr)
}

func TestUnreachableDatabaseIsUnavailable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	pool, err := pgxpool.New(t.Context(), "postgres://nobody@"+addr+"/nothing?sslmode=disable&connect_timeout=5")
	require.NoError(t, err)
	defer pool.Close()

	var n int
	err = db.Conn(pool).QueryRow(t.Context(), "SELECT 1").Scan(&n)
	require.ErrorIs(t, err, db.ErrUnavailable)
	err = db.InTx(t.Context(), pool, pgx.TxOptions{}, func(pgx.Tx) error { return nil })
	require.ErrorIs(t, err, db.ErrUnavailable)

	// A caller that gave up is not an outage.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	err = db.Conn(pool).QueryRow(ctx, "SELECT 1").Scan(&n)
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, errors.Is(err, db.ErrUnavailable))
}

func TestInTxValueCommitsOrRollsBack(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewDB(t)
	ctx := t.Context()
	_, err := pool.Exec(ctx, "CREATE TABLE counters (n int)")
	require.NoError(t, err)

	n, err := db.InTxValue(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) (int, error) {
		var n int
		err := tx.QueryRow(ctx, "INSERT INTO counters VALUES (41) RETURNING n + 1").Scan(&n)
		return n, err
	})
	require.NoError(t, err)
	require.Equal(t, 42, n)

	boom := errors.New("boom")
	n, err = db.InTxValue(ctx, pool, pgx.TxOptions{}, func(tx pgx.Tx) (int, error) {
		_, err := tx.Exec(ctx, "INSERT INTO counters VALUES (7)")
		require.NoError(t, err)
		return 7, boom
	})
	require.ErrorIs(t, err, boom)
	require.Zero(t, n, "no value without a commit")

	var count int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM counters").Scan(&count))
	require.Equal(t, 1, count, "the failed transaction was rolled back")
}
