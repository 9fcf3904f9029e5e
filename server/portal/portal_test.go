package portal_test

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"html"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/cookiejar"
	"net/textproto"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/db/dbtest"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/authlimit"
	"github.com/opendataensemble/synkronus/server/servertest"
)

// browser is a cookie-keeping HTTP client that reads the portal's pages as a browser
// without script would.
type browser struct {
	t    *testing.T
	env  *servertest.Env
	http *http.Client
	// page is the body of the last page read; its forms' synchronizer token is reused.
	page string
	// header is sent with every request.
	header http.Header
}

func newBrowser(t *testing.T, env *servertest.Env) *browser {
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	return &browser{t: t, env: env, http: &http.Client{Jar: jar}, header: http.Header{}}
}

type page struct {
	status int
	header http.Header
	body   string
	// url is where the browser ended up after redirects.
	url string
}

func (b *browser) do(req *http.Request) page {
	b.t.Helper()
	for k, v := range b.header {
		req.Header[k] = v
	}
	res, err := b.http.Do(req)
	require.NoError(b.t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(b.t, err)
	p := page{status: res.StatusCode, header: res.Header, body: string(body), url: res.Request.URL.RequestURI()}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		b.page = p.body
	}
	return p
}

func (b *browser) get(path string) page {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, b.env.HTTP.URL+path, nil)
	require.NoError(b.t, err)
	return b.do(req)
}

// post submits a form; the synchronizer token of the last page read is added unless the
// form sets csrf itself.
func (b *browser) post(path string, form url.Values) page {
	b.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	if _, set := form["csrf"]; !set {
		form.Set("csrf", b.csrf())
	}
	req, err := http.NewRequest(http.MethodPost, b.env.HTTP.URL+path, strings.NewReader(form.Encode()))
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return b.do(req)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) csrf() string {
	m := csrfInput.FindStringSubmatch(b.page)
	if m == nil {
		return ""
	}
	return html.UnescapeString(m[1])
}

func (b *browser) signIn(username, password string) page {
	b.t.Helper()
	b.get("/portal/login")
	return b.post("/portal/login", url.Values{"username": {username}, "password": {password}, "csrf": {b.csrf()}})
}

