package portal

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

// bundleVersion is one stored app bundle version.
type bundleVersion struct {
	Name   string
	Active bool
}

// bundleVersions lists the stored versions, newest first. When the API refuses (the
// operation is missing or the role may not list them) the reason comes back as a note.
func (p *Portal) bundleVersions(c echo.Context, s *session) ([]bundleVersion, string, error) {
	var list api.AppBundleVersions
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/app-bundle/versions"}, &list); err != nil {
		note, err := softError(err)
		return nil, note, err
	}
	out := make([]bundleVersion, len(list.Versions))
	for i, v := range list.Versions {
		name, active := strings.CutSuffix(v, " *")
		out[i] = bundleVersion{Name: name, Active: active}
	}
	return out, "", nil
}

type bundlesData struct {
	Versions []bundleVersion
	Active   string
	// Note explains why versions cannot be listed.
	Note     string
	Manifest *api.AppBundleManifest
	// Forms are the active version's forms with their observation counts.
	Forms []api.FormSummary
	// Changes compares two versions when the page was asked to.
	Changes         *api.ChangeLog
	Current, Target string
}

func (p *Portal) bundles(c echo.Context, s *session) error {
	return p.renderBundles(c, s, http.StatusOK, nil, nil)
}

func (p *Portal) renderBundles(c echo.Context, s *session, status int, problem *apiError, changes *api.ChangeLog) error {
	versions, note, err := p.bundleVersions(c, s)
	if err != nil {
		return err
	}
	d := bundlesData{Versions: versions, Note: note, Changes: changes, Current: c.QueryParam("current"), Target: c.QueryParam("target")}
	for _, v := range versions {
		if v.Active {
			d.Active = v.Name
		}
	}
	// Compare the active version (else the one before the newest) with the newest.
	if d.Current == "" && len(versions) > 1 {
		d.Current = cmp.Or(d.Active, versions[1].Name)
	}
	if d.Target == "" && len(versions) > 0 {
		d.Target = versions[0].Name
	}
	if d.Active != "" {
		var m api.AppBundleManifest
		err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/app-bundle/manifest"}, &m)
		if _, err := softError(err); err != nil {
			return err
		}
		if err == nil {
			d.Manifest = &m
		}
		var forms api.FormList
		err = p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/v1/data/forms"}, &forms)
		if _, err := softError(err); err != nil {
			return err
		}
		d.Forms = forms.Forms
	}
	location := Base + "/bundles"
	if changes != nil || problem != nil && c.Request().Method == http.MethodGet {
		location = c.Request().URL.RequestURI()
	}
	return p.render(c, status, "bundles", location, view{Title: "App bundles", Nav: "bundles", S: s, Problem: problem, Data: d})
}

// bundleChanges compares two versions (the API picks defaults for what is left empty).
func (p *Portal) bundleChanges(c echo.Context, s *session) error {
	q := url.Values{}
	for _, k := range []string{"current", "target"} {
		if v := c.QueryParam(k); v != "" {
			q.Set(k, v)
		}
	}
	var changes api.ChangeLog
	err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/app-bundle/changes", Query: q}, &changes)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		return p.renderBundles(c, s, ae.Status, ae, nil)
	}
	if err != nil {
		return err
	}
	return p.renderBundles(c, s, http.StatusOK, nil, &changes)
}

// activateBundle switches devices to a stored version; activating an older one is a rollback.
func (p *Portal) activateBundle(c echo.Context, s *session) error {
	version := c.FormValue("version")
	err := p.call(c, s, apiRequest{Method: http.MethodPost, Path: "/api/app-bundle/switch/" + escape(version)}, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		return p.renderBundles(c, s, ae.Status, ae, nil)
	}
	if err != nil {
		return err
	}
	return p.redirect(c, Base+"/bundles", fmt.Sprintf("Version %s is now active: devices get it on their next update.", version))
}

// uploadBundle streams the uploaded ZIP to the API's push operation, re-encoded as the
// multipart body the contract describes, and shows the API's validation report.
func (p *Portal) uploadBundle(c echo.Context, s *session, fields url.Values, file *multipart.Part) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		fw, err := mw.CreateFormFile("bundle", file.FileName())
		if err == nil {
			_, err = io.Copy(fw, file)
		}
		if err == nil {
			err = mw.Close()
		}
		pw.CloseWithError(err)
	}()
	var pushed api.AppBundlePushResponse
	var q url.Values
	if fields.Get("activate") != "" {
		q = url.Values{"activate": {"true"}}
	}
	err := p.call(c, s, apiRequest{Method: http.MethodPost, Path: "/api/app-bundle/push", Query: q, Body: pr, ContentType: mw.FormDataContentType()}, &pushed)
	_ = pr.CloseWithError(errors.New("the API stopped reading the upload"))
	<-copied
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		return p.renderBundles(c, s, ae.Status, ae, nil)
	}
	if err != nil {
		return err
	}
	next := "Activate it to send it to devices."
	if pushed.Active != nil && *pushed.Active {
		next = "It is active: devices get it on their next update."
	}
	return p.redirect(c, Base+"/bundles", fmt.Sprintf("Version %s was uploaded and validated (%d files). %s",
		pushed.Manifest.Version, len(pushed.Manifest.Files), next))
}
