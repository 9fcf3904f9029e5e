package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/obsync"
)

// generation picks the client's repository generation: the header wins over the body.
func generation(header, body *int64) *int64 {
	if header != nil {
		return header
	}
	return body
}

func resetRequired(mismatch *obsync.GenerationMismatchError) api.RepositoryResetRequiredApplicationProblemPlusJSONResponse {
	detail := fmt.Sprintf("the server's repository was reset (generation %d, this client has %d): discard local sync state and sync again from version 0",
		mismatch.Server, mismatch.Client)
	return api.RepositoryResetRequiredApplicationProblemPlusJSONResponse{
		Body:    problemBody(http.StatusConflict, codeResetRequired, detail),
		Headers: api.RepositoryResetRequiredResponseHeaders{XRepositoryGeneration: mismatch.Server},
	}
}

// SyncPull returns the next page of observations changed after the client's cursor.
func (s *Server) SyncPull(ctx context.Context, req api.SyncPullRequestObject) (api.SyncPullResponseObject, error) {
	body := req.Body
	setClientID(ctx, body.ClientId)
	if body.ClientId == "" {
		return api.SyncPull400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("client_id is required")}, nil
	}
	pr := obsync.PullRequest{Generation: generation(req.Params.XRepositoryGeneration, body.RepositoryGeneration)}
	if body.Since != nil && body.Since.Version != nil {
		pr.Since = *body.Since.Version
	}
	if req.Params.Limit != nil {
		pr.Limit = *req.Params.Limit
	}
	if req.Params.SchemaType != nil && *req.Params.SchemaType != "" {
		pr.FormTypes = append(pr.FormTypes, *req.Params.SchemaType)
	}
	if body.SchemaTypes != nil {
		pr.FormTypes = append(pr.FormTypes, *body.SchemaTypes...)
	}
	page, err := s.sync.Pull(ctx, pr)
	var mismatch *obsync.GenerationMismatchError
	if errors.As(err, &mismatch) {
		return api.SyncPull409ApplicationProblemPlusJSONResponse{RepositoryResetRequiredApplicationProblemPlusJSONResponse: resetRequired(mismatch)}, nil
	}
	if err != nil {
		return nil, err
	}
	if p, ok := principalFrom(ctx); ok {
		s.presence.record(presenceEvent{UserID: p.UserID, ClientID: body.ClientId, DataVersion: &pr.Since})
	}
	s.metrics.RecordsPulled.Add(float64(len(page.Records)))
	return pullResponse{page: page}, nil
}

// errTooManyRecords stops reading a push that holds more than obsync.MaxPushRecords.
var errTooManyRecords = errors.New("too many records")

