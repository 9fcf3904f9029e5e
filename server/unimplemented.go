package server

import (
	"context"

	"github.com/opendataensemble/synkronus/gen/api"
)

// The attachment operations are in the contract but are built by later work; until
// then they answer 501 with a problem body.

// UploadAttachment is not implemented yet.
func (s *Server) UploadAttachment(context.Context, api.UploadAttachmentRequestObject) (api.UploadAttachmentResponseObject, error) {
	return nil, errNotImplemented
}

// DownloadAttachment is not implemented yet.
func (s *Server) DownloadAttachment(context.Context, api.DownloadAttachmentRequestObject) (api.DownloadAttachmentResponseObject, error) {
	return nil, errNotImplemented
}

// CheckAttachmentExists is not implemented yet.
func (s *Server) CheckAttachmentExists(context.Context, api.CheckAttachmentExistsRequestObject) (api.CheckAttachmentExistsResponseObject, error) {
	return nil, errNotImplemented
}

// GetAttachmentManifest is not implemented yet.
func (s *Server) GetAttachmentManifest(context.Context, api.GetAttachmentManifestRequestObject) (api.GetAttachmentManifestResponseObject, error) {
	return nil, errNotImplemented
}

// GetAttachmentsExportZip is not implemented yet.
func (s *Server) GetAttachmentsExportZip(context.Context, api.GetAttachmentsExportZipRequestObject) (api.GetAttachmentsExportZipResponseObject, error) {
	return nil, errNotImplemented
}
