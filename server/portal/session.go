package portal

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/tokens"
)

// Cookie names. All are HttpOnly, SameSite=Strict and scoped to the portal's path.
const (
	sessionCookie = "synkronus_session"
	// loginCookie holds the synchronizer token of the sign-in form, which has no session yet.
	loginCookie = "synkronus_login"
	flashCookie = "synkronus_flash"
	// csrfField and csrfHeader carry a session's synchronizer token in forms and in
	// script-sent requests.
	csrfField  = "csrf"
	csrfHeader = "X-CSRF-Token"
	// callTokenTTL is how long the access token minted for one portal request lives.
	callTokenTTL = 2 * time.Minute
)

// session is a signed-in browser.
type session struct {
	hash       []byte
	UserID     uuid.UUID
	Username   string
	Role       api.Role
	CSRF       string
	generation int64
}

// Admin reports whether the session may change things; pages hide what others may not do.
func (s *session) Admin() bool { return s.Role == api.RoleAdmin }

func randomToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err)) // the runtime treats this as fatal anyway
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashToken(t string) []byte {
	sum := sha256.Sum256([]byte(t))
	return sum[:]
}

func (p *Portal) cookie(c echo.Context, name, value string, maxAge time.Duration) *http.Cookie {
	ck := &http.Cookie{
		Name: name, Value: value, Path: Base, HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: p.opts.SecureCookies || c.Request().TLS != nil, MaxAge: int(maxAge / time.Second),
	}
	if maxAge < 0 {
		ck.MaxAge = -1
	}
	return ck
}

// startSession stores a session for the user a login's access token names and sets its
// cookie. The session keeps the token's credential generation, so the API judges the
// tokens minted for the session exactly as it would judge the token the login returned.
func (p *Portal) startSession(c echo.Context, auth api.AuthResponse) error {
	claims, err := p.tokens.VerifyAccess(auth.Token, time.Now())
	if err != nil {
		return fmt.Errorf("error reading the login's access token: %w", err)
	}
	userID, err := uuid.Parse(claims.UserID)
	if err != nil {
		return fmt.Errorf("error reading the login's access token: %w", err)
	}
	ctx := c.Request().Context()
	// The portal never refreshes: its sessions mint their own short-lived tokens.
	if err := p.q.RefreshTokenDelete(ctx, tokens.HashRefreshToken(auth.RefreshToken)); err != nil {
		return fmt.Errorf("error dropping the login's refresh token: %w", err)
	}
	token := randomToken()
	err = p.q.PortalSessionCreate(ctx, dbgen.PortalSessionCreateParams{
		TokenHash: hashToken(token), UserID: userID, Username: claims.Username, Role: claims.Role,
		CsrfToken: randomToken(), TokenGeneration: claims.Generation, ExpiresAt: time.Now().Add(p.opts.MaxAge),
	})
	if err != nil {
		return fmt.Errorf("error storing portal session: %w", err)
	}
	c.SetCookie(p.cookie(c, sessionCookie, token, p.opts.MaxAge))
	return nil
}

// currentSession returns the browser's live session, or nil when it has none.
func (p *Portal) currentSession(c echo.Context) (*session, error) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil || ck.Value == "" || len(ck.Value) > 100 {
		return nil, nil
	}
	hash := hashToken(ck.Value)
	row, err := p.q.PortalSessionTouch(c.Request().Context(), dbgen.PortalSessionTouchParams{TokenHash: hash, IdleSeconds: p.opts.IdleTimeout.Seconds()})
	if errors.Is(err, db.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("error reading portal session: %w", err)
	}
	return &session{hash: hash, UserID: row.UserID, Username: row.Username, Role: api.Role(row.Role), CSRF: row.CsrfToken, generation: row.TokenGeneration}, nil
}

// endSession deletes the session and its cookie.
func (p *Portal) endSession(c echo.Context, s *session) error {
	c.SetCookie(p.cookie(c, sessionCookie, "", -1))
	if s == nil {
		return nil
	}
	if err := p.q.PortalSessionDelete(c.Request().Context(), s.hash); err != nil {
		return fmt.Errorf("error deleting portal session: %w", err)
	}
	return nil
}

// callToken mints the access token of one in-process call.
func (p *Portal) callToken(s *session) (string, error) {
	now := time.Now()
	return p.tokens.IssueAccessWindow(s.UserID.String(), s.Username, string(s.Role), s.generation, now, now.Add(callTokenTTL))
}

// handler is a portal page or action of a signed-in user.
type handler func(c echo.Context, s *session) error

// page serves a page to a signed-in user and sends anyone else to the sign-in form.
func (p *Portal) page(h handler) echo.HandlerFunc {
	return func(c echo.Context) error {
		s, err := p.currentSession(c)
		if err != nil {
			return p.fail(c, nil, err)
		}
		if s == nil {
			if _, err := c.Cookie(sessionCookie); err == nil {
				c.SetCookie(p.cookie(c, sessionCookie, "", -1)) // expired or deleted with its user
			}
			return p.toLogin(c, "")
		}
		return p.fail(c, s, h(c, s))
	}
}