func (b *browser) cookie(name string) *http.Cookie {
	u, _ := url.Parse(b.env.HTTP.URL + "/portal")
	for _, c := range b.http.Jar.Cookies(u) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// text is a page's visible text with tags dropped and spaces folded, for assertions.
func text(p page) string {
	s := regexp.MustCompile(`(?s)<[^>]*>`).ReplaceAllString(p.body, " ")
	return strings.Join(strings.Fields(html.UnescapeString(s)), " ")
}

var transmissions atomic.Int64

// push stores observations through the sync API, as a device would.
func push(t *testing.T, env *servertest.Env, token, client string, records ...string) {
	t.Helper()
	body := fmt.Sprintf(`{"transmission_id":"t%d","client_id":%q,"records":[%s]}`, transmissions.Add(1), client, strings.Join(records, ","))
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/sync/push", Token: token, Body: body})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
}

func observation(id, formType, updatedAt, data, author string) string {
	return fmt.Sprintf(`{"observation_id":%q,"form_type":%q,"form_version":"1","data":%s,"created_at":%q,"updated_at":%q,"deleted":false,"author":%q}`,
		id, formType, data, updatedAt, updatedAt, author)
}

func TestPortalSignInAndOut(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	b := newBrowser(t, env)

	p := b.get("/portal/observations?form_type=x")
	require.Equal(t, http.StatusOK, p.status)
	require.Equal(t, "/portal/login?next="+url.QueryEscape("/portal/observations?form_type=x"), p.url, "a signed-out browser is sent to the sign-in form")
	require.Contains(t, text(p), "Sign in")

	p = b.post("/portal/login", url.Values{"username": {"admin"}, "password": {"wrong"}, "next": {"/portal/observations?form_type=x"}})
	require.Equal(t, http.StatusUnauthorized, p.status)
	require.Contains(t, text(p), "invalid username or password", "the API's own answer is shown")
	require.Nil(t, b.cookie("synkronus_session"))

	p = b.post("/portal/login", url.Values{"username": {"admin"}, "password": {servertest.AdminPassword}, "next": {"/portal/observations?form_type=x"}})
	require.Equal(t, http.StatusOK, p.status)
	require.Equal(t, "/portal/observations?form_type=x", p.url, "back where the browser wanted to go")
	require.Contains(t, text(p), "admin admin Sign out")

	ck := b.cookie("synkronus_session")
	require.NotNil(t, ck)
	var sessions, refresh int
	require.NoError(t, env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM portal_sessions").Scan(&sessions))
	require.NoError(t, env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM refresh_tokens").Scan(&refresh))
	require.Equal(t, 1, sessions)
	require.Zero(t, refresh, "the portal keeps no refresh token of its login")

	p = b.post("/portal/logout", nil)
	require.Equal(t, "/portal/login", p.url)
	require.Contains(t, text(p), "You are signed out.")
	require.Nil(t, b.cookie("synkronus_session"))
	require.NoError(t, env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM portal_sessions").Scan(&sessions))
	require.Zero(t, sessions, "signing out deletes the session")
	// The old cookie value is worthless now.
	b.http.Jar.SetCookies(mustURL(env.HTTP.URL+"/portal"), []*http.Cookie{ck})
	require.Equal(t, "/portal/login", b.get("/portal").url)
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

func TestPortalCookieAndSecurityHeaders(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	res, err := env.HTTP.Client().PostForm(env.HTTP.URL+"/portal/login", nil)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusForbidden, res.StatusCode, "a sign-in form without its token is refused")

	b := newBrowser(t, env)
	b.get("/portal/login")
	form := url.Values{"username": {"admin"}, "password": {servertest.AdminPassword}, "csrf": {b.csrf()}}
	req, err := http.NewRequest(http.MethodPost, env.HTTP.URL+"/portal/login", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(b.cookie("synkronus_login"))
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	res, err = noFollow.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusSeeOther, res.StatusCode)
	var session *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == "synkronus_session" {
			session = c
		}
	}
	require.NotNil(t, session)
	require.True(t, session.HttpOnly)
	require.Equal(t, http.SameSiteStrictMode, session.SameSite)
	require.Equal(t, "/portal", session.Path)
	require.False(t, session.Secure, "plain HTTP without PUBLIC_URL https")
	require.Equal(t, int((12 * time.Hour).Seconds()), session.MaxAge)
	b.http.Jar.SetCookies(mustURL(env.HTTP.URL+"/portal"), []*http.Cookie{session})

	for _, path := range []string{"/portal", "/portal/login", "/portal/users", "/portal/observations", "/portal/exports", "/portal/reset", "/portal/account", "/portal/devices", "/portal/bundles"} {
		p := b.get(path)
		require.Equal(t, http.StatusOK, p.status, path)
		require.Equal(t, "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
			p.header.Get("Content-Security-Policy"), path)
		require.Equal(t, "DENY", p.header.Get("X-Frame-Options"), path)
		require.Equal(t, "nosniff", p.header.Get("X-Content-Type-Options"), path)
		require.Equal(t, "no-store", p.header.Get("Cache-Control"), path)
		require.NotRegexp(t, `<script(?:\s[^>]*)?>[^<]`, p.body, "%s: no inline script", path)
		require.NotContains(t, p.body, "<style", "%s: no inline style element", path)
		require.NotRegexp(t, `\sstyle=`, p.body, "%s: no style attribute", path)
		require.NotRegexp(t, `\son[a-z]+=`, p.body, "%s: no inline event handler", path)
	}
	for _, asset := range regexp.MustCompile(`(?:src|href)="(/portal/static/[^"]+)"`).FindAllStringSubmatch(b.get("/portal").body, -1) {
		res, err := env.HTTP.Client().Get(env.HTTP.URL + html.UnescapeString(asset[1]))
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode, asset[1])
		require.Contains(t, res.Header.Get("Cache-Control"), "immutable", asset[1])
		require.Equal(t, "nosniff", res.Header.Get("X-Content-Type-Options"))
	}
}

func TestPortalSecureCookieBehindHTTPS(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) { o.Portal.SecureCookies = true })
	res, err := env.HTTP.Client().Get(env.HTTP.URL + "/portal/login")
	require.NoError(t, err)
	res.Body.Close()
	require.NotEmpty(t, res.Cookies())
	for _, c := range res.Cookies() {
		require.True(t, c.Secure, c.Name)
	}
}

