// Package dbtest gives tests a fresh, fully migrated PostgreSQL database each. It lives
// apart from package db so that the server binary links neither `testing` nor pgtestdb.
package dbtest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"io"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	_ "github.com/jackc/pgx/v5/stdlib" // registers the "pgx" database/sql driver pgtestdb uses
	"github.com/peterldowns/pgtestdb"

	"github.com/opendataensemble/synkronus/db"
)

// ServerURL is the PostgreSQL server tests create their databases on. TEST_DATABASE_URL
// overrides it; the default is the local server of the development machine and of CI.
func ServerURL() string {
	if u := os.Getenv("TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// gooseMigrator adapts the embedded migrations to pgtestdb. Its hash covers every migration
// file, so the template database is rebuilt exactly when a migration changes.
type gooseMigrator struct{}

func (gooseMigrator) Hash() (string, error) {
	h := sha256.New()
	err := fs.WalkDir(db.Migrations(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(db.Migrations(), path)
		if err != nil {
			return err
		}
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil)), err
}

func (gooseMigrator) Migrate(ctx context.Context, sqlDB *sql.DB, _ pgtestdb.Config) error {
	return db.MigrateSQL(ctx, sqlDB, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// NewDB creates a fresh, fully migrated database for one test (cloned from a template,
// so it is cheap) and returns a pool on it, closed when the test ends.
func NewDB(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgxpool.New(context.Background(), NewDBURL(t))
	if err != nil {
		t.Fatalf("error connecting to test database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// NewDBURL is NewDB for code that opens its own connections: it returns the URL.
func NewDBURL(t testing.TB) string {
	t.Helper()
	return pgtestdb.Custom(t, testConfig(t), gooseMigrator{}).URL()
}

func testConfig(t testing.TB) pgtestdb.Config {
	u, err := url.Parse(ServerURL())
	if err != nil {
		t.Fatalf("error parsing TEST_DATABASE_URL: %v", err)
	}
	pw, _ := u.User.Password()
	port := u.Port()
	if port == "" {
		port = "5432"
	}
	return pgtestdb.Config{
		DriverName:                "pgx",
		Host:                      u.Hostname(),
		Port:                      port,
		User:                      u.User.Username(),
		Password:                  pw,
		Database:                  u.Path[1:],
		Options:                   u.RawQuery,
		ForceTerminateConnections: true,
	}
}
