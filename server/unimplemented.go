package server

import (
	"context"

	"github.com/opendataensemble/synkronus/gen/api"
)

// The attachment and app bundle operations are in the contract but are built by later
// work; until then they answer 501 with a problem body.

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

// GetAppBundleChanges is not implemented yet.
func (s *Server) GetAppBundleChanges(context.Context, api.GetAppBundleChangesRequestObject) (api.GetAppBundleChangesResponseObject, error) {
	return nil, errNotImplemented
}

// GetAppBundleManifest is not implemented yet.
func (s *Server) GetAppBundleManifest(context.Context, api.GetAppBundleManifestRequestObject) (api.GetAppBundleManifestResponseObject, error) {
	return nil, errNotImplemented
}

// DownloadAppBundleFile is not implemented yet.
func (s *Server) DownloadAppBundleFile(context.Context, api.DownloadAppBundleFileRequestObject) (api.DownloadAppBundleFileResponseObject, error) {
	return nil, errNotImplemented
}

// DownloadAppBundleZip is not implemented yet.
func (s *Server) DownloadAppBundleZip(context.Context, api.DownloadAppBundleZipRequestObject) (api.DownloadAppBundleZipResponseObject, error) {
	return nil, errNotImplemented
}

// GetAppBundleVersions is not implemented yet.
func (s *Server) GetAppBundleVersions(context.Context, api.GetAppBundleVersionsRequestObject) (api.GetAppBundleVersionsResponseObject, error) {
	return nil, errNotImplemented
}

// PushAppBundle is not implemented yet.
func (s *Server) PushAppBundle(context.Context, api.PushAppBundleRequestObject) (api.PushAppBundleResponseObject, error) {
	return nil, errNotImplemented
}

// SwitchAppBundleVersion is not implemented yet.
func (s *Server) SwitchAppBundleVersion(context.Context, api.SwitchAppBundleVersionRequestObject) (api.SwitchAppBundleVersionResponseObject, error) {
	return nil, errNotImplemented
}