func TestPortalRefusesFormsWithoutItsToken(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)
	b.get("/portal/users")
	create := func(name string) url.Values {
		return url.Values{"username": {name}, "password": {"pw-" + name}, "role": {"read-only"}}
	}

	form := create("nocsrf")
	form.Set("csrf", "")
	p := b.post("/portal/users", form)
	require.Equal(t, http.StatusForbidden, p.status)
	require.Contains(t, text(p), "did not come from this portal")

	form = create("wrongcsrf")
	form.Set("csrf", "x"+b.csrf())
	require.Equal(t, http.StatusForbidden, b.post("/portal/users", form).status)

	b.get("/portal/users")
	b.header.Set("Sec-Fetch-Site", "cross-site")
	require.Equal(t, http.StatusForbidden, b.post("/portal/users", create("crosssite")).status, "a request from another site is refused even with the token")
	b.header.Del("Sec-Fetch-Site")

	// A token from another session is no good either.
	other := newBrowser(t, env)
	other.signIn("admin", servertest.AdminPassword)
	form = create("othersession")
	form.Set("csrf", other.csrf())
	require.Equal(t, http.StatusForbidden, b.post("/portal/users", form).status)

	users := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: env.AdminToken()})
	for _, name := range []string{"nocsrf", "wrongcsrf", "crosssite", "othersession"} {
		require.NotContains(t, string(users.Body), name)
	}

	b.get("/portal/users")
	p = b.post("/portal/users", create("withcsrf"))
	require.Equal(t, "/portal/users", p.url)
	require.Contains(t, text(p), `User "withcsrf" was created with the role read-only.`)
}

func TestPortalSessionEndsWhenTheAccountChanges(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	signedIn := func(name string) *browser {
		env.CreateUser(name, "admin")
		b := newBrowser(t, env)
		require.Equal(t, "/portal", b.signIn(name, "pw-"+name).url)
		return b
	}
	changes := map[string]func(name string){
		"password reset": func(name string) {
			env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/reset-password", Token: admin,
				Body: map[string]string{"username": name, "newPassword": "something-else"}})
		},
		"role change": func(name string) {
			env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/" + name, Token: admin, Body: map[string]string{"role": "read-only"}})
		},
		"deletion": func(name string) {
			env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/users/" + name, Token: admin})
		},
	}
	browsers := map[string]*browser{}
	for what := range changes {
		browsers[what] = signedIn(strings.ReplaceAll(what, " ", "-"))
	}
	for what, change := range changes {
		name := strings.ReplaceAll(what, " ", "-")
		change(name)
		p := browsers[what].get("/portal/users")
		require.Equal(t, "/portal/login?next=%2Fportal%2Fusers", p.url, what)
		if what != "deletion" { // a deleted user's sessions go with the account
			require.Contains(t, text(p), "You have been signed out", what)
		}
		require.Nil(t, browsers[what].cookie("synkronus_session"), what)
	}
}

func TestPortalSessionExpires(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) { o.CleanupInterval = 50 * time.Millisecond })
	for _, age := range []string{
		"last_seen_at = now() - interval '61 minutes'", // idle longer than the default hour
		"expires_at = now() - interval '1 second'",     // past its absolute age
	} {
		b := newBrowser(t, env)
		b.signIn("admin", servertest.AdminPassword)
		require.Equal(t, "/portal", b.get("/portal").url)
		_, err := env.Pool.Exec(context.Background(), "UPDATE portal_sessions SET "+age)
		require.NoError(t, err)
		require.Equal(t, "/portal/login", b.get("/portal").url, age)
	}
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, env.Pool.QueryRow(context.Background(), "SELECT count(*) FROM portal_sessions").Scan(&n))
		return n == 0
	}, 10*time.Second, 50*time.Millisecond, "the cleanup removes expired sessions")
}

func TestPortalLoginIsThrottledLikeTheAPI(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) {
		o.LoginLimits = &authlimit.Config{PerAddrAccount: authlimit.Window{Failures: 3, Period: time.Hour}}
	})
	b := newBrowser(t, env)
	for range 3 {
		b.get("/portal/login")
		require.Equal(t, http.StatusUnauthorized, b.post("/portal/login", url.Values{"username": {"admin"}, "password": {"guess"}}).status)
	}
	b.get("/portal/login")
	p := b.post("/portal/login", url.Values{"username": {"admin"}, "password": {servertest.AdminPassword}})
	require.Equal(t, http.StatusTooManyRequests, p.status)
	require.NotEmpty(t, p.header.Get("Retry-After"))
	require.Contains(t, text(p), "too many failed attempts")
	// The API counts the portal's failures: it refuses the same address too.
	res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/auth/login", Body: map[string]string{"username": "admin", "password": servertest.AdminPassword}})
	require.Equal(t, http.StatusTooManyRequests, res.Status)
}

