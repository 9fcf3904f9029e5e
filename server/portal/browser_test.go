package portal_test

import (
	"archive/zip"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/server/servertest"
)

var screenshotDir = flag.String("screenshots", "", "write a screenshot of every portal page to this directory (for the README) and run nothing else of the browser tests")

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	stopChromium()
	os.Exit(code)
}

// chromiumPath finds the browser: $CHROMIUM, else Debian's chromium or a Chrome on PATH.
func chromiumPath() string {
	if p := os.Getenv("CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// One headless Chromium serves every browser test of the package; each test gets its own
// browser context (its own cookies), like a private window.
var (
	chromiumOnce sync.Once
	chromiumCtx  context.Context
	chromiumErr  error
	stopChromium = func() {}
)

func startChromium() {
	dir, err := os.MkdirTemp("", "synkronus-chromium-")
	if err != nil {
		chromiumErr = err
		return
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(chromiumPath()),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	stopChromium = func() { cancel(); cancelAlloc(); _ = os.RemoveAll(dir) }
	chromiumCtx, chromiumErr = ctx, chromedp.Do(ctx) // starts the browser
}

// consoleLog collects what the pages of one tab reported as broken: script exceptions and
// refusals by the Content-Security-Policy.
type consoleLog struct {
	mu       sync.Mutex
	problems []string
}

func (l *consoleLog) add(m chromedp.ConsoleMessage) {
	text := m.String()
	if m.IsException() || strings.Contains(text, "Content Security Policy") || strings.Contains(text, "Refused to") {
		l.mu.Lock()
		l.problems = append(l.problems, text)
		l.mu.Unlock()
	}
}

// newTab opens a tab in a fresh browser context, or skips the test when no browser is
// installed. At the end the test fails if a page threw or the CSP refused anything.
func newTab(t *testing.T) context.Context {
	t.Helper()
	if chromiumPath() == "" {
		if os.Getenv("SYNKRONUS_REQUIRE_CHROMIUM") != "" {
			t.Fatal("no Chromium found, and SYNKRONUS_REQUIRE_CHROMIUM is set: install it (apt-get install -y chromium)")
		}
		t.Skip("browser tests skipped: no Chromium found (install Debian's package: apt-get install -y chromium, or set CHROMIUM)")
	}
	chromiumOnce.Do(startChromium)
	require.NoError(t, chromiumErr, "starting Chromium")
	ctx, cancel := chromedp.NewContext(chromiumCtx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	require.NoError(t, chromedp.Do(ctx)) // opens the tab
	log := &consoleLog{}
	messages := chromedp.Console(ctx) // subscribes now, before any page loads
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			log.add(m)
		}
	}()
	t.Cleanup(func() {
		log.mu.Lock()
		defer log.mu.Unlock()
		require.Empty(t, log.problems, "the pages reported script errors or CSP refusals")
	})
	limited, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(cancelTimeout)
	return limited
}

// eval runs a JavaScript expression in the page.
func eval[T any](t *testing.T, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, expr)
	return v
}

// waitFor waits until a JavaScript expression is true, across page loads and swaps.
func waitFor(t *testing.T, ctx context.Context, expr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("!!("+expr+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			body, _ := chromedp.Run(ctx, chromedp.Evaluate[string]("document.body ? document.body.innerText : ''"))
			t.Fatalf("timed out waiting for %s (error %v); the page says:\n%s", expr, err, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, steps...))
}

// jsString quotes s for a JavaScript expression.
func jsString(s string) string { return fmt.Sprintf("%q", s) }

func heading(text string) string {
	return `document.querySelector("h1") && document.querySelector("h1").textContent.includes(` + jsString(text) + `)`
}

func pageSays(text string) string {
	return `document.body && document.body.innerText.includes(` + jsString(text) + `)`
}

func signInWithBrowser(t *testing.T, ctx context.Context, env *servertest.Env, username, password string) {
	t.Helper()
	do(t, ctx, chromedp.Navigate(env.HTTP.URL+"/"))
	waitFor(t, ctx, `location.pathname === "/portal/login" && document.getElementById("username")`)
	do(t, ctx,
		chromedp.SendKeys(chromedp.ID("username"), username),
		chromedp.SendKeys(chromedp.ID("password"), password),
		chromedp.Click(chromedp.CSS(`form[action="/portal/login"] button[type=submit]`)),
	)
	waitFor(t, ctx, heading("Overview"))
}

// seedConflict stores two observations, one of which a stale copy from a second device
// conflicts with.
func seedConflict(t *testing.T, env *servertest.Env) {
	token := env.CreateUser("collector", "read-write")
	push(t, env, token, "tablet-7",
		observation("hh-1", "household", "2026-02-01T09:00:00Z", `{"size":4}`, "Awa Ndiaye"),
		observation("cl-1", "clinic", "2026-02-02T09:00:00Z", `{"beds":12}`, "Jon"))
	push(t, env, token, "tablet-7", observation("hh-1", "household", "2026-02-03T09:00:00Z", `{"size":5}`, "Awa Ndiaye"))
	push(t, env, token, "tablet-8", observation("hh-1", "household", "2026-02-02T12:00:00Z", `{"size":3}`, "Awa Ndiaye"))
}

func TestBrowserAdminTasks(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	seedConflict(t, env)
	ctx := newTab(t)

	// Sign in: a browser asking for / lands on the sign-in form.
	signInWithBrowser(t, ctx, env, "admin", servertest.AdminPassword)
	require.True(t, eval[bool](t, ctx, `document.querySelectorAll(".chart svg rect.bar").length > 0`), "the timeline chart is drawn")

	// On a page load, the first Tab reaches the skip link.
	do(t, ctx, chromedp.Navigate(env.HTTP.URL+"/portal"))
	waitFor(t, ctx, heading("Overview"))
	do(t, ctx, chromedp.KeyEvent("\t"))
	require.Equal(t, "Skip to content", eval[string](t, ctx, `document.activeElement.textContent`))

	// Create a user.
	do(t, ctx, chromedp.Click(chromedp.CSS(`nav a[href="/portal/users"]`)))
	waitFor(t, ctx, heading("Users"))
	do(t, ctx,
		chromedp.SendKeys(chromedp.ID("new-username"), "amina"),
		chromedp.SendKeys(chromedp.ID("new-password"), "amina-first-password"),
		chromedp.SetValue(chromedp.ID("new-role"), "read-write"),
		chromedp.Click(chromedp.CSS(`form[action="/portal/users"] button[type=submit]`)),
	)
	waitFor(t, ctx, pageSays(`User "amina" was created with the role read-write.`))
	require.Equal(t, "/portal/users", eval[string](t, ctx, "location.pathname"))
	require.True(t, eval[bool](t, ctx, `[...document.querySelectorAll("tbody th")].some(th => th.textContent.trim() === "amina")`))
	env.Login("amina", "amina-first-password")

	// Browse to the observation with a conflict and open it.
	do(t, ctx, chromedp.Click(chromedp.CSS(`nav a[href="/portal/observations"]`)))
	waitFor(t, ctx, heading("Observations"))
	do(t, ctx,
		chromedp.Click(chromedp.CSS(`input[name=conflicts]`)),
		chromedp.Click(chromedp.CSS(`form.filters button[type=submit]`)),
	)
	waitFor(t, ctx, `location.search.includes("conflicts=on") && document.querySelectorAll("table.observations tbody tr").length === 1`)
	do(t, ctx, chromedp.Click(chromedp.CSS(`table.observations a`)))
	waitFor(t, ctx, heading("Observation hh-1"))
	require.True(t, eval[bool](t, ctx, pageSays("1 revision arrived in conflict")))
	require.Equal(t, 3, eval[int](t, ctx, `document.querySelectorAll("ol.revisions > li").length`))
	waitFor(t, ctx, `document.querySelector("time[data-local]") !== null`) // the script shows times in the viewer's zone

	t.Run("UploadAndActivateABundle", func(t *testing.T) {
		zipPath := filepath.Join(t.TempDir(), "bundle.zip")
		require.NoError(t, os.WriteFile(zipPath, bundleZip(t, "household"), 0o600))
		do(t, ctx, chromedp.Click(chromedp.CSS(`nav a[href="/portal/bundles"]`)))
		waitFor(t, ctx, heading("App bundles"))
		do(t, ctx,
			chromedp.SetUploadFiles(chromedp.ID("bundle"), []string{zipPath}),
			chromedp.Click(chromedp.CSS(`form[action="/portal/bundles"] button[type=submit]`)),
		)
		waitFor(t, ctx, pageSays("was uploaded and validated"))
		do(t, ctx, chromedp.Click(chromedp.CSS(`form[action="/portal/bundles/activate"] button[type=submit]`)))
		waitFor(t, ctx, pageSays("is now active"))
		require.True(t, eval[bool](t, ctx, `document.querySelector(".badge.ok") && document.querySelector(".badge.ok").textContent === "active"`))

		// A second version, activated as it is uploaded.
		require.NoError(t, os.WriteFile(zipPath, bundleZip(t, "clinic"), 0o600))
		do(t, ctx,
			chromedp.SetUploadFiles(chromedp.ID("bundle"), []string{zipPath}),
			chromedp.Click(chromedp.CSS(`input[name=activate]`)),
			chromedp.Click(chromedp.CSS(`form[action="/portal/bundles"] button[type=submit]`)),
		)
		waitFor(t, ctx, pageSays("Version 0002 was uploaded and validated (3 files). It is active"))
	})

	t.Run("RetryAQuarantinedRecord", func(t *testing.T) {
		token := env.Login("collector", "pw-collector")
		push(t, env, token, "tablet-7", `{"observation_id":"hh-late","form_type":"household","form_version":"1",`+
			`"data":{"size":2},"created_at":"2026-02-04T09:00:00Z","updated_at":"last tuesday","deleted":false}`)
		do(t, ctx, chromedp.Click(chromedp.CSS(`nav a[href="/portal/quarantine"]`)))
		waitFor(t, ctx, heading("Quarantine"))
		do(t, ctx, chromedp.Click(chromedp.CSS(`table.quarantine tbody a`)))
		waitFor(t, ctx, heading("Quarantined record"))
		// Correct the unreadable date in the copy, as an admin would by typing.
		do(t, ctx, chromedp.Evaluate[chromedp.Void](`(() => { const r = document.getElementById("record"); `+
			`r.value = r.value.replace("last tuesday", "2026-02-04T10:00:00Z"); })()`))
		do(t, ctx, chromedp.Click(chromedp.CSS(`textarea#record ~ button[type=submit]`)))
		waitFor(t, ctx, pageSays("Observation hh-late was stored"))
		require.True(t, eval[bool](t, ctx, pageSays("No record is in quarantine")))
	})

	t.Run("PreviewAnAttachment", func(t *testing.T) {
		token := env.Login("collector", "pw-collector")
		uploadAttachment(t, env, token, "visit-1.png", "image/png", pngImage(t))
		do(t, ctx, chromedp.Click(chromedp.CSS(`nav a[href="/portal/attachments"]`)))
		waitFor(t, ctx, heading("Attachments"))
		// The preview loads (the portal's CSP allows it) and shows the uploaded picture.
		waitFor(t, ctx, `(() => { const i = document.querySelector(".gallery img"); return i && i.complete && i.naturalWidth === 4; })()`)
	})

	t.Run("DownloadAnExport", func(t *testing.T) {
		dir := t.TempDir()
		browserCtx := chromedp.FromContext(ctx).BrowserContextID
		_, err := chromedp.CallBrowser(ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
			Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllowAndName, DownloadPath: dir, BrowserContextID: browserCtx, EventsEnabled: new(true),
		})
		require.NoError(t, err)
		progress := chromedp.BrowserEvents(ctx, cdpbrowser.DownloadProgress)
		do(t, ctx, chromedp.Click(chromedp.CSS(`nav a[href="/portal/exports"]`)))
		waitFor(t, ctx, heading("Exports"))
		do(t, ctx,
			chromedp.Click(chromedp.CSS(`input[name=format][value="raw-json"]`)),
			chromedp.Click(chromedp.CSS(`form[data-download] button[type=submit]`)),
		)
		var file string
		for ev, err := range progress {
			require.NoError(t, err)
			if ev.State == cdpbrowser.DownloadProgressStateCompleted {
				file = filepath.Join(dir, ev.GUID)
				break
			}
			require.NotEqual(t, cdpbrowser.DownloadProgressStateCanceled, ev.State)
		}
		waitFor(t, ctx, pageSays("Downloaded "))
		data, err := os.ReadFile(file)
		require.NoError(t, err)
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err, "the download is the export's ZIP archive")
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
		}
		require.NotEmpty(t, names)
		require.Contains(t, strings.Join(names, " "), "hh-1")
	})
}

