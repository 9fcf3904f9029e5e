package openapi

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
)

// upstreamSpec is the reference copy of the upstream 1.0.6 contract that real clients
// are built against. It lives outside the repository, in a shared/reference folder beside
// the checkout or above it (SYNKRONUS_UPSTREAM_SPEC names it elsewhere), so the
// comparison with it is skipped when it is absent.
const upstreamSpec = "shared/reference/synkronus-upstream-1.0.6.yaml"

// findUpstreamSpec looks for upstreamSpec in every folder above this one.
func findUpstreamSpec() (string, bool) {
	if p := os.Getenv("SYNKRONUS_UPSTREAM_SPEC"); p != "" {
		return p, true
	}
	dir, err := filepath.Abs(".")
	if err != nil {
		return "", false
	}
	for {
		p := filepath.Join(dir, filepath.FromSlash(upstreamSpec))
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

const (
	refXOdeVersion     = "#/components/parameters/XOdeVersion"
	refUpgradeRequired = "#/components/responses/UpgradeRequired"
	refProblemDetail   = "#/components/schemas/ProblemDetail"
	problemJSON        = "application/problem+json"
)

// operation is the identity of one operation: where it is served and which
// roles (bearerAuth scopes) may call it. Nil roles means no security at all.
type operation struct {
	method string
	path   string
	roles  []string
}

var (
	allRoles      = []string{"read-only", "read-write", "admin"}
	readerRoles   = []string{"read-only", "read-write"}
	writerRoles   = []string{"read-write"}
	adminRoles    = []string{"admin"}
	publicNoRoles []string
)

// upstreamOperations are the 28 operations of upstream 1.0.6; they must keep
// their operationId, method, path and scopes.
var upstreamOperations = map[string]operation{
	"getHealth":               {http.MethodGet, "/health", publicNoRoles},
	"getVersion":              {http.MethodGet, "/api/version", allRoles},
	"getAPIVersions":          {http.MethodGet, "/api/versions", allRoles},
	"getAppBundleChanges":     {http.MethodGet, "/api/app-bundle/changes", readerRoles},
	"getAppBundleManifest":    {http.MethodGet, "/api/app-bundle/manifest", readerRoles},
	"downloadAppBundleFile":   {http.MethodGet, "/api/app-bundle/download/{path}", readerRoles},
	"downloadAppBundleZip":    {http.MethodGet, "/api/app-bundle/download-zip", readerRoles},
	"getAppBundleVersions":    {http.MethodGet, "/api/app-bundle/versions", readerRoles},
	"pushAppBundle":           {http.MethodPost, "/api/app-bundle/push", adminRoles},
	"switchAppBundleVersion":  {http.MethodPost, "/api/app-bundle/switch/{version}", adminRoles},
	"login":                   {http.MethodPost, "/api/auth/login", publicNoRoles},
	"refreshToken":            {http.MethodPost, "/api/auth/refresh", publicNoRoles},
	"createUser":              {http.MethodPost, "/api/users/create", adminRoles},
	"listUsers":               {http.MethodGet, "/api/users", adminRoles},
	"deleteUser":              {http.MethodDelete, "/api/users/{username}", adminRoles},
	"resetUserPassword":       {http.MethodPost, "/api/users/reset-password", adminRoles},
	"changePassword":          {http.MethodPost, "/api/users/change-password", allRoles},
	"syncPull":                {http.MethodPost, "/api/sync/pull", readerRoles},
	"syncPush":                {http.MethodPost, "/api/sync/push", writerRoles},
	"adminRepositoryReset":    {http.MethodPost, "/api/admin/repository/reset", adminRoles},
	"getAttachmentManifest":   {http.MethodPost, "/api/attachments/manifest", readerRoles},
	"getAttachmentsExportZip": {http.MethodGet, "/api/attachments/export-zip", allRoles},
	"uploadAttachment":        {http.MethodPut, "/api/attachments/{attachment_id}", writerRoles},
	"downloadAttachment":      {http.MethodGet, "/api/attachments/{attachment_id}", readerRoles},
	"checkAttachmentExists":   {http.MethodHead, "/api/attachments/{attachment_id}", readerRoles},
	"getParquetExportZip":     {http.MethodGet, "/api/dataexport/parquet", allRoles},
	"getRawJsonExportZip":     {http.MethodGet, "/api/dataexport/raw-json", allRoles},
	"getObservationStats":     {http.MethodGet, "/api/stats/observations", allRoles},
}

// addedOperations are ours alone: paths real clients call that upstream's
// contract does not declare, the revision history and the CSV export.
var addedOperations = map[string]operation{
	"getServiceInfo":           {http.MethodGet, "/", publicNoRoles},
	"getCsvExportZip":          {http.MethodGet, "/api/dataexport/csv", allRoles},
	"createUserCompat":         {http.MethodPost, "/api/users", adminRoles},
	"deleteUserCompat":         {http.MethodDelete, "/api/users/delete/{username}", adminRoles},
	"updateUser":               {http.MethodPatch, "/api/users/{username}", adminRoles},
	"listObservationRevisions": {http.MethodGet, "/api/observations/{observation_id}/revisions", allRoles},
	"listObservations":         {http.MethodGet, "/api/observations", allRoles},
	"listQuarantinedRecords":   {http.MethodGet, "/api/admin/quarantine", adminRoles},
	"getQuarantinedRecord":     {http.MethodGet, "/api/admin/quarantine/{quarantine_id}", adminRoles},
	"discardQuarantinedRecord": {http.MethodDelete, "/api/admin/quarantine/{quarantine_id}", adminRoles},
	"retryQuarantinedRecord":   {http.MethodPost, "/api/admin/quarantine/{quarantine_id}/retry", adminRoles},
	"listAttachments":          {http.MethodGet, "/api/attachments", readerRoles},
	"deleteAttachment":         {http.MethodDelete, "/api/attachments/{attachment_id}", adminRoles},
	"listForms":                {http.MethodGet, "/api/v1/data/forms", readerRoles},
}

// optionalVersionHeader are the /api operations that may be called without x-ode-version
// (the product documentation calls the forms list with a bearer token alone); they
// declare the header themselves, optional, with the same pattern.
var optionalVersionHeader = map[string]bool{"listForms": true}

var tags = []string{
	"Health", "Version", "Auth", "Users", "Sync", "Admin",
	"Attachments", "AppBundle", "DataExport", "Stats",
}

// foundOperation is one operation of a loaded document.
type foundOperation struct {
	method string
	path   string
	op     *openapi3.Operation
}

func loadDoc(t *testing.T, data []byte) *openapi3.T {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(data)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("validate: %v", err)
	}
	return doc
}

func operationsByID(t *testing.T, doc *openapi3.T) map[string]foundOperation {
	t.Helper()
	ops := map[string]foundOperation{}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if prev, dup := ops[op.OperationID]; dup {
				t.Errorf("operationId %q used by %s %s and %s %s", op.OperationID, prev.method, prev.path, method, path)
			}
			ops[op.OperationID] = foundOperation{method: method, path: path, op: op}
		}
	}
	return ops
}