func TestPortalUsers(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)

	p := b.get("/portal/users")
	require.Contains(t, text(p), "admin you last admin")
	require.Contains(t, text(p), "the last admin cannot be deleted or given another role")

	p = b.post("/portal/users", url.Values{"username": {"amina"}, "password": {"first-password"}, "role": {"read-write"}})
	require.Contains(t, text(p), `User "amina" was created with the role read-write.`)
	p = b.post("/portal/users", url.Values{"username": {"amina"}, "password": {"x"}, "role": {"read-only"}})
	require.Equal(t, http.StatusConflict, p.status)
	require.Contains(t, text(p), `a user named "amina" already exists`)
	require.Contains(t, p.body, `value="amina"`, "the refused form keeps what was typed")

	p = b.post("/portal/users/role", url.Values{"username": {"amina"}, "role": {"admin"}})
	require.Contains(t, text(p), "amina now has the role admin.")
	require.NotContains(t, p.body, ">last admin</span>", "with two admins neither is the last")

	p = b.post("/portal/users/password", url.Values{"username": {"amina"}, "password": {"second-password"}})
	require.Contains(t, text(p), "The password of amina was reset")
	env.Login("amina", "second-password")

	p = b.post("/portal/users/delete", url.Values{"username": {"amina"}})
	require.Contains(t, text(p), "User amina was deleted.")
	require.NotContains(t, p.body, `<th scope="row">amina`)

	// The last admin rule is the API's: a hand-made form still gets its explanation.
	p = b.post("/portal/users/role", url.Values{"username": {"admin"}, "role": {"read-only"}})
	require.Equal(t, http.StatusConflict, p.status)
	require.Contains(t, text(p), "the last admin cannot be deleted or demoted: make another user admin first")
	p = b.post("/portal/users/delete", url.Values{"username": {"admin"}})
	require.Equal(t, http.StatusConflict, p.status)
	require.Contains(t, text(p), "the last admin cannot be deleted or demoted")
}

func TestPortalChangeOwnPassword(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	env.CreateUser("kofi", "read-only")
	b := newBrowser(t, env)
	b.signIn("kofi", "pw-kofi")
	b.get("/portal/account")
	p := b.post("/portal/account/password", url.Values{"current_password": {"wrong"}, "new_password": {"new-secret"}})
	require.Equal(t, http.StatusUnauthorized, p.status)
	require.Contains(t, text(p), "the current password is wrong")
	require.Equal(t, "/portal/account", b.get("/portal/account").url, "a wrong current password does not end the session")

	p = b.post("/portal/account/password", url.Values{"current_password": {"pw-kofi"}, "new_password": {"new-secret"}})
	require.Equal(t, "/portal/login", p.url)
	require.Contains(t, text(p), "Your password was changed. Sign in with the new password.")
	require.Equal(t, "/portal", b.signIn("kofi", "new-secret").url)
}

func TestPortalReadOnlyUserSeesButCannotChange(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	env.CreateUser("viewer", "read-only")
	b := newBrowser(t, env)
	b.signIn("viewer", "pw-viewer")

	p := b.get("/portal")
	require.Equal(t, http.StatusOK, p.status)
	require.NotContains(t, p.body, `href="/portal/users"`, "no navigation to admin pages")
	require.NotContains(t, p.body, `href="/portal/reset"`)
	require.Equal(t, http.StatusOK, b.get("/portal/observations").status)

	p = b.get("/portal/users")
	require.Equal(t, http.StatusForbidden, p.status)
	require.Contains(t, text(p), "Your role does not allow this: the role read-only may not call this operation")

	b.get("/portal/account")
	for path, form := range map[string]url.Values{
		"/portal/users":      {"username": {"intruder"}, "password": {"pw"}, "role": {"admin"}},
		"/portal/users/role": {"username": {"viewer"}, "role": {"admin"}},
		"/portal/reset":      {"confirm": {"RESET_REPOSITORY"}},
	} {
		p := b.post(path, form)
		require.Equal(t, http.StatusForbidden, p.status, path)
		require.Contains(t, text(p), "may not call this operation", path)
		b.get("/portal/account")
	}
	var users []api.UserListItem
	env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: env.AdminToken()}).JSON(t, &users)
	require.Len(t, users, 2, "no user was created")
	require.Equal(t, api.RoleReadOnly, users[1].Role)
}

