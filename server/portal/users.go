package portal

import (
	"cmp"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/opendataensemble/synkronus/gen/api"
)

type usersData struct {
	Users []api.UserListItem
	// Admins is how many admins there are: the page marks the last one, whom the API
	// refuses to delete or demote.
	Admins int
	// Form keeps what was typed into the create form when the API refused it.
	Form createUserForm
}

type createUserForm struct {
	Username string
	Role     api.Role
}

func (p *Portal) users(c echo.Context, s *session) error {
	return p.renderUsers(c, s, http.StatusOK, nil, createUserForm{Role: api.RoleReadWrite})
}

func (p *Portal) renderUsers(c echo.Context, s *session, status int, problem *apiError, form createUserForm) error {
	var list []api.UserListItem
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/users"}, &list); err != nil {
		return err
	}
	admins := 0
	for _, u := range list {
		if u.Role == api.RoleAdmin {
			admins++
		}
	}
	return p.render(c, status, "users", Base+"/users", view{Title: "Users", Nav: "users", S: s, Problem: problem,
		Data: usersData{Users: list, Admins: admins, Form: form}})
}

// userAction runs an operation on a user and comes back to the list, with the API's
// explanation when it refused.
func (p *Portal) userAction(c echo.Context, s *session, req apiRequest, done string) error {
	err := p.call(c, s, req, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		return p.renderUsers(c, s, ae.Status, ae, createUserForm{Role: api.RoleReadWrite})
	}
	if err != nil {
		return err
	}
	return p.redirect(c, Base+"/users", done)
}

func (p *Portal) createUser(c echo.Context, s *session) error {
	form := createUserForm{Username: c.FormValue("username"), Role: api.Role(c.FormValue("role"))}
	err := p.call(c, s, apiRequest{Method: http.MethodPost, Path: "/api/users/create",
		JSON: api.CreateUserRequest{Username: form.Username, Password: c.FormValue("password"), Role: form.Role}}, nil)
	var ae *apiError
	if errors.As(err, &ae) && ae.Status != http.StatusUnauthorized {
		return p.renderUsers(c, s, ae.Status, ae, form)
	}
	if err != nil {
		return err
	}
	return p.redirect(c, Base+"/users", fmt.Sprintf("User %q was created with the role %s.", form.Username, form.Role))
}

func (p *Portal) changeRole(c echo.Context, s *session) error {
	username, role := c.FormValue("username"), api.Role(c.FormValue("role"))
	return p.userAction(c, s, apiRequest{Method: http.MethodPatch, Path: "/api/users/" + escape(username),
		JSON: api.UpdateUserRequest{Role: role}}, fmt.Sprintf("%s now has the role %s.", username, role))
}

func (p *Portal) resetPassword(c echo.Context, s *session) error {
	username := c.FormValue("username")
	return p.userAction(c, s, apiRequest{Method: http.MethodPost, Path: "/api/users/reset-password",
		JSON: api.ResetPasswordRequest{Username: username, NewPassword: c.FormValue("password")}},
		fmt.Sprintf("The password of %s was reset; their devices must sign in again.", username))
}

func (p *Portal) deleteUser(c echo.Context, s *session) error {
	username := c.FormValue("username")
	return p.userAction(c, s, apiRequest{Method: http.MethodDelete, Path: "/api/users/" + escape(username)},
		fmt.Sprintf("User %s was deleted.", username))
}

// device is one client of one user, as the presence records saw it.
type device struct {
	Username string
	Role     api.Role
	api.UserPresenceClient
}

type devicesData struct {
	Devices []device
	// Silent are the users no client was ever seen for.
	Silent []string
	Portal string
}

// devices lists who synced when, from which client, with which data, bundle and app version.
func (p *Portal) devices(c echo.Context, s *session) error {
	var list []api.UserListItem
	if err := p.call(c, s, apiRequest{Method: http.MethodGet, Path: "/api/users"}, &list); err != nil {
		return err
	}
	var d devicesData
	d.Portal = clientID
	for _, u := range list {
		if u.Presence == nil || u.Presence.Clients == nil || len(*u.Presence.Clients) == 0 {
			d.Silent = append(d.Silent, u.Username)
			continue
		}
		for _, cl := range *u.Presence.Clients {
			d.Devices = append(d.Devices, device{Username: u.Username, Role: u.Role, UserPresenceClient: cl})
		}
	}
	slices.SortFunc(d.Devices, func(a, b device) int {
		return cmp.Or(b.LastSeenAt.Compare(a.LastSeenAt), cmp.Compare(a.Username, b.Username))
	})
	return p.render(c, http.StatusOK, "devices", Base+"/devices", view{Title: "Devices", Nav: "devices", S: s, Data: d})
}

// ago is a rough age for people ("5 minutes ago").
func ago(t time.Time) string {
	d := time.Since(t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	}
	return plural(int(d/(24*time.Hour)), "day") + " ago"
}

func plural(n int, unit string) string {
	if n == 1 {
		return "1 " + unit
	}
	return fmt.Sprintf("%d %ss", n, unit)
}