// scopes returns the bearerAuth scopes of op, sorted, or nil when op has no
// security requirement.
func scopes(t *testing.T, id string, op *openapi3.Operation) []string {
	t.Helper()
	if op.Security == nil || len(*op.Security) == 0 {
		return nil
	}
	if len(*op.Security) != 1 {
		t.Errorf("%s: want one security requirement, got %d", id, len(*op.Security))
	}
	req := (*op.Security)[0]
	got, ok := req["bearerAuth"]
	if !ok || len(req) != 1 {
		t.Errorf("%s: security requirement must name only bearerAuth, got %v", id, req)
	}
	return sorted(got)
}

func sorted(s []string) []string {
	if s == nil {
		return nil
	}
	out := slices.Clone(s)
	sort.Strings(out)
	return out
}

func TestSpecValidates(t *testing.T) {
	doc := loadDoc(t, Spec)
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	if doc.Info.Title != "Synkronus API" || doc.Info.Version != "1.0.6" {
		t.Errorf("info = %q %q, want Synkronus API 1.0.6", doc.Info.Title, doc.Info.Version)
	}
	if len(doc.Servers) != 0 {
		t.Errorf("the spec must not declare servers (the request validator would reject every request)")
	}
	if len(doc.Security) != 0 {
		t.Errorf("the spec must not declare global security")
	}
}