func TestPortalObservations(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("collector", "read-write")
	push(t, env, token, "tablet-7",
		observation("hh-1", "household", "2026-02-01T09:00:00Z", `{"size":4,"head":"Awa"}`, "Awa Ndiaye"),
		observation("cl-1", "clinic", "2026-02-02T09:00:00Z", `{"beds":12}`, "Jon"),
	)
	push(t, env, token, "tablet-7", observation("hh-1", "household", "2026-02-03T09:00:00Z", `{"size":5,"head":"Awa"}`, "Awa Ndiaye"))
	push(t, env, token, "tablet-8", observation("hh-1", "household", "2026-02-02T12:00:00Z", `{"size":3,"head":"Awa"}`, "Awa Ndiaye")) // stale: a conflict

	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)
	p := b.get("/portal")
	require.Contains(t, text(p), "Observations 2 stored")
	require.Contains(t, p.body, `<svg viewBox="0 0 720 220"`, "the timeline is drawn on the server")
	require.Contains(t, p.body, `href="/portal/observations?form_type=household"`)

	p = b.get("/portal/observations")
	require.Contains(t, text(p), "hh-1 household v1 Awa Ndiaye")
	require.Contains(t, text(p), "cl-1 clinic")
	p = b.get("/portal/observations?form_type=clinic")
	require.NotContains(t, text(p), "hh-1")
	p = b.get("/portal/observations?author=awa&conflicts=on")
	require.Contains(t, text(p), "hh-1")
	require.Contains(t, text(p), "conflict")
	require.NotContains(t, text(p), "cl-1")
	p = b.get("/portal/observations?from=2026-13-01")
	require.Equal(t, http.StatusBadRequest, p.status)
	require.Contains(t, text(p), "Dates must be written as YYYY-MM-DD")

	p = b.get("/portal/observations/record?id=hh-1")
	require.Equal(t, http.StatusOK, p.status)
	body := text(p)
	require.Contains(t, body, "Observation hh-1")
	require.Contains(t, body, "3 revisions, newest first")
	require.Contains(t, body, "1 revision arrived in conflict")
	require.Regexp(t, `rejected conflict .* from collector on tablet-8`, body)
	require.Contains(t, p.body, "&#34;size&#34;: 5", "the current data, pretty-printed")

	p = b.get("/portal/observations/record?id=" + url.QueryEscape("no/such id"))
	require.Equal(t, http.StatusNotFound, p.status)
	require.Contains(t, text(p), `no observation with id "no/such id"`)
}

func TestPortalDevices(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("collector", "read-write")
	push(t, env, token, "tablet-7", observation("hh-1", "household", "2026-02-01T09:00:00Z", `{}`, "A"))
	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)
	require.Eventually(t, func() bool {
		return strings.Contains(text(b.get("/portal/devices")), "collector read-write tablet-7")
	}, 10*time.Second, 100*time.Millisecond, "presence is recorded in the background")
	p := b.get("/portal/devices")
	require.Regexp(t, `collector read-write tablet-7 \S+ \S+ UTC \(just now\) 1 —`, text(p), "last seen, data version, no bundle yet")
	require.Contains(t, text(p), "admin admin web-portal", "the portal's own calls are a client of their user")
}

func TestPortalRepositoryReset(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("collector", "read-write")
	push(t, env, token, "tablet-7", observation("hh-1", "household", "2026-02-01T09:00:00Z", `{}`, "A"))
	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)
	p := b.get("/portal/reset")
	require.Contains(t, text(p), "This erases every observation (1 stored)")
	p = b.post("/portal/reset", url.Values{"confirm": {"reset"}})
	require.Equal(t, http.StatusBadRequest, p.status)
	require.Contains(t, text(p), "Type RESET_REPOSITORY exactly to confirm; nothing was erased.")
	require.Contains(t, text(b.get("/portal")), "Observations 1 stored")

	b.get("/portal/reset")
	p = b.post("/portal/reset", url.Values{"confirm": {"RESET_REPOSITORY"}})
	require.Equal(t, "/portal", p.url)
	require.Contains(t, text(p), "clients must resync from generation 2", "the API's own message")
	require.Contains(t, text(p), "Observations 0 stored")
}