// action is page for a state-changing form: the request must also carry the session's
// synchronizer token and must not come from another site.
func (p *Portal) action(h handler) echo.HandlerFunc {
	return p.page(func(c echo.Context, s *session) error {
		sent := c.Request().Header.Get(csrfHeader)
		if sent == "" {
			sent = c.FormValue(csrfField)
		}
		if err := checkCSRF(c, s.CSRF, sent); err != nil {
			return err
		}
		return h(c, s)
	})
}

// upload is action for a multipart form with one file: the file is handed on unread, to
// be streamed, with the small fields sent before it. Without a header, the synchronizer
// token must be one of those fields (the forms put the file last).
func (p *Portal) upload(h func(c echo.Context, s *session, fields url.Values, file *multipart.Part) error) echo.HandlerFunc {
	return p.page(func(c echo.Context, s *session) error {
		mr, err := c.Request().MultipartReader()
		if err != nil {
			return p.renderError(c, s, http.StatusBadRequest, "The upload must be sent as a form with a file.")
		}
		fields := url.Values{}
		for range maxUploadFields {
			part, err := mr.NextPart()
			if err != nil {
				break
			}
			if part.FileName() == "" {
				value, _ := io.ReadAll(io.LimitReader(part, 4096))
				fields.Add(part.FormName(), string(value))
				continue
			}
			sent := c.Request().Header.Get(csrfHeader)
			if sent == "" {
				sent = fields.Get(csrfField)
			}
			if err := checkCSRF(c, s.CSRF, sent); err != nil {
				return err
			}
			return h(c, s, fields, part)
		}
		return p.renderError(c, s, http.StatusBadRequest, "The upload holds no file: choose one and send the form again.")
	})
}

// maxUploadFields bounds the fields read before an upload's file.
const maxUploadFields = 20

// errCSRF is a state-changing request without the session's synchronizer token.
var errCSRF = errors.New("csrf")

func checkCSRF(c echo.Context, want, sent string) error {
	if site := c.Request().Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return errCSRF
	}
	if want == "" || subtle.ConstantTimeCompare([]byte(want), []byte(sent)) != 1 {
		return errCSRF
	}
	return nil
}

// toLogin sends the browser to the sign-in form, coming back here afterwards.
func (p *Portal) toLogin(c echo.Context, notice string) error {
	if notice != "" {
		p.flash(c, flashError, notice)
	}
	target := Base + "/login"
	if r := c.Request(); r.Method == http.MethodGet && r.URL.Path != Base {
		target += "?next=" + url.QueryEscape(r.URL.RequestURI())
	}
	return c.Redirect(http.StatusSeeOther, target)
}

// fail renders what a handler returned: nothing when it succeeded, the sign-in form when
// the API no longer accepts the session, and an error page otherwise.
func (p *Portal) fail(c echo.Context, s *session, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, db.ErrUnavailable) {
		p.log.WarnContext(c.Request().Context(), "portal: database unavailable", "error", err, "path", c.Request().URL.Path)
		err = &apiError{Status: http.StatusServiceUnavailable, Detail: "The database is unavailable; try again in a few seconds.", RetryAfter: "5"}
	}
	var ae *apiError
	switch {
	case errors.Is(err, errCSRF):
		return p.renderError(c, s, http.StatusForbidden, "This form has expired or did not come from this portal. Reload the page and try again.")
	case errors.As(err, &ae) && ae.Status == http.StatusUnauthorized:
		if endErr := p.endSession(c, s); endErr != nil {
			return p.fail(c, nil, endErr)
		}
		return p.toLogin(c, "You have been signed out: "+ae.Detail)
	case errors.As(err, &ae):
		if ae.RetryAfter != "" {
			c.Response().Header().Set("Retry-After", ae.RetryAfter)
		}
		return p.renderError(c, s, ae.Status, ae.Message())
	}
	if c.Response().Committed {
		p.log.WarnContext(c.Request().Context(), "portal error after the response started", "error", err, "path", c.Request().URL.Path)
		return nil
	}
	p.log.ErrorContext(c.Request().Context(), "portal internal error", "error", err, "path", c.Request().URL.Path,
		"request_id", c.Response().Header().Get(echo.HeaderXRequestID))
	return p.renderError(c, s, http.StatusInternalServerError, "Something went wrong on the server. It has been logged; try again.")
}

// safeNext is where to go after signing in: a portal path, never another site.
func safeNext(next string) string {
	if next == "" || !strings.HasPrefix(next, Base) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Base
	}
	if rest := strings.TrimPrefix(next, Base); rest != "" && rest[0] != '/' && rest[0] != '?' {
		return Base
	}
	return next
}
