package portal_test

import (
	"bytes"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/servertest"
)

// TestPortalScreenshots writes a screenshot of every page for the README:
//
//	go test ./server/portal -run TestPortalScreenshots -screenshots "$PWD/docs/screenshots"
//
// (or `go tool -modfile=tools/go.mod task screenshots`). It runs only with the flag.
func TestPortalScreenshots(t *testing.T) {
	if *screenshotDir == "" {
		t.Skip("screenshots are written only with -screenshots DIR")
	}
	require.NoError(t, os.MkdirAll(*screenshotDir, 0o755))
	env := servertest.New(t)
	seedShowcase(t, env)
	ctx := newTab(t)

	// Long pages are cut at the window's height, except those whose point is further down.
	capture := func(name string, action chromedp.Action[[]byte]) {
		t.Helper()
		waitFor(t, ctx, `document.readyState === "complete" && document.querySelector("h1")`)
		png, err := chromedp.Run(ctx, action)
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(*screenshotDir, name+".png"), png, 0o644))
	}
	shoot := func(name string) { t.Helper(); capture(name, chromedp.CaptureScreenshot()) }
	visit := func(path, name string) {
		t.Helper()
		do(t, ctx, chromedp.Navigate(env.HTTP.URL+path))
		shoot(name)
	}
	visitWhole := func(path, name string) {
		t.Helper()
		do(t, ctx, chromedp.Navigate(env.HTTP.URL+path))
		capture(name, chromedp.FullScreenshot(100))
	}

	do(t, ctx, chromedp.EmulateViewport(1280, 900))
	visit("/portal/login", "login")
	signInWithBrowser(t, ctx, env, "admin", servertest.AdminPassword)
	visit("/portal", "overview")
	visit("/portal/observations", "observations")
	visitWhole("/portal/observations/record?id=obs-household-3", "observation")
	visit("/portal/devices", "devices")
	visit("/portal/users", "users")
	do(t, ctx, chromedp.Click(chromedp.CSS(`table.users tbody tr:nth-child(2) details:last-of-type summary`)))
	shoot("users-delete")
	visitWhole("/portal/bundles/changes?current=0001&target=0002", "bundles")
	visit("/portal/attachments", "attachments")
	visit("/portal/exports", "exports")
	visit("/portal/quarantine", "quarantine")
	visit("/portal/reset", "reset")

	do(t, ctx, chromedp.EmulateViewport(390, 844))
	visit("/portal", "phone-overview")
	visit("/portal/observations", "phone-observations")
}