func TestRootSendsBrowsersToThePortal(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	noFollow := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for accept, toPortal := range map[string]bool{
		"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8": true, // a browser
		"text/html":                         true,
		"application/json, text/html;q=0.5": false,
		"*/*":                               false, // curl
		"":                                  false,
		"application/json":                  false,
	} {
		req, err := http.NewRequest(http.MethodGet, env.HTTP.URL+"/", nil)
		require.NoError(t, err)
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := noFollow.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		if toPortal {
			require.Equal(t, http.StatusSeeOther, res.StatusCode, accept)
			require.Equal(t, "/portal", res.Header.Get("Location"))
		} else {
			require.NotEqual(t, http.StatusSeeOther, res.StatusCode, accept)
		}
	}
	// The root paths of older clients are mapped onto /api; the portal's are not.
	res, err := noFollow.Get(env.HTTP.URL + "/portal/login")
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	require.True(t, strings.HasPrefix(res.Header.Get("Content-Type"), "text/html"))
}

// postMultipart submits a form with a file the way a browser does: fields first, in order.
func (b *browser) postMultipart(path string, fields [][2]string, fileField, fileName string, content []byte) page {
	b.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, f := range fields {
		require.NoError(b.t, mw.WriteField(f[0], f[1]))
	}
	w, err := mw.CreateFormFile(fileField, fileName)
	require.NoError(b.t, err)
	_, err = w.Write(content)
	require.NoError(b.t, err)
	require.NoError(b.t, mw.Close())
	req, err := http.NewRequest(http.MethodPost, b.env.HTTP.URL+path, &buf)
	require.NoError(b.t, err)
	req.Header.Set("Content-Type", mw.FormDataContentType())
	return b.do(req)
}

func TestPortalBundleUpload(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)
	b.get("/portal/bundles")
	csrf := b.csrf()

	p := b.postMultipart("/portal/bundles", nil, "bundle", "bundle.zip", bundleZip(t, "household"))
	require.Equal(t, http.StatusForbidden, p.status, "an upload without the form's token is refused")
	p = b.postMultipart("/portal/bundles", [][2]string{{"csrf", csrf}}, "other", "", nil)
	require.Equal(t, http.StatusBadRequest, p.status, "a file input left empty sends no file name")
	require.Contains(t, text(p), "The upload holds no file")

	b.get("/portal/bundles")
	p = b.postMultipart("/portal/bundles", [][2]string{{"csrf", b.csrf()}}, "bundle", "broken.zip", []byte("not a zip"))
	require.Equal(t, http.StatusBadRequest, p.status)
	require.Contains(t, p.body, `class="problem-list"`, "the API's validation report is shown, problem by problem")
	require.Contains(t, p.body, "<li>the upload is not a readable ZIP archive", "a problem of the whole archive names no file")

	b.get("/portal/bundles")
	p = b.postMultipart("/portal/bundles", [][2]string{{"csrf", b.csrf()}}, "bundle", "bundle.zip", bundleZip(t, "household"))
	require.Equal(t, "/portal/bundles", p.url, "%s", text(p))
	require.Contains(t, text(p), "Version 0001 was uploaded and validated (3 files). Activate it to send it to devices.")
	p = b.post("/portal/bundles/activate", url.Values{"version": {"0001"}})
	require.Contains(t, text(p), "Version 0001 is now active")
	require.Contains(t, text(p), "Forms of the active version")

	// A second version, activated on upload, then compared and rolled back.
	p = b.postMultipart("/portal/bundles", [][2]string{{"csrf", b.csrf()}, {"activate", "on"}}, "bundle", "bundle.zip", bundleZip(t, "clinic"))
	require.Contains(t, text(p), "Version 0002 was uploaded and validated (3 files). It is active")
	p = b.get("/portal/bundles/changes?current=0001&target=0002")
	require.Equal(t, http.StatusOK, p.status)
	require.Contains(t, text(p), "Changes from 0001 to 0002")
	require.Contains(t, text(p), "new form clinic")
	require.Contains(t, text(p), "removed form household")
	p = b.post("/portal/bundles/activate", url.Values{"version": {"0001"}})
	require.Contains(t, text(p), "Version 0001 is now active")
	p = b.post("/portal/bundles/activate", url.Values{"version": {"9999"}})
	require.Equal(t, http.StatusNotFound, p.status)
}

