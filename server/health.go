package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	openapi_types "github.com/oapi-codegen/runtime/types"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/openapi"
	"github.com/opendataensemble/synkronus/server/buildinfo"
)

// GetServiceInfo names the service and links to its parts, for tools that check that a
// URL points at a synkronus server.
func (s *Server) GetServiceInfo(context.Context, api.GetServiceInfoRequestObject) (api.GetServiceInfoResponseObject, error) {
	base := s.opts.PublicURL
	return api.GetServiceInfo200JSONResponse{
		Name: "synkronus", Version: s.version, ApiVersion: s.spec.Info.Version,
		Links: api.ServiceLinks{Health: base + "/health", Docs: base + "/docs", Openapi: base + "/openapi/synkronus.yaml", Api: base + "/api"},
	}, nil
}

// GetHealth reports whether the server can reach its database.
func (s *Server) GetHealth(ctx context.Context, _ api.GetHealthRequestObject) (api.GetHealthResponseObject, error) {
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	now := time.Now().UTC()
	if err := s.pool.Ping(pingCtx); err != nil {
		s.log.WarnContext(ctx, "health check: database unreachable", "error", err)
		return api.GetHealth503JSONResponse{
			Body:    api.HealthError{Status: api.HealthErrorStatusError, Error: "database unreachable", Timestamp: now},
			Headers: api.GetHealth503ResponseHeaders{RetryAfter: retryAfterSeconds},
		}, nil
	}
	return api.GetHealth200JSONResponse{Status: api.HealthOKStatusOk, Timestamp: now, Version: s.version}, nil
}

// GetVersion describes the build, the runtime and the database.
func (s *Server) GetVersion(ctx context.Context, _ api.GetVersionRequestObject) (api.GetVersionResponseObject, error) {
	var dbVersion, dbName string
	err := db.Conn(s.pool).QueryRow(ctx, "SELECT current_setting('server_version'), current_database()").Scan(&dbVersion, &dbName)
	if err != nil {
		return nil, fmt.Errorf("error reading database version: %w", err)
	}
	version, commit, built := buildinfo.Info()
	goVersion, goos, arch, cpus, dbType := runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), "postgresql"
	info := api.GetVersion200JSONResponse{
		Server:   &api.ServerInfo{Version: &version},
		Database: &api.DatabaseInfo{Type: &dbType, Version: &dbVersion, DatabaseName: &dbName},
		System:   &api.SystemInfo{Os: &goos, Architecture: &arch, Cpus: &cpus},
		Build:    &api.BuildInfo{GoVersion: &goVersion},
	}
	if commit != "" {
		info.Build.Commit = &commit
	}
	if built != "" {
		info.Build.BuildTime = &built
	}
	return info, nil
}

// apiContractReleased is when this server's contract version was published.
var apiContractReleased = time.Date(2026, 4, 1, 0, 0, 0, 0, time.UTC)

// GetAPIVersions lists the contract versions this server speaks.
func (s *Server) GetAPIVersions(context.Context, api.GetAPIVersionsRequestObject) (api.GetAPIVersionsResponseObject, error) {
	contract := s.spec.Info.Version
	return api.GetAPIVersions200JSONResponse{
		Current: contract,
		Versions: []api.APIVersionInfo{
			{Version: contract, ReleaseDate: openapi_types.Date{Time: apiContractReleased}, Deprecated: false},
		},
	}, nil
}

// serveSpec serves the contract exactly as written.
func serveSpec(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", openapi.Spec)
}

// serveDocs renders a plain, self-contained page listing every operation of the contract,
// readable without any script or network access.
func (s *Server) serveDocs(c echo.Context) error {
	type op struct{ Method, Path, Summary, Description, Roles string }
	var ops []op
	for _, path := range s.spec.Paths.InMatchingOrder() {
		for method, o := range s.spec.Paths.Value(path).Operations() {
			roles := "none"
			if o.Security != nil {
				for _, req := range *o.Security {
					for _, scopes := range req {
						roles = strings.Join(scopes, ", ")
					}
				}
			}
			ops = append(ops, op{Method: method, Path: path, Summary: o.Summary, Description: o.Description, Roles: roles})
		}
	}
	slices.SortFunc(ops, func(a, b op) int { return strings.Compare(a.Path+a.Method, b.Path+b.Method) })
	c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	c.Response().Header().Set("Content-Security-Policy", docsCSP)
	c.Response().WriteHeader(http.StatusOK)
	return docsPage.Execute(c.Response(), map[string]any{"Title": s.spec.Info.Title, "Version": s.spec.Info.Version, "Ops": ops})
}

// docsStyle is the docs page's only style sheet; the page runs no script.
const docsStyle = `body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}
code{background:#f3f3f3;padding:.1rem .3rem}section{border-top:1px solid #ddd;padding:.6rem 0}
.m{display:inline-block;min-width:4.5rem;font-weight:bold}.r{color:#555;font-size:.9rem}`

// docsCSP allows the docs page nothing but its own style sheet (by hash) and links: the
// operation descriptions come from the contract, and no injected markup may run or load.
var docsCSP = func() string {
	sum := sha256.Sum256([]byte(docsStyle))
	return "default-src 'none'; style-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) +
		"'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

var docsPage = template.Must(template.New("docs").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{.Title}} {{.Version}}</title>
<style>` + docsStyle + `</style></head>
<body><h1>{{.Title}} {{.Version}}</h1>
<p>The machine-readable contract is at <a href="/openapi/synkronus.yaml">/openapi/synkronus.yaml</a>.
Every <code>/api</code> call sends <code>x-ode-version</code>; secured calls send <code>Authorization: Bearer &lt;token&gt;</code> from <code>POST /api/auth/login</code>.</p>
{{range .Ops}}<section><div><span class="m">{{.Method}}</span><code>{{.Path}}</code> — {{.Summary}}</div>
<div class="r">Roles: {{.Roles}}</div><p>{{.Description}}</p></section>{{end}}
</body></html>`))