// seedShowcase fills a server with what a small field project has after a few weeks.
func seedShowcase(t *testing.T, env *servertest.Env) {
	admin := env.AdminToken()
	for _, u := range []struct{ name, role string }{{"amina", "read-write"}, {"kofi", "read-write"}, {"supervisor", "admin"}, {"analyst", "read-only"}} {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/create", Token: admin,
			Body: map[string]string{"username": u.name, "password": "pw-" + u.name, "role": u.role}})
		require.Equal(t, http.StatusCreated, res.Status, "%s", res.Body)
	}
	collectors := map[string]string{"amina": env.Login("amina", "pw-amina"), "kofi": env.Login("kofi", "pw-kofi")}
	forms := []string{"household", "household", "household", "clinic", "water_point"}
	now := time.Now().UTC()
	n := 0
	for day := 40; day >= 0; day-- {
		at := now.AddDate(0, 0, -day)
		perDay := 1 + (day*7)%5
		var records []string
		for i := range perDay {
			form := forms[(day+i)%len(forms)]
			n++
			ts := at.Add(time.Duration(i) * time.Hour).Format(time.RFC3339)
			author := []string{"Amina Diallo", "Kofi Mensah"}[n%2]
			records = append(records, observation(fmt.Sprintf("obs-%s-%d", form, n), form, ts,
				fmt.Sprintf(`{"visit":%d,"members":%d,"water_source":"borehole","notes":"visited with the village health worker"}`, n, 2+n%6), author))
		}
		who := []string{"amina", "kofi"}[day%2]
		push(t, env, collectors[who], "tablet-"+who, records...)
	}
	// A stale edit from a second tablet conflicts with a newer one.
	old := now.AddDate(0, 0, -41).Format(time.RFC3339)
	push(t, env, collectors["kofi"], "tablet-kofi-2", observation("obs-household-3", "household", old, `{"visit":3,"members":9}`, "Kofi Mensah"))
	// A record whose updated_at no program can read waits in quarantine.
	push(t, env, collectors["amina"], "tablet-amina", `{"observation_id":"obs-water_point-900","form_type":"water_point","form_version":"1",`+
		`"data":{"visit":900},"created_at":"2026-02-01T09:00:00Z","updated_at":"01/02/2026 9am","deleted":false}`)
	for _, form := range []string{"household", "household_v2"} {
		pushBundle(t, env, admin, bundleZip(t, form))
	}
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/app-bundle/switch/0001", Token: admin})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	// Devices say which app and bundle they run: each catches up on the data (the second
	// pull confirms the version it reached) and fetches the active bundle.
	for who, version := range map[string]string{"amina": "1.4.2", "kofi": "1.3.0"} {
		header := map[string]string{"X-Ode-Version": version, "X-Ode-Client-Id": "tablet-" + who}
		since := int64(0)
		for range 2 {
			res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/pull", Token: collectors[who], Header: header,
				Body: map[string]any{"client_id": "tablet-" + who, "since": map[string]any{"version": since}}})
			require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
			var pulled struct {
				CurrentVersion int64 `json:"current_version"`
			}
			res.JSON(t, &pulled)
			since = pulled.CurrentVersion
		}
		res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/app-bundle/manifest", Token: collectors[who], Header: header})
		require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
	}
	for i, c := range []color.RGBA{{70, 130, 180, 255}, {46, 139, 87, 255}, {205, 133, 63, 255}, {147, 112, 219, 255}} {
		img := image.NewRGBA(image.Rect(0, 0, 320, 240))
		draw.Draw(img, img.Bounds(), &image.Uniform{C: c}, image.Point{}, draw.Src)
		draw.Draw(img, image.Rect(110, 70, 210, 170), &image.Uniform{C: color.White}, image.Point{}, draw.Src)
		var buf bytes.Buffer
		require.NoError(t, png.Encode(&buf, img))
		uploadAttachment(t, env, collectors["amina"], fmt.Sprintf("photo-%d.png", i+1), "image/png", buf.Bytes())
	}
	uploadAttachment(t, env, collectors["kofi"], "interview-1.m4a", "audio/mp4", []byte("not really audio"))
	// Presence is written in the background every few seconds.
	require.Eventually(t, func() bool {
		var n int
		_ = env.Pool.QueryRow(t.Context(), "SELECT count(*) FROM user_client_presence WHERE client_id LIKE 'tablet-%' AND "+
			"(client_id = 'tablet-kofi-2' OR app_bundle_version IS NOT NULL)").Scan(&n)
		return n == 3
	}, 10*time.Second, 100*time.Millisecond)
}

// pushBundle uploads an app bundle through the API.
func pushBundle(t *testing.T, env *servertest.Env, token string, zipped []byte) {
	body, contentType := multipartFile(t, "bundle", "bundle.zip", zipped)
	req, err := http.NewRequest(http.MethodPost, env.HTTP.URL+"/api/app-bundle/push", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("X-Ode-Version", servertest.Version)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := env.HTTP.Client().Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
}

// multipartFile encodes one file as a multipart/form-data body.
func multipartFile(t *testing.T, field, name string, content []byte) (string, string) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	w, err := mw.CreateFormFile(field, name)
	require.NoError(t, err)
	_, err = w.Write(content)
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	return buf.String(), mw.FormDataContentType()
}
