package db_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/db/dbtest"
)

// countingConn counts the writes to the database's socket: one per round trip.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(b []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(b)
}

// pipeSetup returns a pool of one connection whose writes are counted, and a table t.
func pipeSetup(t *testing.T) (*pgxpool.Pool, *atomic.Int64) {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dbtest.NewDBURL(t))
	require.NoError(t, err)
	cfg.MaxConns = 1
	writes := &atomic.Int64{}
	dial := cfg.ConnConfig.DialFunc
	cfg.ConnConfig.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		return countingConn{Conn: c, writes: writes}, err
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(t.Context(), "CREATE TABLE t (id int PRIMARY KEY)")
	require.NoError(t, err)
	return pool, writes
}

func count(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(t.Context(), "SELECT count(*) FROM t").Scan(&n))
	return n
}

// A PipeTx sends BEGIN with its first statement and COMMIT with the one CommitWithNext
// marks: three statements cost three round trips, where a pgx.Tx takes five.
func TestPipeTxSendsBeginAndCommitWithStatements(t *testing.T) {
	t.Parallel()
	pool, writes := pipeSetup(t)
	ctx := t.Context()
	run := func(base int) (int, error) {
		return db.InPipeTx(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx *db.PipeTx) (int, error) {
			var level string
			if err := tx.QueryRow(ctx, "SELECT current_setting('transaction_isolation')").Scan(&level); err != nil {
				return 0, err
			}
			require.Equal(t, "read committed", level)
			rows, err := tx.Query(ctx, "INSERT INTO t VALUES ($1), ($2) RETURNING id", base, base+1)
			if err != nil {
				return 0, err
			}
			ids, err := pgx.CollectRows(rows, pgx.RowTo[int])
			if err != nil {
				return 0, err
			}
			tx.CommitWithNext()
			_, err = tx.Exec(ctx, "INSERT INTO t VALUES ($1)", base+2)
			return len(ids), err
		})
	}
	_, err := run(0) // prepares the statements on the connection
	require.NoError(t, err)
	writes.Store(0)
	n, err := run(10)
	require.NoError(t, err)
	require.Equal(t, 2, n)
	require.Equal(t, int64(3), writes.Load(), "one round trip per statement")
	require.Equal(t, 6, count(t, pool))
}

// The statement that carries the COMMIT failing rolls the whole transaction back, with
// its error translated; the connection serves the next transaction.
func TestPipeTxRollsBackWhenTheLastStatementFails(t *testing.T) {
	t.Parallel()
	pool, _ := pipeSetup(t)
	ctx := t.Context()
	_, err := db.InPipeTx(ctx, pool, pgx.TxOptions{}, func(tx *db.PipeTx) (struct{}, error) {
		_, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)")
		require.NoError(t, err)
		tx.CommitWithNext()
		_, err = tx.Exec(ctx, "INSERT INTO t VALUES (1)")
		return struct{}{}, err
	})
	require.ErrorIs(t, err, db.ErrUniqueViolation)
	require.Zero(t, count(t, pool))

	_, err = db.InPipeTx(ctx, pool, pgx.TxOptions{}, func(tx *db.PipeTx) (struct{}, error) {
		var n int
		err := tx.QueryRow(ctx, "SELECT id FROM t").Scan(&n)
		require.ErrorIs(t, err, db.ErrNotFound)
		_, err = tx.Exec(ctx, "INSERT INTO t VALUES (2)")
		require.NoError(t, err)
		return struct{}{}, context.Canceled // fn's own error rolls back too
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Zero(t, count(t, pool))

	_, err = db.InPipeTx(ctx, pool, pgx.TxOptions{}, func(tx *db.PipeTx) (struct{}, error) {
		tx.CommitWithNext()
		_, err := tx.Query(ctx, "SELECT 1")
		return struct{}{}, err
	})
	require.Error(t, err, "rows cannot carry the COMMIT")
	_, err = pool.Exec(ctx, "INSERT INTO t VALUES (3)")
	require.NoError(t, err, "the connection is usable again")
	require.Equal(t, 1, count(t, pool))
}
