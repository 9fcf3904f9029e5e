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
	"github.com/opendataensemble/synkronus/server/obsync"
)

// AdminRepositoryReset erases all observations and attachments and starts a new repository
// generation; clients that send the old generation are told to reset (409).
func (s *Server) AdminRepositoryReset(ctx context.Context, req api.AdminRepositoryResetRequestObject) (api.AdminRepositoryResetResponseObject, error) {
	p, _ := principalFrom(ctx)
	gen, err := s.sync.Reset(ctx, p.Username)
	if err != nil {
		return nil, fmt.Errorf("error resetting repository: %w", err)
	}
	s.attachments.RequestSweep() // delete the files of the erased attachments now
	s.log.WarnContext(ctx, "repository reset", "by", p.Username, "repository_generation", gen)
	return api.AdminRepositoryReset200JSONResponse{
		Body:    api.RepositoryResetResponse{RepositoryGeneration: gen, Message: fmt.Sprintf("Repository reset: observations and attachments erased; clients must resync from generation %d", gen)},
		Headers: api.AdminRepositoryReset200ResponseHeaders{XRepositoryGeneration: gen},
	}, nil
}

// ListQuarantinedRecords lists the pushed records that could not be stored, oldest first.
func (s *Server) ListQuarantinedRecords(ctx context.Context, req api.ListQuarantinedRecordsRequestObject) (api.ListQuarantinedRecordsResponseObject, error) {
	p := req.Params
	f := obsync.QuarantineFilter{ClientID: p.ClientId, TransmissionID: p.TransmissionId, ObservationID: p.ObservationId, Code: p.Code}
	if p.After != nil {
		f.After = *p.After
	}
	if p.Limit != nil {
		f.Limit = *p.Limit
	}
	rows, more, err := s.sync.ListQuarantine(ctx, f)
	if err != nil {
		return nil, err
	}
	out := api.ListQuarantinedRecords200JSONResponse{Records: make([]api.QuarantinedRecord, len(rows)), HasMore: more}
	for i, r := range rows {
		out.Records[i] = api.QuarantinedRecord{
			Id: r.ID, ReceivedAt: r.ReceivedAt.UTC().Format(time.RFC3339Nano), ClientId: r.ClientID, TransmissionId: r.TransmissionID,
			Index: int(r.RecordIndex), PushedBy: r.PushedBy, ObservationId: r.ObservationID, Code: r.Code, Reason: r.Reason, Bytes: int(r.Bytes),
		}
	}
	if more {
		out.NextAfter = &rows[len(rows)-1].ID
	}
	return out, nil
}

// GetQuarantinedRecord returns a quarantined record's bytes exactly as they were pushed.
func (s *Server) GetQuarantinedRecord(ctx context.Context, req api.GetQuarantinedRecordRequestObject) (api.GetQuarantinedRecordResponseObject, error) {
	row, err := s.sync.Quarantined(ctx, req.QuarantineId)
	if errors.Is(err, obsync.ErrNotQuarantined) {
		return api.GetQuarantinedRecord404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(notQuarantined(req.QuarantineId))}, nil
	}
	if err != nil {
		return nil, err
	}
	return rawRecordResponse(row.Raw), nil
}

// rawRecordResponse sends a record's bytes as they are: the generated response would
// re-encode (and so reformat) them.
type rawRecordResponse []byte

func (r rawRecordResponse) VisitGetQuarantinedRecordResponse(w http.ResponseWriter) error {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(r)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(r)
	return err
}

// DiscardQuarantinedRecord deletes a quarantined record for good.
func (s *Server) DiscardQuarantinedRecord(ctx context.Context, req api.DiscardQuarantinedRecordRequestObject) (api.DiscardQuarantinedRecordResponseObject, error) {
	err := s.sync.DiscardQuarantined(ctx, req.QuarantineId)
	if errors.Is(err, obsync.ErrNotQuarantined) {
		return api.DiscardQuarantinedRecord404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(notQuarantined(req.QuarantineId))}, nil
	}
	if err != nil {
		return nil, err
	}
	p, _ := principalFrom(ctx)
	s.log.WarnContext(ctx, "quarantined record discarded", "by", p.Username, "quarantine_id", req.QuarantineId)
	return api.DiscardQuarantinedRecord200JSONResponse{Message: fmt.Sprintf("quarantined record %d was discarded", req.QuarantineId)}, nil
}

// RetryQuarantinedRecord stores a quarantined record, or the corrected copy sent, through
// the push rules; it then leaves the quarantine.
func (s *Server) RetryQuarantinedRecord(ctx context.Context, req api.RetryQuarantinedRecordRequestObject) (api.RetryQuarantinedRecordResponseObject, error) {
	var corrected json.RawMessage
	if req.Body != nil && req.Body.Record != nil {
		corrected = *req.Body.Record
	}
	p, _ := principalFrom(ctx)
	res, err := s.sync.RetryQuarantined(ctx, req.QuarantineId, corrected, p.Username)
	var still *obsync.RecordError
	switch {
	case errors.Is(err, obsync.ErrNotQuarantined):
		return api.RetryQuarantinedRecord404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(notQuarantined(req.QuarantineId))}, nil
	case errors.As(err, &still):
		return api.RetryQuarantinedRecord422ApplicationProblemPlusJSONResponse(problemBody(http.StatusUnprocessableEntity, still.Code,
			"the record still cannot be stored and stays in the quarantine: "+still.Message)), nil
	case err != nil:
		return nil, err
	}
	return api.RetryQuarantinedRecord200JSONResponse{ObservationId: res.ObservationID, CurrentVersion: res.CurrentVersion,
		RepositoryGeneration: res.RepositoryGeneration, Warnings: syncWarnings(res.Warnings)}, nil
}

func notQuarantined(id int64) string {
	return fmt.Sprintf("no quarantined record with id %d", id)
}
