// Package openapi holds synkronus's HTTP contract, openapi/synkronus.yaml.
//
// The YAML file is the source of truth: oapi-codegen compiles it into package
// gen/api, and the server publishes it unchanged to clients that generate
// their own SDKs.
package openapi

import _ "embed"

// Spec is the text of synkronus.yaml exactly as written, with the original
// operationIds and prose. Serve this to clients rather than the copy embedded in
// gen/api, which oapi-codegen re-encodes.
//
//go:embed synkronus.yaml
var Spec []byte
