package portal

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

type quarantineData struct {
	List api.QuarantineList
	// ClientID filters the list; Newer and Older page it.
	ClientID     string
	Newer, Older string
}

// quarantine lists the pushed records the server could not store.
func (p *Portal) quarantine(c echo.Context, s *session) error {
	d := quarantineData{ClientID: strings.TrimSpace(c.QueryParam("client_id"))}
	q := url.Values{"limit": {"50"}}
	if d.ClientID != "" {
		q.Set("client_id", d.ClientID)
	}
	after := c.QueryParam("after")
	if after != "" {
		q.Set("after", after)
	}
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/admin/quarantine", Query: q}, &d.List); err != nil {
		return err
	}
	page := url.Values{}
	if d.ClientID != "" {
		page.Set("client_id", d.ClientID)
	}
	if after != "" {
		d.Newer = Base + "/quarantine?" + page.Encode()
	}
	if d.List.HasMore && d.List.NextAfter != nil {
		page.Set("after", strconv.FormatInt(*d.List.NextAfter, 10))
		d.Older = Base + "/quarantine?" + page.Encode()
	}
	return p.render(c, http.StatusOK, "quarantine", c.Request().URL.RequestURI(), view{Title: "Quarantine", Nav: "quarantine", S: s, Data: d})
}

type quarantinedData struct {
	ID   int64
	Raw  string
	Edit string
}

func (p *Portal) quarantined(c echo.Context, s *session) error {
	return p.renderQuarantined(c, s, http.StatusOK, nil, nil)
}

// renderQuarantined shows one quarantined record as it was sent, with a copy to correct.
// edited is what the admin typed when the API refused it.
func (p *Portal) renderQuarantined(c echo.Context, s *session, status int, problem *apiError, edited *string) error {
	id, err := strconv.ParseInt(c.FormValue("id"), 10, 64) // the query of a page, the form of an action
	if err != nil {
		return p.renderError(c, s, http.StatusBadRequest, "Open a quarantined record from the quarantine list.")
	}
	var raw json.RawMessage
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: fmt.Sprintf("/api/admin/quarantine/%d", id)}, &raw); err != nil {
		return err
	}
	d := quarantinedData{ID: id, Raw: pretty(raw), Edit: pretty(raw)}
	if edited != nil {
		d.Edit = *edited
	}
	return p.render(c, status, "quarantined", fmt.Sprintf("%s/quarantine/record?id=%d", Base, id),
		view{Title: fmt.Sprintf("Quarantined record %d", id), Nav: "quarantine", S: s, Problem: problem, Data: d})
}

// retryQuarantined stores a quarantined record through the push rules, as it was sent or
// from the corrected copy the admin typed.
func (p *Portal) retryQuarantined(c echo.Context, s *session) error {
	id := c.FormValue("id")
	var body api.QuarantineRetryRequest
	edited, hasCopy := c.Request().PostForm["record"]
	if hasCopy {
		if !json.Valid([]byte(edited[0])) {
			return p.renderQuarantined(c, s, http.StatusBadRequest, &apiError{Status: http.StatusBadRequest,
				Detail: "The corrected copy is not valid JSON."}, &edited[0])
		}
		record := json.RawMessage(edited[0])
		body.Record = &record
	}
	var out api.QuarantineRetryResponse
	err := p.call(c, s, apiRequest{Method: http.MethodPost, Path: "/api/admin/quarantine/" + escape(id) + "/retry", JSON: body}, &out)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		var typed *string
		if hasCopy {
			typed = &edited[0]
		}
		return p.renderQuarantined(c, s, ae.Status, ae, typed)
	}
	if err != nil {
		return err
	}
	msg := fmt.Sprintf("Observation %s was stored (data version %d); devices receive it on their next sync.", out.ObservationId, out.CurrentVersion)
	if out.Warnings != nil {
		for _, w := range *out.Warnings {
			msg += " " + w.Message
		}
	}
	return p.redirect(c, Base+"/quarantine", msg)
}

// discardQuarantined deletes a quarantined record for good.
func (p *Portal) discardQuarantined(c echo.Context, s *session) error {
	id := c.FormValue("id")
	err := p.call(c, s, apiRequest{Method: http.MethodDelete, Path: "/api/admin/quarantine/" + escape(id)}, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		return p.renderQuarantined(c, s, ae.Status, ae, nil)
	}
	if err != nil {
		return err
	}
	return p.redirect(c, Base+"/quarantine", fmt.Sprintf("Quarantined record %s was discarded.", id))
}
