package portal

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static/*.css static/*.js static/*.svg static/*.txt
var staticFS embed.FS

// view is what every page template receives.
type view struct {
	Title string
	// Nav names the navigation entry of this page.
	Nav     string
	S       *session
	Flash   *flash
	Version string
	// Problem is a refused form's explanation, shown above the page.
	Problem *apiError
	// Data is the page's own content.
	Data any
}

// flash is a one-time notice carried across a redirect in a short-lived cookie.
type flash struct {
	Kind    string
	Message string
}

const (
	flashOK    = "ok"
	flashError = "error"
)

func (p *Portal) flash(c echo.Context, kind, msg string) {
	c.SetCookie(p.cookie(c, flashCookie, url.QueryEscape(kind+":"+msg), time.Minute))
}

// takeFlash reads the pending notice and clears it.
func (p *Portal) takeFlash(c echo.Context) *flash {
	ck, err := c.Cookie(flashCookie)
	if err != nil || ck.Value == "" {
		return nil
	}
	c.SetCookie(p.cookie(c, flashCookie, "", -1))
	v, err := url.QueryUnescape(ck.Value)
	if err != nil {
		return nil
	}
	kind, msg, ok := strings.Cut(v, ":")
	if !ok || (kind != flashOK && kind != flashError) || len(msg) > 2000 {
		return nil
	}
	return &flash{Kind: kind, Message: msg}
}

// redirect answers a successful form with a notice shown on the page it leads to.
func (p *Portal) redirect(c echo.Context, to, notice string) error {
	if notice != "" {
		p.flash(c, flashOK, notice)
	}
	return c.Redirect(http.StatusSeeOther, to)
}

// pages holds one template set per page, each with the shared layout.
type pages struct {
	byName map[string]*template.Template
}

func parsePages() (*pages, error) {
	names, err := fs.Glob(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	pg := &pages{byName: map[string]*template.Template{}}
	for _, n := range names {
		base := path.Base(n)
		if base == "layout.html" {
			continue
		}
		t, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", n)
		if err != nil {
			return nil, err
		}
		pg.byName[strings.TrimSuffix(base, ".html")] = t
	}
	return pg, nil
}

// render writes a page. location is the page's own address: scripts that replaced the page
// in place (htmx) show it in the address bar, also after a form posted elsewhere.
func (p *Portal) render(c echo.Context, status int, name, location string, v view) error {
	t, ok := p.pages.byName[name]
	if !ok {
		return fmt.Errorf("no portal template %q", name)
	}
	v.Version = p.version
	if v.Flash == nil {
		v.Flash = p.takeFlash(c)
	}
	var buf bytes.Buffer
	if err := t.Execute(&buf, v); err != nil {
		return fmt.Errorf("error rendering portal page %s: %w", name, err)
	}
	h := c.Response().Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Vary", "Cookie")
	if location != "" {
		h.Set("HX-Push-Url", location)
	}
	return c.HTMLBlob(status, buf.Bytes())
}

// renderError shows an error page with a way back.
func (p *Portal) renderError(c echo.Context, s *session, status int, msg string) error {
	return p.render(c, status, "error", "", view{Title: http.StatusText(status), S: s, Data: msg})
}

var funcs = template.FuncMap{
	"when":    when,
	"ago":     ago,
	"preview": isPreviewable,
	"asset":   assetURL,
	"count":   count,
	"size":    size,
	"pretty":  pretty,
	"deref":   derefString,
	"flag":    func(b *bool) bool { return b != nil && *b },
	"sub":     func(a, b float64) float64 { return a - b },
	"roles":   func() []api.Role { return []api.Role{api.RoleReadOnly, api.RoleReadWrite, api.RoleAdmin} },
}

// when renders an instant as a <time> element in UTC; the portal's script rewrites it in
// the viewer's time zone. It takes time values or RFC 3339 text (shown as sent when it
// does not parse).
func when(v any) template.HTML {
	var t time.Time
	switch x := v.(type) {
	case time.Time:
		t = x
	case *time.Time:
		if x == nil {
			return ""
		}
		t = *x
	case string:
		parsed, err := time.Parse(time.RFC3339Nano, x)
		if err != nil {
			return template.HTML(html.EscapeString(x))
		}
		t = parsed
	case *string:
		if x == nil {
			return ""
		}
		return when(*x)
	default:
		return ""
	}
	if t.IsZero() {
		return ""
	}
	t = t.UTC()
	return template.HTML(fmt.Sprintf(`<time datetime="%s">%s</time>`, t.Format(time.RFC3339), t.Format("2006-01-02 15:04 UTC")))
}

// count formats an integer with thousands separators.
func count(v any) string {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	case *int64:
		if x == nil {
			return ""
		}
		n = *x
	}
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// size formats a byte count (int or int64) for people.
func size(v any) string {
	var n int64
	switch x := v.(type) {
	case int:
		n = int64(x)
	case int64:
		n = x
	}
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// pretty indents JSON for reading; text that is not JSON is shown as it is.
func pretty(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return string(raw)
	}
	return buf.String()
}

func derefString(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// assets maps each static file to the hash its URL carries, so browsers may keep it for
// good and still fetch a new build's copy.
var assets = func() map[string]string {
	m := map[string]string{}
	entries, err := staticFS.ReadDir("static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		b, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		m[e.Name()] = hex.EncodeToString(sum[:6])
	}
	return m
}()

func assetURL(name string) string {
	return Base + "/static/" + name + "?v=" + assets[name]
}

// serveStatic serves the embedded CSS, scripts and the vendored htmx.
func serveStatic(c echo.Context) error {
	name := c.Param("name")
	hash, ok := assets[name]
	if !ok {
		return echo.NewHTTPError(http.StatusNotFound)
	}
	b, err := staticFS.ReadFile("static/" + name)
	if err != nil {
		return err
	}
	h := c.Response().Header()
	h.Set("ETag", `"`+hash+`"`)
	if c.QueryParam("v") == hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if c.Request().Header.Get("If-None-Match") == `"`+hash+`"` {
		return c.NoContent(http.StatusNotModified)
	}
	ct := mime.TypeByExtension(path.Ext(name))
	if ct == "" {
		ct = "text/plain; charset=utf-8"
	}
	return c.Blob(http.StatusOK, ct, b)
}
