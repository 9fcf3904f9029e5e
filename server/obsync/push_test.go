package obsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server/obsync"
)

func record(id, updatedAt, data string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"observation_id":%q,"form_type":"household","form_version":"1",
		"data":%s,"created_at":"2025-01-01T00:00:00.000Z","updated_at":%q,"deleted":false}`, id, data, updatedAt))
}

func push(t *testing.T, s *obsync.Service, tid string, records ...json.RawMessage) obsync.PushResult {
	t.Helper()
	res, err := s.Push(context.Background(), obsync.PushRequest{ClientID: "c1", TransmissionID: tid, Records: records, Username: "u"})
	require.NoError(t, err)
	return res
}

func TestPushThenPull(t *testing.T) {
	t.Parallel()
	s := obsync.NewService(dbtest.NewDB(t), obsync.PolicyNewest)
	res := push(t, s, "t1",
		record("a", "2025-01-01T10:00:00.000Z", `{"z": 1, "a": "\u0000"}`),
		json.RawMessage(`{"observation_id":"bad"}`),
		record("b", "2025-01-01T10:00:00.000Z", `{"q":[1,2]}`))
	require.Equal(t, int64(2), res.CurrentVersion)
	require.Equal(t, 2, res.SuccessCount)
	require.Len(t, res.FailedRecords, 1)
	require.Equal(t, 1, res.FailedRecords[0].Index)

	page, err := s.Pull(context.Background(), obsync.PullRequest{Since: 0, Limit: 1})
	require.NoError(t, err)
	require.True(t, page.HasMore)
	require.Equal(t, int64(1), page.ChangeCutoff)
	require.Equal(t, `{"z": 1, "a": "\u0000"}`, string(page.Records[0].Data))

	// identical content: no new version; a stale copy: conflict, stored copy kept
	res = push(t, s, "t2", record("a", "2025-01-01T10:00:00.000Z", `{"z": 1, "a": "\u0000"}`),
		record("b", "2024-01-01T10:00:00.000Z", `{"q":[3]}`))
	require.Equal(t, int64(2), res.CurrentVersion)
	require.Len(t, res.Warnings, 1)
	require.Equal(t, "CONFLICT", res.Warnings[0].Code)

	// replay returns the original answer
	again := push(t, s, "t2", record("a", "2025-01-01T10:00:00.000Z", `{"z": 1, "a": "\u0000"}`),
		record("b", "2024-01-01T10:00:00.000Z", `{"q":[3]}`))
	require.Equal(t, res, again)
}

// TestPushStoresTheOthersWhenTheDatabaseRefusesARecord covers a record that passes
// validation but that PostgreSQL refuses (here a CHECK constraint added for the test):
// it is reported, and the rest of the batch is stored in the same push.
func TestPushStoresTheOthersWhenTheDatabaseRefusesARecord(t *testing.T) {
	t.Parallel()
	pool := dbtest.NewDB(t)
	_, err := pool.Exec(context.Background(), `ALTER TABLE observations ADD CONSTRAINT no_poison CHECK (form_type <> 'poison')`)
	require.NoError(t, err)
	s := obsync.NewService(pool, obsync.PolicyNewest)
	poison := json.RawMessage(`{"observation_id":"p","form_type":"poison","form_version":"1","data":{},
		"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-01T00:00:00Z","deleted":false}`)

	res := push(t, s, "t1", record("a", "2025-01-01T10:00:00.000Z", `{"n":1}`), json.RawMessage(`{}`), poison,
		record("b", "2025-01-01T10:00:00.000Z", `{"n":2}`))
	require.Equal(t, 2, res.SuccessCount)
	require.Equal(t, int64(2), res.CurrentVersion)
	require.Len(t, res.FailedRecords, 2)
	require.Equal(t, 1, res.FailedRecords[0].Index)
	require.Equal(t, obsync.CodeMissingField, res.FailedRecords[0].Code)
	require.Equal(t, obsync.FailedRecord{Index: 2, ObservationID: "p", Code: obsync.CodeRefused,
		Error: res.FailedRecords[1].Error}, res.FailedRecords[1])
	require.Contains(t, res.FailedRecords[1].Error, "no_poison")

	page, err := s.Pull(context.Background(), obsync.PullRequest{})
	require.NoError(t, err)
	require.Len(t, page.Records, 2)
	require.Equal(t, "a", page.Records[0].ObservationID)
	require.Equal(t, "b", page.Records[1].ObservationID)

	// Both records that could not be stored are quarantined as they were sent.
	quarantined, more, err := s.ListQuarantine(context.Background(), obsync.QuarantineFilter{})
	require.NoError(t, err)
	require.False(t, more)
	require.Len(t, quarantined, 2)
	require.Equal(t, int32(1), quarantined[0].RecordIndex)
	require.Equal(t, obsync.CodeMissingField, quarantined[0].Code)
	require.Equal(t, int32(2), quarantined[1].RecordIndex)
	require.Equal(t, obsync.CodeRefused, quarantined[1].Code)
	require.Equal(t, "p", *quarantined[1].ObservationID)
	kept, err := s.Quarantined(context.Background(), quarantined[1].ID)
	require.NoError(t, err)
	require.Equal(t, []byte(poison), kept.Raw)

	// The answer was stored like any other: a replay returns it, and quarantines nothing twice.
	again := push(t, s, "t1", record("a", "2025-01-01T10:00:00.000Z", `{"n":1}`), json.RawMessage(`{}`), poison,
		record("b", "2025-01-01T10:00:00.000Z", `{"n":2}`))
	require.Equal(t, res, again)
	quarantined, _, err = s.ListQuarantine(context.Background(), obsync.QuarantineFilter{})
	require.NoError(t, err)
	require.Len(t, quarantined, 2)

	// A stored record changed beside a refused one: finding the refused record must not
	// take the change for another (the id already has a row), and the change is stored.
	res = push(t, s, "t2", record("a", "2025-01-02T10:00:00.000Z", `{"n":3}`), poison)
	require.Equal(t, 1, res.SuccessCount)
	require.Len(t, res.FailedRecords, 1)
	require.Equal(t, 1, res.FailedRecords[0].Index)
	require.Equal(t, obsync.CodeRefused, res.FailedRecords[0].Code)
	page, err = s.Pull(context.Background(), obsync.PullRequest{Since: 2})
	require.NoError(t, err)
	require.Len(t, page.Records, 1)
	require.Equal(t, "a", page.Records[0].ObservationID)
	require.JSONEq(t, `{"n":3}`, string(page.Records[0].Data))
}

// TestWritesRunReadCommitted checks that the push and reset transactions state their
// isolation level instead of taking the server's default: the database here defaults to
// REPEATABLE READ, and a trigger refuses every write of sync_state made at another level
// than READ COMMITTED.
func TestWritesRunReadCommitted(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := dbtest.NewDBURL(t)
	setup, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	_, err = setup.Exec(ctx, `
		CREATE FUNCTION require_read_committed() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF current_setting('transaction_isolation') <> 'read committed' THEN
				RAISE EXCEPTION 'sync_state written at isolation level %', current_setting('transaction_isolation');
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER require_read_committed BEFORE UPDATE ON sync_state
			FOR EACH ROW EXECUTE FUNCTION require_read_committed();
		DO $$ BEGIN
			EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), 'repeatable read');
		END $$;`)
	require.NoError(t, err)
	require.NoError(t, setup.Close(ctx))
	pool, err := pgxpool.New(ctx, url) // its connections start with the new default
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	var level string
	require.NoError(t, pool.QueryRow(ctx, "SHOW default_transaction_isolation").Scan(&level))
	require.Equal(t, "repeatable read", level)

	s := obsync.NewService(pool, obsync.PolicyNewest)
	require.Equal(t, int64(1), push(t, s, "t1", record("a", "2025-01-01T10:00:00.000Z", `{}`)).CurrentVersion)
	gen, err := s.Reset(ctx, "admin")
	require.NoError(t, err)
	require.Equal(t, int64(2), gen)
}

// TestPullPagesAreBoundedByBytes pulls records of about 900 KiB with the largest limit: a
// page stops once it holds MaxPullBytes, so that a pull never holds hundreds of MiB, and
// the client follows has_more to the end.
func TestPullPagesAreBoundedByBytes(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := obsync.NewService(dbtest.NewDB(t), obsync.PolicyNewest)
	const n = 7
	note := strings.Repeat("x", 900<<10)
	records := make([]json.RawMessage, n)
	for i := range records {
		records[i] = record(fmt.Sprintf("big-%d", i), "2025-01-01T10:00:00.000Z", fmt.Sprintf(`{"i":%d,"note":%q}`, i, note))
	}
	res := push(t, s, "t1", records...)
	require.Equal(t, n, res.SuccessCount)

	var since int64
	var got []string
	for pages := 0; ; pages++ {
		require.Less(t, pages, n, "the pages do not advance")
		page, err := s.Pull(ctx, obsync.PullRequest{Since: since, Limit: 500})
		require.NoError(t, err)
		require.NotEmpty(t, page.Records, "a page holds at least one record")
		bytes := 0
		for _, r := range page.Records {
			got = append(got, r.ObservationID)
			bytes += len(r.Data)
		}
		require.Less(t, bytes, obsync.MaxPullBytes+obsync.MaxRecordBytes, "a page holds at most one record more than fits")
		if !page.HasMore {
			require.Equal(t, page.CurrentVersion, page.ChangeCutoff)
			break
		}
		require.Less(t, len(page.Records), n)
		require.Equal(t, page.Records[len(page.Records)-1].Version, page.ChangeCutoff)
		since = page.ChangeCutoff
	}
	require.Equal(t, []string{"big-0", "big-1", "big-2", "big-3", "big-4", "big-5", "big-6"}, got)
}