// SyncPush stores a batch of observations. The body is read as it arrives and each record
// validated on its way in; a push larger than a chunk is staged in PostgreSQL as it is read,
// so that a push is never held in memory whole (see obsync.Batch).
func (s *Server) SyncPush(ctx context.Context, req api.SyncPushRequestObject) (api.SyncPushResponseObject, error) {
	bad := func(detail string) (api.SyncPushResponseObject, error) {
		return api.SyncPush400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(detail)}, nil
	}
	if req.Body == nil || req.Body.Reader() == nil {
		return bad("the request body must be a JSON object with transmission_id, client_id and records")
	}
	batch := s.sync.NewBatch()
	if r := requestFrom(ctx); r != nil {
		batch.Expect(r.ContentLength)
	}
	defer func() {
		if err := batch.Close(ctx); err != nil {
			s.log.WarnContext(ctx, "staged push records were left for the cleanup job", "error", err)
		}
	}()
	env, err := readPush(req.Body.Reader(), func(raw json.RawMessage) error {
		if batch.Len() == obsync.MaxPushRecords {
			return errTooManyRecords
		}
		return batch.Add(ctx, raw)
	})
	var badBody badPushBody
	switch {
	case errors.Is(err, errTooManyRecords):
		return api.SyncPush413ApplicationProblemPlusJSONResponse{PayloadTooLargeApplicationProblemPlusJSONResponse: api.PayloadTooLargeApplicationProblemPlusJSONResponse(
			problemBody(http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("more than %d records in one push: split the batch", obsync.MaxPushRecords)))}, nil
	case errors.As(err, &badBody):
		return bad(string(badBody))
	case err != nil:
		return nil, err
	}
	if env.ClientID != nil && unstorable(*env.ClientID) == "" {
		setClientID(ctx, *env.ClientID)
	}
	switch {
	case env.TransmissionID == nil || *env.TransmissionID == "":
		return bad("transmission_id is required")
	case env.ClientID == nil || *env.ClientID == "":
		return bad("client_id is required")
	case !env.Records:
		return bad("records array is required")
	case len(*env.TransmissionID) > 255 || len(*env.ClientID) > 255:
		return bad("transmission_id and client_id must be at most 255 bytes")
	case unstorable(*env.TransmissionID) != "" || unstorable(*env.ClientID) != "":
		// The push body is read as a stream, not as a typed request, so refuseUnstorableText
		// does not see these two members.
		return bad("transmission_id and client_id must be UTF-8 text without NUL characters")
	}
	p, _ := principalFrom(ctx)
	res, err := s.sync.Push(ctx, obsync.PushRequest{
		ClientID:       *env.ClientID,
		TransmissionID: *env.TransmissionID,
		Generation:     generation(req.Params.XRepositoryGeneration, env.Generation),
		Batch:          batch,
		Username:       p.Username,
	})
	var mismatch *obsync.GenerationMismatchError
	switch {
	case errors.As(err, &mismatch):
		return api.SyncPush409ApplicationProblemPlusJSONResponse{RepositoryResetRequiredApplicationProblemPlusJSONResponse: resetRequired(mismatch)}, nil
	case errors.Is(err, obsync.ErrTransmissionReused):
		st, err := s.q.SyncStateGet(ctx)
		if err != nil {
			return nil, fmt.Errorf("error reading sync state: %w", err)
		}
		return api.SyncPush409ApplicationProblemPlusJSONResponse{RepositoryResetRequiredApplicationProblemPlusJSONResponse: api.RepositoryResetRequiredApplicationProblemPlusJSONResponse{
			Body: problemBody(http.StatusConflict, codeConflict, "this client already used transmission_id "+strconv.Quote(*env.TransmissionID)+
				" for a push with different records: send new records with a new transmission_id"),
			Headers: api.RepositoryResetRequiredResponseHeaders{XRepositoryGeneration: st.RepositoryGeneration},
		}}, nil
	case err != nil:
		return nil, err
	}
	s.presence.record(presenceEvent{UserID: p.UserID, ClientID: *env.ClientID, DataVersion: &res.CurrentVersion})
	s.countPush(batch, res)
	return api.SyncPush200JSONResponse{Body: pushResponse(res), Headers: api.SyncPush200ResponseHeaders{XRepositoryGeneration: res.RepositoryGeneration}}, nil
}

// countPush adds a push's outcome to the metrics. A push the batch was not stored by was
// answered from its receipt (or was an empty probe, which counts for nothing).
func (s *Server) countPush(batch *obsync.Batch, res obsync.PushResult) {
	if !batch.Stored() {
		if batch.Len() > 0 {
			s.metrics.ReplayedPushes.Inc()
		}
		return
	}
	s.metrics.RecordsPushed.Add(float64(res.SuccessCount))
	for _, f := range res.FailedRecords {
		s.metrics.FailedRecords.WithLabelValues(f.Code).Inc()
	}
	for _, w := range res.Warnings {
		if w.Code == obsync.WarningConflict {
			s.metrics.Conflicts.Inc()
		}
	}
}

func pushResponse(res obsync.PushResult) api.SyncPushResponse {
	out := api.SyncPushResponse{CurrentVersion: res.CurrentVersion, RepositoryGeneration: res.RepositoryGeneration, SuccessCount: res.SuccessCount}
	if len(res.FailedRecords) > 0 {
		failed := make([]api.FailedRecord, len(res.FailedRecords))
		for i, f := range res.FailedRecords {
			failed[i] = api.FailedRecord{Index: f.Index, Code: f.Code, Error: f.Error}
			if f.ObservationID != "" {
				failed[i].ObservationId, failed[i].Id = &f.ObservationID, &f.ObservationID
			}
		}
		out.FailedRecords = &failed
	}
	out.Warnings = syncWarnings(res.Warnings)
	return out
}

// syncWarnings maps warnings on stored records; none is absent.
func syncWarnings(ws []obsync.Warning) *[]api.SyncWarning {
	if len(ws) == 0 {
		return nil
	}
	out := make([]api.SyncWarning, len(ws))
	for i, w := range ws {
		out[i] = api.SyncWarning{Id: w.ID, Code: w.Code, Message: w.Message}
	}
	return &out
}

