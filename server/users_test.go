package server_test

import (
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/server"
	"github.com/opendataensemble/synkronus/server/authlimit"
	"github.com/opendataensemble/synkronus/server/servertest"
)

func createUser(env *servertest.Env, token, path, username, password, role string) *servertest.Response {
	return env.Do(servertest.Request{Method: http.MethodPost, Path: path, Token: token,
		Body: map[string]string{"username": username, "password": password, "role": role}})
}

func listUsers(t *testing.T, env *servertest.Env, token string) map[string]api.UserListItem {
	t.Helper()
	res := env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: token})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	var users []api.UserListItem
	res.JSON(t, &users)
	out := make(map[string]api.UserListItem, len(users))
	for _, u := range users {
		out[u.Username] = u
	}
	return out
}

func TestCreateUserAtBothPaths(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	for path, role := range map[string]string{"/api/users/create": "read-only", "/api/users": "read-write"} {
		username := "user-" + role
		before := time.Now()
		res := createUser(env, admin, path, username, "secret-"+role, role)
		require.Equal(t, http.StatusCreated, res.Status, "POST %s: %s", path, res.Body)
		var created api.UserResponse
		res.JSON(t, &created)
		require.Equal(t, username, created.Username)
		require.Equal(t, api.Role(role), created.Role)
		require.WithinDuration(t, before, created.CreatedAt, time.Minute)

		pair := loginPair(t, env, username, "secret-"+role)
		require.Equal(t, role, jwtClaims(t, pair.Token)["role"])
	}
}

func TestCreateUserRefusesDuplicate(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	require.Equal(t, http.StatusCreated, createUser(env, admin, "/api/users/create", "dup", "pw", "read-only").Status)
	for _, path := range []string{"/api/users/create", "/api/users"} {
		requireProblem(t, createUser(env, admin, path, "dup", "other", "admin"), http.StatusConflict, "conflict")
	}
	requireProblem(t, createUser(env, admin, "/api/users", "admin", "pw", "admin"), http.StatusConflict, "conflict")
	// The first account is unchanged.
	require.Equal(t, http.StatusOK, login(t, env, "dup", "pw").Status)
	require.Equal(t, api.Role("read-only"), listUsers(t, env, admin)["dup"].Role)
}

func TestCreateUserRefusesInvalidInput(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	cases := map[string][3]string{
		"empty username":      {"", "pw", "read-only"},
		"blank username":      {"   ", "pw", "read-only"},
		"slash in username":   {"a/b", "pw", "read-only"},
		"empty password":      {"someone", "", "read-only"},
		"unknown role":        {"someone", "pw", "superuser"},
		"empty role":          {"someone", "pw", ""},
		"role in wrong case":  {"someone", "pw", "Admin"},
		"control in username": {"some\none", "pw", "read-only"},
	}
	for name, c := range cases {
		for _, path := range []string{"/api/users/create", "/api/users"} {
			res := createUser(env, admin, path, c[0], c[1], c[2])
			require.Equal(t, http.StatusBadRequest, res.Status, "%s at %s: %s", name, path, res.Body)
			requireProblem(t, res, http.StatusBadRequest, "validation_failed")
		}
	}
	require.Len(t, listUsers(t, env, admin), 1, "nothing was created")
}

func TestListUsers(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	env.CreateUser("reader", "read-only")
	env.CreateUser("writer", "read-write")

	users := listUsers(t, env, admin)
	require.Len(t, users, 3)
	for name, role := range map[string]api.Role{"admin": "admin", "reader": "read-only", "writer": "read-write"} {
		u, ok := users[name]
		require.True(t, ok, "%s is listed", name)
		require.Equal(t, role, u.Role)
		require.NotEqual(t, uuid.Nil, u.Id)
		require.False(t, u.CreatedAt.IsZero())
		require.False(t, u.UpdatedAt.Before(u.CreatedAt))
	}
	require.NotEqual(t, users["reader"].Id, users["writer"].Id)
}

func TestNonAdminCannotManageUsers(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	for _, role := range []string{"read-only", "read-write"} {
		token := env.CreateUser("a-"+role, role)
		requireProblem(t, env.Do(servertest.Request{Method: http.MethodGet, Path: "/api/users", Token: token}), http.StatusForbidden, "forbidden")
		requireProblem(t, createUser(env, token, "/api/users", "x-"+role, "pw", role), http.StatusForbidden, "forbidden")
		requireProblem(t, env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/users/admin", Token: token}), http.StatusForbidden, "forbidden")
		requireProblem(t, env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/a-" + role, Token: token, Body: map[string]string{"role": "admin"}}), http.StatusForbidden, "forbidden")
		requireProblem(t, env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/reset-password", Token: token,
			Body: map[string]string{"username": "admin", "newPassword": "taken-over"}}), http.StatusForbidden, "forbidden")
	}
	require.Equal(t, http.StatusOK, login(t, env, "admin", servertest.AdminPassword).Status)
}