func TestPortalExportDownloads(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("collector", "read-write")
	push(t, env, token, "tablet-7", observation("hh-1", "household", "2026-02-01T09:00:00Z", `{"size":4}`, "A"))
	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)
	require.Contains(t, text(b.get("/portal/exports")), "1 observations are stored")
	require.Equal(t, http.StatusBadRequest, b.get("/portal/exports/download?format=../../etc").status)

	download := func(query string) []string {
		req, err := http.NewRequest(http.MethodGet, env.HTTP.URL+"/portal/exports/download?"+query, nil)
		require.NoError(t, err)
		res, err := b.http.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode, query)
		require.Equal(t, "application/zip", res.Header.Get("Content-Type"))
		require.Contains(t, res.Header.Get("Content-Disposition"), "attachment")
		require.Equal(t, "no-store", res.Header.Get("Cache-Control"))
		data, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		require.NoError(t, err, "the download is the API's archive, streamed through")
		var names []string
		for _, f := range zr.File {
			names = append(names, f.Name)
		}
		return names
	}
	push(t, env, token, "tablet-7", observation("cl-1", "clinic", "2026-02-01T09:00:00Z", `{"beds":2}`, "B"))
	require.ElementsMatch(t, []string{"clinic.csv", "household.csv"}, download("format=csv"))
	require.Equal(t, []string{"household.parquet"}, download("format=parquet&form_type=household"))
	names := download("format=raw-json&form_type=clinic&form_type=household")
	require.Len(t, names, 2, "%v", names)
}

func TestPortalQuarantine(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("collector", "read-write")
	bad := func(id string) string {
		return fmt.Sprintf(`{"observation_id":%q,"form_type":"household","form_version":"1","data":{"size":4},"created_at":"2026-02-01T09:00:00Z","updated_at":"last tuesday","deleted":false}`, id)
	}
	push(t, env, token, "tablet-7", bad("hh-bad-1"), bad("hh-bad-2"))

	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)
	p := b.get("/portal/quarantine")
	require.Equal(t, http.StatusOK, p.status)
	require.Contains(t, text(p), "collector on tablet-7")
	require.Contains(t, text(p), "hh-bad-1")
	ids := regexp.MustCompile(`/portal/quarantine/record\?id=(\d+)`).FindAllStringSubmatch(p.body, -1)
	require.Len(t, ids, 2)

	p = b.get("/portal/quarantine/record?id=" + ids[0][1])
	require.Contains(t, text(p), `"updated_at": "last tuesday"`, "the record as the device sent it")
	p = b.post("/portal/quarantine/retry", url.Values{"id": {ids[0][1]}})
	require.Equal(t, http.StatusUnprocessableEntity, p.status, "as sent it still cannot be stored")
	p = b.post("/portal/quarantine/retry", url.Values{"id": {ids[0][1]}, "record": {"{not json"}})
	require.Equal(t, http.StatusBadRequest, p.status)
	require.Contains(t, p.body, "{not json", "the typed copy is kept")

	fixed := strings.Replace(bad("hh-bad-1"), "last tuesday", "2026-02-01T10:00:00Z", 1)
	p = b.post("/portal/quarantine/retry", url.Values{"id": {ids[0][1]}, "record": {fixed}})
	require.Equal(t, "/portal/quarantine", p.url, "%s", text(p))
	require.Contains(t, text(p), "Observation hh-bad-1 was stored")
	require.Contains(t, text(b.get("/portal/observations")), "hh-bad-1")

	b.get("/portal/quarantine/record?id=" + ids[1][1])
	p = b.post("/portal/quarantine/discard", url.Values{"id": {ids[1][1]}})
	require.Contains(t, text(p), "Quarantined record "+ids[1][1]+" was discarded.")
	require.Contains(t, text(p), "No record is in quarantine")
}

