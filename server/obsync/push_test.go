package obsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

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

	// The answer was stored like any other: a replay returns it.
	again := push(t, s, "t1", record("a", "2025-01-01T10:00:00.000Z", `{"n":1}`), json.RawMessage(`{}`), poison,
		record("b", "2025-01-01T10:00:00.000Z", `{"n":2}`))
	require.Equal(t, res, again)
}