func TestDeleteUserAtBothPaths(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	for _, path := range []string{"/api/users/", "/api/users/delete/"} {
		env.CreateUser("gone", "read-write")
		res := env.Do(servertest.Request{Method: http.MethodDelete, Path: path + "gone", Token: admin})
		require.Equal(t, http.StatusOK, res.Status, "DELETE %s: %s", path, res.Body)
		require.NotEmpty(t, res.Map(t)["message"])
		require.NotContains(t, listUsers(t, env, admin), "gone")
		requireProblem(t, login(t, env, "gone", "pw-gone"), http.StatusUnauthorized, "unauthorized")

		p := requireProblem(t, env.Do(servertest.Request{Method: http.MethodDelete, Path: path + "gone", Token: admin}), http.StatusNotFound, "not_found")
		require.Contains(t, p.Detail, "gone")
	}
}

func TestLastAdminCannotBeDeletedOrDemoted(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	for _, path := range []string{"/api/users/admin", "/api/users/delete/admin"} {
		requireProblem(t, env.Do(servertest.Request{Method: http.MethodDelete, Path: path, Token: admin}), http.StatusConflict, "conflict")
	}
	for _, role := range []string{"read-write", "read-only"} {
		res := env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/admin", Token: admin, Body: map[string]string{"role": role}})
		requireProblem(t, res, http.StatusConflict, "conflict")
	}
	require.Equal(t, api.Role("admin"), listUsers(t, env, admin)["admin"].Role)

	// Setting the role it already has is no demotion.
	res := env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/admin", Token: admin, Body: map[string]string{"role": "admin"}})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	require.Equal(t, http.StatusOK, callVersion(t, env, admin).Status, "an unchanged role keeps tokens valid")

	// With a second admin, the first may be demoted; the second is then the last.
	second := env.CreateUser("second", "admin")
	res = env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/admin", Token: second, Body: map[string]string{"role": "read-only"}})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	var updated api.UserResponse
	res.JSON(t, &updated)
	require.Equal(t, api.Role("read-only"), updated.Role)
	require.Equal(t, "admin", updated.Username)
	requireProblem(t, env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/users/second", Token: second}), http.StatusConflict, "conflict")

	// And with two admins again, one may be deleted.
	env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/admin", Token: second, Body: map[string]string{"role": "admin"}})
	res = env.Do(servertest.Request{Method: http.MethodDelete, Path: "/api/users/delete/admin", Token: second})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	users := listUsers(t, env, second)
	require.NotContains(t, users, "admin")
	require.Equal(t, api.Role("admin"), users["second"].Role)
}

func TestUpdateUserRefusesUnknownUserAndRole(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	res := env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/ghost", Token: admin, Body: map[string]string{"role": "read-only"}})
	requireProblem(t, res, http.StatusNotFound, "not_found")
	env.CreateUser("someone", "read-only")
	res = env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/someone", Token: admin, Body: map[string]string{"role": "root"}})
	requireProblem(t, res, http.StatusBadRequest, "validation_failed")
	require.Equal(t, api.Role("read-only"), listUsers(t, env, admin)["someone"].Role)
}

func TestResetPassword(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	env.CreateUser("forgetful", "read-only")
	reset := func(username, password string) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/reset-password", Token: admin,
			Body: map[string]string{"username": username, "newPassword": password}})
	}

	res := reset("forgetful", "brand-new")
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	require.NotEmpty(t, res.Map(t)["message"])
	require.Equal(t, http.StatusOK, login(t, env, "forgetful", "brand-new").Status)
	requireProblem(t, login(t, env, "forgetful", "pw-forgetful"), http.StatusUnauthorized, "unauthorized")

	requireProblem(t, reset("ghost", "brand-new"), http.StatusNotFound, "not_found")
	requireProblem(t, reset("forgetful", ""), http.StatusBadRequest, "validation_failed")
	require.Equal(t, http.StatusOK, login(t, env, "forgetful", "brand-new").Status, "a refused reset changes nothing")
}