// uploadAttachment stores a file through the API, as a device does.
func uploadAttachment(t *testing.T, env *servertest.Env, token, id, contentType string, content []byte) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name="file"; filename=%q`, id))
	h.Set("Content-Type", contentType)
	w, err := mw.CreatePart(h)
	require.NoError(t, err)
	_, err = w.Write(content)
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	res := env.Do(servertest.Request{Method: http.MethodPut, Path: "/api/attachments/" + id, Token: token, Body: buf.Bytes(),
		Header: map[string]string{"Content-Type": mw.FormDataContentType()}})
	require.Equal(t, http.StatusOK, res.Status, "%s", res.Body)
}

func pngImage(t *testing.T) []byte {
	img := image.NewRGBA(image.Rect(0, 0, 4, 3))
	img.Set(1, 1, color.RGBA{R: 200, A: 255})
	var buf bytes.Buffer
	require.NoError(t, png.Encode(&buf, img))
	return buf.Bytes()
}

func TestPortalAttachments(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("collector", "read-write")
	photo := pngImage(t)
	uploadAttachment(t, env, token, "visit-1.png", "image/png", photo)
	uploadAttachment(t, env, token, "page.html", "text/html", []byte(`<script src="/portal/attachments/file?id=x.js"></script>`))
	uploadAttachment(t, env, token, "drawing.svg", "image/svg+xml", []byte(`<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>`))

	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)
	p := b.get("/portal/attachments")
	require.Equal(t, http.StatusOK, p.status)
	require.Contains(t, p.body, `<img src="/portal/attachments/file?id=visit-1.png"`, "images get a preview")
	require.NotContains(t, p.body, `<img src="/portal/attachments/file?id=drawing.svg"`, "an SVG may hold script: no preview")
	require.Contains(t, text(p), "drawing.svg")
	p = b.get("/portal/attachments?kind=image")
	require.Contains(t, text(p), "visit-1.png")
	require.NotContains(t, text(p), "page.html")
	p = b.get("/portal/attachments?contains=page")
	require.Contains(t, text(p), "page.html")
	require.NotContains(t, text(p), "visit-1.png")

	p = b.get("/portal/attachments/file?id=visit-1.png")
	require.Equal(t, http.StatusOK, p.status)
	require.Equal(t, "image/png", p.header.Get("Content-Type"))
	require.Equal(t, "inline", p.header.Get("Content-Disposition"))
	require.Equal(t, string(photo), p.body)
	require.Contains(t, p.header.Get("Content-Security-Policy"), "sandbox")
	for _, id := range []string{"page.html", "drawing.svg"} {
		p = b.get("/portal/attachments/file?id=" + id)
		require.Equal(t, http.StatusOK, p.status, id)
		require.Equal(t, "application/octet-stream", p.header.Get("Content-Type"), "%s: never rendered in the portal's origin", id)
		require.Contains(t, p.header.Get("Content-Disposition"), "attachment", id)
		require.Contains(t, p.header.Get("Content-Security-Policy"), "sandbox", id)
	}
	p = b.get("/portal/attachments/file?id=visit-1.png&download=1")
	require.Contains(t, p.header.Get("Content-Disposition"), `attachment; filename=visit-1.png`)
	p = b.get("/portal/attachments/file?id=missing.png")
	require.Equal(t, http.StatusNotFound, p.status)
	require.Contains(t, text(p), "no attachment with id missing.png")
}

func TestPortalDatabaseOutageAnswers503(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	b := newBrowser(t, env)
	b.signIn("admin", servertest.AdminPassword)

	// The database refuses every connection, as during a restart.
	name := env.Pool.Config().ConnConfig.Database
	admin, err := pgx.Connect(t.Context(), dbtest.ServerURL())
	require.NoError(t, err)
	t.Cleanup(func() { _ = admin.Close(context.Background()) }) // after the database is opened again
	allow := func(yes bool) {
		_, err := admin.Exec(context.WithoutCancel(t.Context()), fmt.Sprintf("ALTER DATABASE %s ALLOW_CONNECTIONS %t", pgx.Identifier{name}.Sanitize(), yes))
		require.NoError(t, err)
	}
	allow(false)
	t.Cleanup(func() { allow(true) })
	_, err = admin.Exec(t.Context(), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
	require.NoError(t, err)

	p := b.get("/portal/observations")
	require.Equal(t, http.StatusServiceUnavailable, p.status, "%s", text(p))
	require.Equal(t, "5", p.header.Get("Retry-After"))
	require.Contains(t, text(p), "The database is unavailable; try again in a few seconds.")
	for _, internal := range []string{name, "SQLSTATE", "pgx", "dial", "postgres"} {
		require.NotContains(t, strings.ToLower(p.body), strings.ToLower(internal))
	}
	require.Equal(t, "/portal/observations", p.url, "the session is kept for when the database is back")
}