func TestOperationsAndScopes(t *testing.T) {
	ops := operationsByID(t, loadDoc(t, Spec))
	want := map[string]operation{}
	for id, o := range upstreamOperations {
		want[id] = o
	}
	for id, o := range addedOperations {
		want[id] = o
	}
	for id := range ops {
		if _, ok := want[id]; !ok {
			t.Errorf("unexpected operation %s", id)
		}
	}
	for id, w := range want {
		got, ok := ops[id]
		if !ok {
			t.Errorf("missing operation %s (%s %s)", id, w.method, w.path)
			continue
		}
		if got.method != w.method || got.path != w.path {
			t.Errorf("%s is %s %s, want %s %s", id, got.method, got.path, w.method, w.path)
		}
		if s := scopes(t, id, got.op); !slices.Equal(s, sorted(w.roles)) {
			t.Errorf("%s scopes = %v, want %v", id, s, sorted(w.roles))
		}
	}
}

func TestOperationConventions(t *testing.T) {
	doc := loadDoc(t, Spec)
	for id, f := range operationsByID(t, doc) {
		op := f.op
		if len(op.Tags) != 1 || !slices.Contains(tags, op.Tags[0]) {
			t.Errorf("%s: tags = %v, want exactly one of %v", id, op.Tags, tags)
		}
		has := func(code string) bool { return op.Responses.Value(code) != nil }
		need := func(code, why string) {
			if !has(code) {
				t.Errorf("%s: missing %s response (%s)", id, code, why)
			}
		}

		hasVersionHeader := slices.ContainsFunc(op.Parameters, func(p *openapi3.ParameterRef) bool {
			return p.Ref == refXOdeVersion
		})
		optionalHeader := slices.ContainsFunc(op.Parameters, func(p *openapi3.ParameterRef) bool {
			v := p.Value
			return p.Ref == "" && v.In == "header" && v.Name == "x-ode-version" && !v.Required &&
				v.Schema.Value.Pattern == doc.Components.Parameters["XOdeVersion"].Value.Schema.Value.Pattern
		})
		if optionalVersionHeader[id] != optionalHeader {
			t.Errorf("%s: only %v declare an optional x-ode-version header", id, slices.Sorted(maps.Keys(optionalVersionHeader)))
		}
		if strings.HasPrefix(f.path, "/api/") {
			need("503", "the database or file storage may be unavailable")
			if !hasVersionHeader && !optionalHeader {
				t.Errorf("%s: missing the XOdeVersion parameter", id)
			}
			if r := op.Responses.Value("426"); r == nil || r.Ref != refUpgradeRequired {
				t.Errorf("%s: 426 must reference %s", id, refUpgradeRequired)
			}
		} else if hasVersionHeader {
			t.Errorf("%s: %s must not require x-ode-version", id, f.path)
		}

		if op.Security != nil && len(*op.Security) > 0 {
			need("401", "secured")
			need("403", "secured")
		}
		need("500", "every operation")
		for _, p := range op.Parameters {
			if p.Ref != refXOdeVersion && p.Value.Schema != nil && p.Value.Schema.Value.Type.Is("string") {
				need("400", "takes text, which may hold what cannot be stored")
			}
		}
		if op.RequestBody != nil {
			need("400", "has a request body")
			need("408", "has a request body")
			need("413", "has a request body")
		}
		if id == "login" || id == "refreshToken" || id == "changePassword" {
			need("429", "rate limited")
		}

		for code, ref := range op.Responses.Map() {
			status, err := strconv.Atoi(code)
			if err != nil || status < 400 || status == http.StatusUpgradeRequired || len(ref.Value.Content) == 0 {
				continue
			}
			if id == "getHealth" && status == http.StatusServiceUnavailable {
				continue // HealthError, as upstream
			}
			mt := ref.Value.Content.Get(problemJSON)
			if len(ref.Value.Content) != 1 || mt == nil || mt.Schema == nil || mt.Schema.Ref != refProblemDetail {
				t.Errorf("%s: %s must be %s with schema ProblemDetail", id, code, problemJSON)
			}
		}
	}
}