func TestBrowserPhoneLayout(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	seedConflict(t, env)
	ctx := newTab(t)
	do(t, ctx, chromedp.EmulateViewport(390, 844))
	signInWithBrowser(t, ctx, env, "admin", servertest.AdminPassword)
	for _, path := range []string{"/portal", "/portal/observations", "/portal/observations/record?id=hh-1",
		"/portal/devices", "/portal/users", "/portal/quarantine", "/portal/bundles", "/portal/attachments", "/portal/exports",
		"/portal/reset", "/portal/account"} {
		do(t, ctx, chromedp.Navigate(env.HTTP.URL+path))
		waitFor(t, ctx, `document.readyState === "complete" && document.querySelector("h1")`)
		require.True(t, eval[bool](t, ctx, `document.documentElement.scrollWidth <= window.innerWidth`), "%s fits a phone's width (wide tables scroll inside their box)", path)
	}
}

func TestBrowserReadOnlyUser(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	env.CreateUser("viewer", "read-only")
	ctx := newTab(t)
	signInWithBrowser(t, ctx, env, "viewer", "pw-viewer")
	require.False(t, eval[bool](t, ctx, `!!document.querySelector('nav a[href="/portal/users"]')`), "admin pages are not offered")
	do(t, ctx, chromedp.Navigate(env.HTTP.URL+"/portal/users"))
	waitFor(t, ctx, pageSays("Your role does not allow this"))
	// Signing out ends the session for good.
	do(t, ctx, chromedp.Navigate(env.HTTP.URL+"/portal"), chromedp.Click(chromedp.CSS(`form[action="/portal/logout"] button`)))
	waitFor(t, ctx, pageSays("You are signed out."))
	do(t, ctx, chromedp.Navigate(env.HTTP.URL+"/portal/observations"))
	waitFor(t, ctx, `location.pathname === "/portal/login"`)
}

// bundleZip builds a small app bundle with one form, the layout the contract describes.
func bundleZip(t *testing.T, form string) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	files := map[string]string{
		"app/index.html":                 "<!doctype html><title>Field app</title>",
		"forms/" + form + "/schema.json": `{"type":"object","properties":{"size":{"type":"integer"},"head":{"type":"string"}}}`,
		"forms/" + form + "/ui.json":     `{"type":"VerticalLayout","elements":[{"type":"Control","scope":"#/properties/size"},{"type":"Control","scope":"#/properties/head"}]}`,
	}
	for name, content := range files {
		w, err := zw.Create(name)
		require.NoError(t, err)
		_, err = w.Write([]byte(content))
		require.NoError(t, err)
	}
	require.NoError(t, zw.Close())
	return buf.Bytes()
}
