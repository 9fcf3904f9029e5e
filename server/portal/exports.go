package portal

import (
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

// exportFormat is one download the exports page offers.
type exportFormat struct {
	Key, Label, Description, Path string
	// Filtered formats take the form type and deleted filters.
	Filtered bool
}

// exportFormats are the export operations, by the key the page's form sends.
var exportFormats = []exportFormat{
	{"parquet", "Parquet", "One Parquet file per form type, typed columns: for R, Python, DuckDB and Spark.", "/api/dataexport/parquet", true},
	{"csv", "CSV", "One CSV file per form type, the same columns: for spreadsheets.", "/api/dataexport/csv", true},
	{"raw-json", "Raw JSON", "One JSON document per observation, in a folder per form type, data exactly as stored.", "/api/dataexport/raw-json", true},
	{"attachments", "Attachments", "Every stored attachment (photos, audio, signatures) in one ZIP archive; the filters do not apply.", "/api/attachments/export-zip", false},
}

type exportsData struct {
	Formats   []exportFormat
	FormTypes []string
	Total     int64
}

func (p *Portal) exports(c echo.Context, s *session) error {
	var stats api.ObservationStatsResponse
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/stats/observations"}, &stats); err != nil {
		return err
	}
	d := exportsData{Formats: exportFormats, Total: stats.TotalCount}
	for _, t := range stats.ByFormType {
		d.FormTypes = append(d.FormTypes, t.FormType)
	}
	return p.render(c, http.StatusOK, "exports", Base+"/exports", view{Title: "Exports", Nav: "exports", S: s, Data: d})
}

// downloadExport streams an export from the API to the browser as it is produced.
func (p *Portal) downloadExport(c echo.Context, s *session) error {
	var format *exportFormat
	for i := range exportFormats {
		if exportFormats[i].Key == c.QueryParam("format") {
			format = &exportFormats[i]
		}
	}
	if format == nil {
		return p.renderError(c, s, http.StatusBadRequest, "Choose one of the export formats the exports page offers.")
	}
	q := url.Values{}
	if format.Filtered {
		for _, ft := range c.QueryParams()["form_type"] {
			if ft != "" {
				q.Add("form_type", ft)
			}
		}
		if c.QueryParam("include_deleted") != "" {
			q.Set("include_deleted", "true")
		}
	}
	return p.stream(c, s, apiRequest{Method: http.MethodGet, Path: format.Path, Query: q}, nil)
}

type resetData struct {
	Total   int64
	Phrase  string
	Confirm string
}

// resetPhrase is what the API requires as confirmation; the form asks for it typed.
const resetPhrase = string(api.RepositoryResetRequestConfirmRESETREPOSITORY)

func (p *Portal) resetForm(c echo.Context, s *session) error {
	return p.renderReset(c, s, http.StatusOK, nil, "")
}

func (p *Portal) renderReset(c echo.Context, s *session, status int, problem *apiError, typed string) error {
	var stats api.ObservationStatsResponse
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/stats/observations"}, &stats); err != nil {
		return err
	}
	return p.render(c, status, "reset", Base+"/reset", view{Title: "Reset the repository", Nav: "reset", S: s, Problem: problem,
		Data: resetData{Total: stats.TotalCount, Phrase: resetPhrase, Confirm: typed}})
}

// reset erases the repository once the confirmation was typed; the API checks it.
func (p *Portal) reset(c echo.Context, s *session) error {
	typed := c.FormValue("confirm")
	var out api.RepositoryResetResponse
	err := p.call(c, s, apiRequest{Method: http.MethodPost, Path: "/api/admin/repository/reset",
		JSON: api.RepositoryResetRequest{Confirm: api.RepositoryResetRequestConfirm(typed)}}, &out)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		if ae.Status == http.StatusBadRequest {
			ae.Detail = "Type " + resetPhrase + " exactly to confirm; nothing was erased."
		}
		return p.renderReset(c, s, ae.Status, ae, typed)
	}
	if err != nil {
		return err
	}
	return p.redirect(c, Base, out.Message)
}
