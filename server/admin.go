package server

import (
	"context"
	"fmt"

	"github.com/opendataensemble/synkronus/gen/api"
)

// AdminRepositoryReset erases all observation sync data and starts a new repository
// generation; clients that send the old generation are told to reset (409).
func (s *Server) AdminRepositoryReset(ctx context.Context, req api.AdminRepositoryResetRequestObject) (api.AdminRepositoryResetResponseObject, error) {
	p, _ := principalFrom(ctx)
	gen, err := s.sync.Reset(ctx, p.Username)
	if err != nil {
		return nil, fmt.Errorf("error resetting repository: %w", err)
	}
	s.log.WarnContext(ctx, "repository reset", "by", p.Username, "repository_generation", gen)
	return api.AdminRepositoryReset200JSONResponse{
		Body:    api.RepositoryResetResponse{RepositoryGeneration: gen, Message: fmt.Sprintf("Repository reset: observations erased; clients must resync from generation %d", gen)},
		Headers: api.AdminRepositoryReset200ResponseHeaders{XRepositoryGeneration: gen},
	}, nil
}