func TestChangeOwnPassword(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	// currentPassword is what the portal sends, oldPassword what the synk CLI sends.
	for _, field := range []string{"currentPassword", "oldPassword"} {
		username := "user-" + field
		token := env.CreateUser(username, "read-only")
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/change-password", Token: token,
			Body: map[string]string{field: "pw-" + username, "newPassword": "changed-" + field}})
		require.Equal(t, http.StatusOK, res.Status, "%s: %s", field, res.Body)
		require.NotEmpty(t, res.Map(t)["message"])
		require.Equal(t, http.StatusOK, login(t, env, username, "changed-"+field).Status)
		requireProblem(t, login(t, env, username, "pw-"+username), http.StatusUnauthorized, "unauthorized")
	}
}

func TestChangeOwnPasswordRefusals(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	token := env.CreateUser("careful", "read-write")
	change := func(body map[string]string) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/change-password", Token: token, Body: body})
	}

	requireProblem(t, change(map[string]string{"currentPassword": "wrong", "newPassword": "next"}), http.StatusUnauthorized, "unauthorized")
	requireProblem(t, change(map[string]string{"oldPassword": "wrong", "newPassword": "next"}), http.StatusUnauthorized, "unauthorized")
	requireProblem(t, change(map[string]string{"newPassword": "next"}), http.StatusBadRequest, "validation_failed")
	requireProblem(t, change(map[string]string{"currentPassword": "", "newPassword": "next"}), http.StatusBadRequest, "validation_failed")
	requireProblem(t, change(map[string]string{"currentPassword": "pw-careful", "newPassword": ""}), http.StatusBadRequest, "validation_failed")
	requireProblem(t, env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/change-password",
		Body: map[string]string{"currentPassword": "pw-careful", "newPassword": "next"}}), http.StatusUnauthorized, "unauthorized")

	require.Equal(t, http.StatusOK, login(t, env, "careful", "pw-careful").Status, "nothing changed the password")
}

// Echo's binder decodes a body case-insensitively, the last key winning: a second decode
// would see a role the validator never checked. Handlers bind the validated value.
func TestHandlersSeeOnlyTheValidatedBody(t *testing.T) {
	t.Parallel()
	env := servertest.New(t)
	admin := env.AdminToken()
	for path, body := range map[string]string{
		"/api/users/create": `{"username":"mallory","password":"pw","role":"read-only","ROLE":"admin"}`,
		"/api/users":        `{"username":"trudy","password":"pw","role":"read-only","Role":"admin"}`,
	} {
		res := env.Do(servertest.Request{Method: http.MethodPost, Path: path, Token: admin, Body: body})
		require.Equal(t, http.StatusCreated, res.Status, "body: %s", res.Body)
		var created api.UserResponse
		res.JSON(t, &created)
		require.Equal(t, api.RoleReadOnly, created.Role, "POST %s", path)
	}
	users := listUsers(t, env, admin)
	require.Equal(t, api.RoleReadOnly, users["mallory"].Role)
	require.Equal(t, api.RoleReadOnly, users["trudy"].Role)

	res := env.Do(servertest.Request{Method: http.MethodPatch, Path: "/api/users/mallory", Token: admin, Body: `{"role":"read-write","rOlE":"admin"}`})
	require.Equal(t, http.StatusOK, res.Status, "body: %s", res.Body)
	require.Equal(t, api.RoleReadWrite, listUsers(t, env, admin)["mallory"].Role)
}

func TestChangeOwnPasswordIsThrottled(t *testing.T) {
	t.Parallel()
	env := servertest.New(t, func(o *server.Options) {
		o.LoginLimits = &authlimit.Config{PerAddrAccount: authlimit.Window{Failures: 3, Period: time.Hour}}
	})
	token := env.CreateUser("guessed", "read-write")
	change := func(current string) *servertest.Response {
		return env.Do(servertest.Request{Method: http.MethodPost, Path: "/api/users/change-password", Token: token,
			Body: map[string]string{"currentPassword": current, "newPassword": "new-password"}})
	}
	// A stolen access token must not become an unlimited password oracle.
	for range 3 {
		requireProblem(t, change("guess"), http.StatusUnauthorized, "unauthorized")
	}
	res := change("pw-guessed")
	requireProblem(t, res, http.StatusTooManyRequests, "rate_limited")
	require.NotEmpty(t, res.Header.Get("Retry-After"))
	// The guesses count against logging in too.
	requireProblem(t, login(t, env, "guessed", "pw-guessed"), http.StatusTooManyRequests, "rate_limited")
}