// ListObservationRevisions lists every revision of an observation: the history, oldest
// first, then the current state.
func (s *Server) ListObservationRevisions(ctx context.Context, req api.ListObservationRevisionsRequestObject) (api.ListObservationRevisionsResponseObject, error) {
	revs, current, err := s.sync.Revisions(ctx, req.ObservationId)
	if err != nil {
		return nil, err
	}
	if current == nil && len(revs) == 0 {
		return api.ListObservationRevisions404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound("no observation with id " + strconv.Quote(req.ObservationId))}, nil
	}
	out := api.ListObservationRevisions200JSONResponse{ObservationId: req.ObservationId, Revisions: make([]api.ObservationRevision, 0, len(revs)+1)}
	for _, r := range revs {
		out.Revisions = append(out.Revisions, revisionItem(r))
	}
	if current != nil {
		out.Revisions = append(out.Revisions, currentRevisionItem(*current))
	}
	return out, nil
}

func revisionItem(r dbgen.ObservationRevision) api.ObservationRevision {
	return api.ObservationRevision{
		ObservationId: r.ObservationID, Version: r.Version, Status: api.ObservationRevisionStatus(r.Status), Conflict: r.Conflict,
		FormType: &r.FormType, FormVersion: &r.FormVersion, Data: r.Data, Geolocation: rawJSON(r.Geolocation),
		Author: r.Author, DeviceId: r.DeviceID, Tags: tagsOf(r.Tags), Extra: rawJSON(r.Extra), CreatedAt: &r.CreatedAtText, UpdatedAt: &r.UpdatedAtText,
		Deleted: r.Deleted, ReceivedAt: r.ReceivedAt.UTC().Format(time.RFC3339Nano), PushedBy: &r.PushedBy,
		ClientId: &r.ClientID, TransmissionId: &r.TransmissionID,
	}
}

func currentRevisionItem(o dbgen.Observation) api.ObservationRevision {
	return api.ObservationRevision{
		ObservationId: o.ObservationID, Version: &o.Version, Status: api.ObservationRevisionStatusCurrent, Conflict: o.Conflict,
		FormType: &o.FormType, FormVersion: &o.FormVersion, Data: o.Data, Geolocation: rawJSON(o.Geolocation),
		Author: o.Author, DeviceId: o.DeviceID, Tags: tagsOf(o.Tags), Extra: rawJSON(o.Extra), CreatedAt: &o.CreatedAtText, UpdatedAt: &o.UpdatedAtText,
		Deleted: o.Deleted, ReceivedAt: o.SyncedAt.UTC().Format(time.RFC3339Nano), PushedBy: &o.PushedBy,
		ClientId: &o.ClientID, TransmissionId: &o.TransmissionID,
	}
}

// ListObservations lists a page of stored observations, newest change first.
func (s *Server) ListObservations(ctx context.Context, req api.ListObservationsRequestObject) (api.ListObservationsResponseObject, error) {
	prm := req.Params
	lr := obsync.ListRequest{
		FormType: deref(prm.FormType), Author: deref(prm.Author), CreatedFrom: prm.CreatedFrom, CreatedTo: prm.CreatedTo,
		IncludeDeleted: deref(prm.IncludeDeleted), ConflictsOnly: deref(prm.ConflictsOnly),
		BeforeVersion: deref(prm.BeforeVersion), Limit: deref(prm.Limit),
	}
	page, err := s.sync.List(ctx, lr)
	if err != nil {
		return nil, err
	}
	out := api.ListObservations200JSONResponse{Observations: make([]api.ObservationSummary, len(page.Observations)), HasMore: page.NextBeforeVersion > 0}
	for i, o := range page.Observations {
		out.Observations[i] = api.ObservationSummary{
			ObservationId: o.ObservationID, Version: o.Version, FormType: o.FormType, FormVersion: o.FormVersion,
			Author: o.Author, DeviceId: o.DeviceID, CreatedAt: o.CreatedAtText, UpdatedAt: o.UpdatedAtText,
			SyncedAt: o.SyncedAt, Deleted: o.Deleted, Conflict: o.Conflict, HasConflicts: o.HasConflicts, PushedBy: o.PushedBy,
		}
	}
	if out.HasMore {
		out.NextBeforeVersion = &page.NextBeforeVersion
	}
	return out, nil
}

// deref reads an optional parameter, its zero value when absent.
func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}