func TestVersionHeaderPattern(t *testing.T) {
	doc := loadDoc(t, Spec)
	p := doc.Components.Parameters["XOdeVersion"]
	if p == nil || p.Value.Name != "x-ode-version" || p.Value.In != "header" || !p.Value.Required {
		t.Fatalf("XOdeVersion must be a required header named x-ode-version")
	}
	re := regexp.MustCompile(p.Value.Schema.Value.Pattern)
	for _, ok := range []string{"1", "1.0", "1.0.0", "1.2.3-beta", "v1.0.0-alpha.2", "V2.0", "10.4.1+build.7"} {
		if !re.MatchString(ok) {
			t.Errorf("pattern rejects %q", ok)
		}
	}
	for _, bad := range []string{"", "v", "abc", "1-beta", ".1", "x1.0"} {
		if re.MatchString(bad) {
			t.Errorf("pattern accepts %q", bad)
		}
	}
}

// TestUpstreamCompatibility checks that every operation, parameter, status
// code, header and schema property of upstream 1.0.6 is still present with the
// same JSON type, that requests require nothing upstream clients may omit, and
// that responses still carry everything upstream promised.
func TestUpstreamCompatibility(t *testing.T) {
	path, found := findUpstreamSpec()
	if !found {
		t.Skipf("%s not found above this folder; set SYNKRONUS_UPSTREAM_SPEC to compare with it", upstreamSpec)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	upstream := loadDoc(t, raw)
	ours := loadDoc(t, Spec)
	upOps := operationsByID(t, upstream)
	ourOps := operationsByID(t, ours)

	if len(upOps) != len(upstreamOperations) {
		t.Errorf("upstream has %d operations, the table here lists %d", len(upOps), len(upstreamOperations))
	}
	c := &comparer{t: t}
	reachable := map[string]bool{}
	for id, up := range upOps {
		want, ok := upstreamOperations[id]
		if !ok || want.method != up.method || want.path != up.path {
			t.Errorf("upstream %s (%s %s) is not in the table here", id, up.method, up.path)
		}
		if s := scopes(t, id, up.op); !slices.Equal(s, sorted(want.roles)) {
			t.Errorf("upstream %s scopes %v differ from the table here %v", id, s, sorted(want.roles))
		}
		our, ok := ourOps[id]
		if !ok {
			t.Errorf("%s missing", id)
			continue
		}
		c.operation(id, up.op, our.op)
		collectRefs(up.op, reachable)
	}

	// Component names appear in clients' generated SDKs: keep every one an
	// upstream operation uses, with all of its properties.
	for name := range reachable {
		our := ours.Components.Schemas[name]
		if our == nil {
			t.Errorf("schema %s missing from components", name)
			continue
		}
		c.schema("components.schemas."+name, upstream.Components.Schemas[name], our, shapeOnly, 0)
	}
}

type direction int

const (
	shapeOnly direction = iota
	request
	response
)

type comparer struct{ t *testing.T }

func (c *comparer) operation(id string, up, our *openapi3.Operation) {
	for _, p := range up.Parameters {
		u := p.Value
		o := our.Parameters.GetByInAndName(u.In, u.Name)
		where := fmt.Sprintf("%s parameter %s %s", id, u.In, u.Name)
		if o == nil {
			c.t.Errorf("%s: missing", where)
			continue
		}
		if o.Required && !u.Required {
			c.t.Errorf("%s: required here but optional upstream", where)
		}
		c.schema(where, u.Schema, o.Schema, request, 0)
	}
	for _, p := range our.Parameters {
		if o := p.Value; o.Required && up.Parameters.GetByInAndName(o.In, o.Name) == nil {
			c.t.Errorf("%s: new parameter %s %s must be optional", id, o.In, o.Name)
		}
	}

	if up.RequestBody != nil {
		if our.RequestBody == nil {
			c.t.Errorf("%s: request body missing", id)
		} else {
			for mime, mt := range up.RequestBody.Value.Content {
				omt := our.RequestBody.Value.Content.Get(mime)
				if omt == nil {
					c.t.Errorf("%s: request content type %s missing", id, mime)
					continue
				}
				c.schema(id+" request "+mime, mt.Schema, omt.Schema, request, 0)
			}
		}
	}

	for code, ur := range up.Responses.Map() {
		or := our.Responses.Value(code)
		where := id + " response " + code
		if or == nil {
			c.t.Errorf("%s: missing", where)
			continue
		}
		for name := range ur.Value.Headers {
			if !hasHeader(or.Value.Headers, name) {
				c.t.Errorf("%s: header %s missing", where, name)
			}
		}
		for mime, mt := range ur.Value.Content {
			omt := or.Value.Content.Get(mime)
			if omt == nil && len(or.Value.Content) == 1 {
				// Error bodies moved from application/json to problem+json;
				// the members upstream clients read must still be there.
				for _, only := range or.Value.Content {
					omt = only
				}
			}
			if omt == nil {
				c.t.Errorf("%s: content type %s missing", where, mime)
				continue
			}
			c.schema(where+" "+mime, mt.Schema, omt.Schema, response, 0)
		}
	}
}

func hasHeader(h openapi3.Headers, name string) bool {
	for k := range h {
		if strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

func (c *comparer) schema(where string, up, our *openapi3.SchemaRef, dir direction, depth int) {
	if up == nil || up.Value == nil {
		return
	}
	if depth > 16 {
		c.t.Fatalf("%s: schema nesting too deep", where)
	}
	if our == nil || our.Value == nil {
		c.t.Errorf("%s: schema missing", where)
		return
	}
	u, o := up.Value, our.Value

	if !u.Type.IsEmpty() && !slices.Equal(u.Type.Slice(), o.Type.Slice()) && !widens(where, u, o) {
		c.t.Errorf("%s: type %v, upstream %v", where, o.Type.Slice(), u.Type.Slice())
	}
	if u.Nullable && !o.Nullable {
		c.t.Errorf("%s: upstream allows null", where)
	}
	if len(u.Enum) > 0 && fmt.Sprint(sortedAny(u.Enum)) != fmt.Sprint(sortedAny(o.Enum)) {
		c.t.Errorf("%s: enum %v, upstream %v", where, o.Enum, u.Enum)
	}
	switch dir {
	case request:
		for _, r := range o.Required {
			if !slices.Contains(u.Required, r) {
				c.t.Errorf("%s: %q required here but optional upstream", where, r)
			}
		}
	case response:
		for _, r := range u.Required {
			if !slices.Contains(o.Required, r) {
				c.t.Errorf("%s: %q required upstream but optional here", where, r)
			}
		}
	}
	for name, up := range u.Properties {
		c.schema(where+"."+name, up, o.Properties[name], dir, depth+1)
	}
	if u.Items != nil {
		c.schema(where+"[]", u.Items, o.Items, dir, depth+1)
	}
}

// widenedMembers are the members whose type this contract deliberately widens: upstream's
// type stays one alternative of an anyOf, so every value upstream allowed is still valid.
var widenedMembers = map[string]string{
	".geolocation.timestamp": "devices send milliseconds since the epoch as a number, and records are kept as sent",
}

func widens(where string, up, our *openapi3.Schema) bool {
	for suffix := range widenedMembers {
		if !strings.HasSuffix(where, suffix) {
			continue
		}
		return slices.ContainsFunc(our.AnyOf, func(alt *openapi3.SchemaRef) bool {
			return alt.Value != nil && slices.Equal(alt.Value.Type.Slice(), up.Type.Slice())
		})
	}
	return false
}

func sortedAny(v []any) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = fmt.Sprint(x)
	}
	sort.Strings(out)
	return out
}

// collectRefs adds the names of all component schemas op uses, directly or
// through other schemas.
func collectRefs(op *openapi3.Operation, into map[string]bool) {
	var walk func(s *openapi3.SchemaRef)
	walk = func(s *openapi3.SchemaRef) {
		if s == nil {
			return
		}
		if name, ok := strings.CutPrefix(s.Ref, "#/components/schemas/"); ok {
			if into[name] {
				return
			}
			into[name] = true
		}
		if s.Value == nil {
			return
		}
		for _, p := range s.Value.Properties {
			walk(p)
		}
		walk(s.Value.Items)
		for _, group := range []openapi3.SchemaRefs{s.Value.AllOf, s.Value.AnyOf, s.Value.OneOf} {
			for _, g := range group {
				walk(g)
			}
		}
	}
	for _, p := range op.Parameters {
		walk(p.Value.Schema)
	}
	if op.RequestBody != nil {
		for _, mt := range op.RequestBody.Value.Content {
			walk(mt.Schema)
		}
	}
	for _, r := range op.Responses.Map() {
		for _, mt := range r.Value.Content {
			walk(mt.Schema)
		}
		for _, h := range r.Value.Headers {
			walk(h.Value.Schema)
		}
	}
}
