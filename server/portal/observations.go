package portal

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

type overviewData struct {
	Stats      *api.ObservationStatsResponse
	StatsError string
	Chart      *chart
	Server     *api.SystemVersionInfo
	// ActiveBundle is the version devices get; BundleNote explains when there is none.
	ActiveBundle string
	BundleNote   string
}

// overview is the home page: how much data there is, over time and per form type, and
// what the server runs.
func (p *Portal) overview(c echo.Context, s *session) error {
	var d overviewData
	var stats api.ObservationStatsResponse
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/stats/observations"}, &stats); err != nil {
		if d.StatsError, err = softError(err); err != nil {
			return err
		}
	} else {
		d.Stats, d.Chart = &stats, newChart(stats.Timeline)
	}
	var info api.SystemVersionInfo
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/version"}, &info); err != nil {
		return err
	}
	d.Server = &info
	versions, note, err := p.bundleVersions(c, s)
	if err != nil {
		return err
	}
	d.BundleNote = note
	for _, v := range versions {
		if v.Active {
			d.ActiveBundle = v.Name
		}
	}
	if d.ActiveBundle == "" && d.BundleNote == "" {
		d.BundleNote = "No app bundle is active yet."
	}
	return p.render(c, http.StatusOK, "overview", Base, view{Title: "Overview", Nav: "overview", S: s, Data: d})
}

// softError turns a refusal of one part of a page into a note shown in its place; an
// ended session (401) or an unexpected failure still fails the page.
func softError(err error) (string, error) {
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		return ae.Message(), nil
	}
	return "", err
}

// observationFilter is the browse form, as the page's query string carries it.
type observationFilter struct {
	FormType  string
	Author    string
	From      string // YYYY-MM-DD, UTC
	To        string // YYYY-MM-DD, UTC, inclusive
	Deleted   bool
	Conflicts bool
}

func readObservationFilter(c echo.Context) observationFilter {
	return observationFilter{
		FormType: c.QueryParam("form_type"), Author: strings.TrimSpace(c.QueryParam("author")),
		From: c.QueryParam("from"), To: c.QueryParam("to"),
		Deleted: c.QueryParam("deleted") != "", Conflicts: c.QueryParam("conflicts") != "",
	}
}

// query is the filter as the page's own query string.
func (f observationFilter) query() url.Values {
	q := url.Values{}
	for k, v := range map[string]string{"form_type": f.FormType, "author": f.Author, "from": f.From, "to": f.To} {
		if v != "" {
			q.Set(k, v)
		}
	}
	if f.Deleted {
		q.Set("deleted", "on")
	}
	if f.Conflicts {
		q.Set("conflicts", "on")
	}
	return q
}

// apiQuery is the filter as listObservations' parameters; a date that does not parse is
// reported instead.
func (f observationFilter) apiQuery() (url.Values, string) {
	q := url.Values{}
	if f.FormType != "" {
		q.Set("form_type", f.FormType)
	}
	if f.Author != "" {
		q.Set("author", f.Author)
	}
	for _, d := range []struct {
		field, value string
		days         int
	}{{"created_from", f.From, 0}, {"created_to", f.To, 1}} {
		if d.value == "" {
			continue
		}
		t, err := time.Parse(time.DateOnly, d.value)
		if err != nil {
			return nil, "Dates must be written as YYYY-MM-DD, such as 2026-03-31."
		}
		q.Set(d.field, t.AddDate(0, 0, d.days).Format(time.RFC3339))
	}
	if f.Deleted {
		q.Set("include_deleted", "true")
	}
	if f.Conflicts {
		q.Set("conflicts_only", "true")
	}
	return q, ""
}

type observationsData struct {
	Filter    observationFilter
	FormTypes []string
	List      api.ObservationList
	// Newer and Older are the addresses of the neighbouring pages ("" when there is none).
	Newer, Older string
	Note         string
}

const observationsPageSize = 50

// observations browses the stored observations with filters, newest change first.
func (p *Portal) observations(c echo.Context, s *session) error {
	f := readObservationFilter(c)
	d := observationsData{Filter: f}
	var stats api.ObservationStatsResponse
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/stats/observations"}, &stats); err != nil {
		return err
	}
	for _, t := range stats.ByFormType {
		d.FormTypes = append(d.FormTypes, t.FormType)
	}
	q, note := f.apiQuery()
	status := http.StatusOK
	if note != "" {
		d.Note, status = note, http.StatusBadRequest
	} else {
		q.Set("limit", strconv.Itoa(observationsPageSize))
		before := c.QueryParam("before")
		if before != "" {
			q.Set("before_version", before)
		}
		err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/observations", Query: q}, &d.List)
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusBadRequest {
			d.Note, status = ae.Message(), ae.Status
		} else if err != nil {
			return err
		}
		page := f.query()
		if before != "" {
			d.Newer = Base + "/observations?" + page.Encode()
		}
		if d.List.NextBeforeVersion != nil {
			page.Set("before", strconv.FormatInt(*d.List.NextBeforeVersion, 10))
			d.Older = Base + "/observations?" + page.Encode()
		}
	}
	return p.render(c, status, "observations", c.Request().URL.RequestURI(), view{Title: "Observations", Nav: "observations", S: s, Data: d})
}

type observationData struct {
	ID string
	// Current is the stored state, nil when the server holds only history.
	Current *api.ObservationRevision
	// Revisions are newest first.
	Revisions []api.ObservationRevision
	Conflicts int
}

// observation shows one record with its revision history and conflicts.
func (p *Portal) observation(c echo.Context, s *session) error {
	id := c.QueryParam("id")
	var list api.ObservationRevisionList
	err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/observations/" + escape(id) + "/revisions"}, &list)
	if err != nil {
		return err
	}
	d := observationData{ID: list.ObservationId, Revisions: slices.Clone(list.Revisions)}
	slices.Reverse(d.Revisions)
	for i := range d.Revisions {
		r := &d.Revisions[i]
		if r.Status == api.ObservationRevisionStatusCurrent {
			d.Current = r
		}
		if r.Conflict {
			d.Conflicts++
		}
	}
	return p.render(c, http.StatusOK, "observation", c.Request().URL.RequestURI(), view{Title: "Observation " + id, Nav: "observations", S: s, Data: d})
}
