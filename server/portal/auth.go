package portal

import (
	"crypto/subtle"
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

type loginData struct {
	CSRF     string
	Username string
	Next     string
}

// loginForm shows the sign-in form, or goes home when the browser is signed in already.
func (p *Portal) loginForm(c echo.Context) error {
	s, err := p.currentSession(c)
	if err != nil {
		return p.fail(c, nil, err)
	}
	if s != nil {
		return c.Redirect(http.StatusSeeOther, safeNext(c.QueryParam("next")))
	}
	return p.renderLogin(c, http.StatusOK, "", nil)
}

func (p *Portal) renderLogin(c echo.Context, status int, username string, problem *apiError) error {
	token := randomToken()
	c.SetCookie(p.cookie(c, loginCookie, token, time.Hour))
	next := c.QueryParam("next")
	if next == "" {
		next = c.FormValue("next")
	}
	if problem != nil && problem.RetryAfter != "" {
		c.Response().Header().Set("Retry-After", problem.RetryAfter)
	}
	return p.render(c, status, "login", Base+"/login", view{Title: "Sign in", Problem: problem,
		Data: loginData{CSRF: token, Username: username, Next: safeNext(next)}})
}

// login signs in through the API's own login operation (same throttling, same answers).
func (p *Portal) login(c echo.Context) error {
	username, password := c.FormValue("username"), c.FormValue("password")
	ck, err := c.Cookie(loginCookie)
	if err != nil || ck.Value == "" || subtle.ConstantTimeCompare([]byte(ck.Value), []byte(c.FormValue(csrfField))) != 1 {
		return p.renderLogin(c, http.StatusForbidden, username, &apiError{Status: http.StatusForbidden,
			Detail: "The sign-in form expired or did not come from this portal. Try again."})
	}
	var auth api.AuthResponse
	err = p.call(c, nil, apiRequest{Method: http.MethodPost, Path: "/api/auth/login",
		JSON: api.LoginRequest{Username: username, Password: password}}, &auth)
	var ae *apiError
	if errors.As(err, &ae) {
		return p.renderLogin(c, ae.Status, username, ae)
	}
	if err != nil {
		return p.fail(c, nil, err)
	}
	if old, err := p.currentSession(c); err == nil && old != nil {
		if err := p.endSession(c, old); err != nil { // one browser, one session
			return p.fail(c, nil, err)
		}
	}
	if err := p.startSession(c, auth); err != nil {
		return p.fail(c, nil, err)
	}
	c.SetCookie(p.cookie(c, loginCookie, "", -1))
	return c.Redirect(http.StatusSeeOther, safeNext(c.FormValue("next")))
}

// logout ends the session.
func (p *Portal) logout(c echo.Context, s *session) error {
	if err := p.endSession(c, s); err != nil {
		return err
	}
	p.flash(c, flashOK, "You are signed out.")
	return c.Redirect(http.StatusSeeOther, Base+"/login")
}

// account shows the signed-in user's own account.
func (p *Portal) account(c echo.Context, s *session) error {
	return p.renderAccount(c, s, http.StatusOK, nil)
}

func (p *Portal) renderAccount(c echo.Context, s *session, status int, problem *apiError) error {
	return p.render(c, status, "account", Base+"/account", view{Title: "Your account", Nav: "account", S: s, Problem: problem})
}

// changeOwnPassword changes the user's password. The API ends every session of the
// account, this one included, so the user signs in again.
func (p *Portal) changeOwnPassword(c echo.Context, s *session) error {
	current := c.FormValue("current_password")
	err := p.call(c, s, apiRequest{Method: http.MethodPost, Path: "/api/users/change-password",
		JSON: api.ChangePasswordRequest{CurrentPassword: &current, NewPassword: c.FormValue("new_password")}}, nil)
	var ae *apiError
	if errors.As(err, &ae) {
		// 401 is both a wrong current password and a session the API no longer accepts:
		// a call that needs only the session tells them apart.
		if ae.Status == http.StatusUnauthorized {
			if alive := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/version"}, nil); alive != nil {
				return alive
			}
		}
		return p.renderAccount(c, s, ae.Status, ae)
	}
	if err != nil {
		return err
	}
	if err := p.endSession(c, s); err != nil {
		return err
	}
	p.flash(c, flashOK, "Your password was changed. Sign in with the new password.")
	return c.Redirect(http.StatusSeeOther, Base+"/login")
}
