package attachments_test

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server/attachments"
	"github.com/opendataensemble/synkronus/server/blobstore"
	"github.com/opendataensemble/synkronus/server/blobstore/blobstoretest"
)

func TestCheckID(t *testing.T) {
	t.Parallel()
	for _, id := range []string{"a", "0b6c3a7e-1f2d-4c5b-8a9e-123456789abc.jpg", "signature_1712345678.png", "a..b", ".hidden", strings.Repeat("z", 255)} {
		require.NoError(t, attachments.CheckID(id), id)
	}
	for _, id := range []string{"", ".", "..", "...", "e2..", "manifest", "export-zip", "a/b", "../x", "a b", "a\\b", "café.jpg", "a\x00b", strings.Repeat("z", 256)} {
		require.ErrorIs(t, attachments.CheckID(id), attachments.ErrInvalidID, "%q", id)
	}
}

type fixture struct {
	pool  *pgxpool.Pool
	blobs *blobstore.Store
}

func newFixture(t *testing.T, b blobstoretest.Backend) fixture {
	return fixture{pool: dbtest.NewDB(t), blobs: blobstoretest.Open(t, b)}
}

func (f fixture) service(opts attachments.Options) *attachments.Service {
	return attachments.NewService(f.pool, f.blobs, slog.New(slog.NewTextHandler(io.Discard, nil)), opts)
}

func (f fixture) keys(t *testing.T) []string {
	t.Helper()
	var keys []string
	require.NoError(t, f.blobs.List(context.Background(), "attachments/", func(o blobstore.Object) error {
		keys = append(keys, o.Key)
		return nil
	}))
	return keys
}

func (f fixture) unclaimed(t *testing.T) int {
	t.Helper()
	var n int
	require.NoError(t, f.pool.QueryRow(context.Background(), "SELECT count(*) FROM attachment_unclaimed_blobs").Scan(&n))
	return n
}

func TestSweepRemovesWhatACrashLeft(t *testing.T) {
	t.Parallel()
	for _, b := range blobstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, b)
			svc := f.service(attachments.Options{})
			// A process crashed after writing an upload (and its processed copy, and a
			// temporary file) but before recording it; another upload is still streaming.
			for _, k := range []string{"attachments/a.jpg/1111", "attachments/a.jpg/1111-processed", "attachments/a.jpg/1111-processed.17f2.tmp", "attachments/b.jpg/2222"} {
				_, err := f.blobs.Write(ctx, k, strings.NewReader("bytes"), blobstore.WriteOptions{})
				require.NoError(t, err)
			}
			_, err := f.pool.Exec(ctx, `INSERT INTO attachment_unclaimed_blobs VALUES
				('attachments/a.jpg/1111', now() - interval '1 minute'), ('attachments/b.jpg/2222', now() + interval '1 hour')`)
			require.NoError(t, err)

			require.NoError(t, svc.Sweep(ctx))
			require.Equal(t, []string{"attachments/b.jpg/2222"}, f.keys(t), "only the upload whose time is up is removed")
			require.Equal(t, 1, f.unclaimed(t))
		})
	}
}

// gatedReader yields its content only once the gate opens, and reports when the reading
// started.
type gatedReader struct {
	r       io.Reader
	started chan struct{}
	gate    chan struct{}
	once    sync.Once
}

func (g *gatedReader) Read(p []byte) (int, error) {
	g.once.Do(func() { close(g.started) })
	<-g.gate
	return g.r.Read(p)
}

func TestAnUploadThatOutlivesTheGracePeriodIsDiscarded(t *testing.T) {
	t.Parallel()
	for _, b := range blobstoretest.Backends(t) {
		t.Run(b.Name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := newFixture(t, b)
			svc := f.service(attachments.Options{UploadGrace: time.Millisecond})
			body := &gatedReader{r: strings.NewReader("a very slow upload"), started: make(chan struct{}), gate: make(chan struct{})}
			done := make(chan error, 1)
			go func() {
				_, err := svc.Upload(ctx, attachments.UploadRequest{ID: "slow.txt", Username: "ana", Body: body})
				done <- err
			}()
			<-body.started
			time.Sleep(20 * time.Millisecond)
			require.NoError(t, svc.Sweep(ctx)) // the cleanup takes the upload's blob
			close(body.gate)

			require.Error(t, <-done, "the upload cannot be recorded once its blob is gone")
			_, err := svc.Stat(ctx, "slow.txt", false)
			require.ErrorIs(t, err, attachments.ErrNotFound)
			require.Empty(t, f.keys(t))
			require.Zero(t, f.unclaimed(t))
		})
	}
}
