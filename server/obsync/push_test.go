package obsync_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db"
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
	s := obsync.NewService(db.NewTestDB(t), obsync.PolicyNewest)
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
