package obsync_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/server/obsync"
)

func TestQuarantineRetryAndDiscard(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := obsync.NewService(dbtest.NewDB(t), obsync.PolicyNewest)
	badTime := rec("obs_late", "31/12/2025 10:00", `{"n":1}`)
	noID := json.RawMessage(`{"form_type":"f", "data":{}}`)
	res := push(t, s, "t1", rec("obs_ok", "2025-12-01T10:00:00.000Z", `{}`), badTime, noID)
	require.Equal(t, 1, res.SuccessCount)
	require.Len(t, res.FailedRecords, 2)

	list := func(f obsync.QuarantineFilter) []int64 {
		t.Helper()
		rows, _, err := s.ListQuarantine(ctx, f)
		require.NoError(t, err)
		ids := []int64{}
		for _, r := range rows {
			ids = append(ids, r.ID)
		}
		return ids
	}
	all := list(obsync.QuarantineFilter{})
	require.Len(t, all, 2)
	late, orphan := all[0], all[1]
	byID := "obs_late"
	require.Equal(t, []int64{late}, list(obsync.QuarantineFilter{ObservationID: &byID}))
	code := obsync.CodeMissingField
	require.Equal(t, []int64{orphan}, list(obsync.QuarantineFilter{Code: &code}))
	require.Equal(t, []int64{orphan}, list(obsync.QuarantineFilter{After: late}))
	first, more, err := s.ListQuarantine(ctx, obsync.QuarantineFilter{Limit: 1})
	require.NoError(t, err)
	require.True(t, more)
	require.Len(t, first, 1)

	// Retried as it is, the record still cannot be stored, and stays.
	_, err = s.RetryQuarantined(ctx, late, nil, "admin")
	var still *obsync.RecordError
	require.ErrorAs(t, err, &still)
	require.Equal(t, obsync.CodeInvalidField, still.Code)
	require.Len(t, list(obsync.QuarantineFilter{}), 2)

	// A corrected copy is stored through the push rules and leaves the quarantine.
	fixed, err := s.RetryQuarantined(ctx, late, rec("obs_late", "2025-12-31T10:00:00.000Z", `{"n":1}`), "admin")
	require.NoError(t, err)
	require.Equal(t, "obs_late", fixed.ObservationID)
	require.Equal(t, res.CurrentVersion+1, fixed.CurrentVersion)
	require.Equal(t, []int64{orphan}, list(obsync.QuarantineFilter{}))
	revs, cur, err := s.Revisions(ctx, "obs_late")
	require.NoError(t, err)
	require.Empty(t, revs)
	require.Equal(t, fixed.CurrentVersion, cur.Version)
	require.Equal(t, "admin", cur.PushedBy, "the admin made the write")
	require.Equal(t, "c1", cur.ClientID, "on behalf of the client that sent the record")
	require.Equal(t, "t1", cur.TransmissionID)
	_, err = s.RetryQuarantined(ctx, late, nil, "admin")
	require.ErrorIs(t, err, obsync.ErrNotQuarantined)

	// The push's answer is unchanged for a replay, which quarantines nothing again.
	again := push(t, s, "t1", rec("obs_ok", "2025-12-01T10:00:00.000Z", `{}`), badTime, noID)
	require.Equal(t, res, again)
	require.Equal(t, []int64{orphan}, list(obsync.QuarantineFilter{}))

	// A retry and a discard of the same record: exactly one of them goes ahead.
	var wg sync.WaitGroup
	errs := make([]error, 2)
	wg.Go(func() {
		_, errs[0] = s.RetryQuarantined(ctx, orphan, rec("obs_orphan", "2025-12-01T10:00:00.000Z", `{}`), "admin")
	})
	wg.Go(func() { errs[1] = s.DiscardQuarantined(ctx, orphan) })
	wg.Wait()
	require.True(t, (errs[0] == nil) != (errs[1] == nil), "retry: %v, discard: %v", errs[0], errs[1])
	for _, err := range errs {
		require.True(t, err == nil || errors.Is(err, obsync.ErrNotQuarantined), "%v", err)
	}
	require.Empty(t, list(obsync.QuarantineFilter{}))
	require.ErrorIs(t, s.DiscardQuarantined(ctx, orphan), obsync.ErrNotQuarantined)
	_, err = s.Quarantined(ctx, orphan)
	require.ErrorIs(t, err, obsync.ErrNotQuarantined)
}

func TestResetErasesTheQuarantine(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := obsync.NewService(dbtest.NewDB(t), obsync.PolicyNewest)
	push(t, s, "t1", json.RawMessage(`{"observation_id": 7}`))
	rows, _, err := s.ListQuarantine(ctx, obsync.QuarantineFilter{})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	_, err = s.Reset(ctx, "admin")
	require.NoError(t, err)
	rows, _, err = s.ListQuarantine(ctx, obsync.QuarantineFilter{})
	require.NoError(t, err)
	require.Empty(t, rows)
}

// TestRefusedPushQuarantinesNothing covers a push answered with an error (here a
// repository generation the server no longer has): the client keeps its records and sends
// them again, so nothing of the push may stay behind, in the quarantine or anywhere else.
func TestRefusedPushQuarantinesNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := obsync.NewService(dbtest.NewDB(t), obsync.PolicyNewest)
	stale := int64(2)
	_, err := s.Push(ctx, obsync.PushRequest{ClientID: "c1", TransmissionID: "t1", Generation: &stale, Username: "u",
		Records: []json.RawMessage{rec("a", "2025-12-01T10:00:00.000Z", `{}`), json.RawMessage(`{"observation_id": 7}`)}})
	var mismatch *obsync.GenerationMismatchError
	require.ErrorAs(t, err, &mismatch)
	rows, _, err := s.ListQuarantine(ctx, obsync.QuarantineFilter{})
	require.NoError(t, err)
	require.Empty(t, rows)
	page, err := s.Pull(ctx, obsync.PullRequest{})
	require.NoError(t, err)
	require.Empty(t, page.Records)
	require.Equal(t, int64(0), page.CurrentVersion)
	res := push(t, s, "t1", rec("a", "2025-12-01T10:00:00.000Z", `{}`), json.RawMessage(`{"observation_id": 7}`))
	require.Equal(t, 1, res.SuccessCount, "the transmission is still unused")
}
