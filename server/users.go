package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/opendataensemble/synkronus/db"
	"github.com/opendataensemble/synkronus/gen/api"
	"github.com/opendataensemble/synkronus/gen/dbgen"
	"github.com/opendataensemble/synkronus/server/passwords"
)

// errLastAdmin is what deleting or demoting the only admin returns.
var errLastAdmin = errors.New("the last admin cannot be deleted or demoted: make another user admin first")

// CreateUser creates an account.
func (s *Server) CreateUser(ctx context.Context, req api.CreateUserRequestObject) (api.CreateUserResponseObject, error) {
	user, problem, err := s.createUser(ctx, req.Body)
	switch {
	case err != nil:
		return nil, err
	case problem == nil:
		return api.CreateUser201JSONResponse(user), nil
	case problem.status == http.StatusConflict:
		return api.CreateUser409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: conflict(problem.detail)}, nil
	}
	return api.CreateUser400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(problem.detail)}, nil
}

// CreateUserCompat is CreateUser at POST /api/users, where the synk CLI and older portals send it.
func (s *Server) CreateUserCompat(ctx context.Context, req api.CreateUserCompatRequestObject) (api.CreateUserCompatResponseObject, error) {
	user, problem, err := s.createUser(ctx, req.Body)
	switch {
	case err != nil:
		return nil, err
	case problem == nil:
		return api.CreateUserCompat201JSONResponse(user), nil
	case problem.status == http.StatusConflict:
		return api.CreateUserCompat409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: conflict(problem.detail)}, nil
	}
	return api.CreateUserCompat400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest(problem.detail)}, nil
}

func (s *Server) createUser(ctx context.Context, body *api.CreateUserRequest) (api.UserResponse, *problemError, error) {
	if msg := checkUsername(body.Username); msg != "" {
		return api.UserResponse{}, newProblem(http.StatusBadRequest, codeValidation, msg), nil
	}
	if err := passwords.Validate(body.Password); err != nil {
		return api.UserResponse{}, newProblem(http.StatusBadRequest, codeValidation, "password: "+err.Error()), nil
	}
	hash, err := s.hasher.Hash(ctx, body.Password)
	if err != nil {
		return api.UserResponse{}, nil, fmt.Errorf("error hashing password: %w", err)
	}
	u, err := s.q.UserCreate(ctx, dbgen.UserCreateParams{Username: body.Username, PasswordHash: hash, Role: string(body.Role)})
	if errors.Is(err, db.ErrUniqueViolation) {
		return api.UserResponse{}, newProblem(http.StatusConflict, codeConflict, fmt.Sprintf("a user named %q already exists", body.Username)), nil
	}
	if err != nil {
		return api.UserResponse{}, nil, fmt.Errorf("error creating user: %w", err)
	}
	return userResponse(u), nil, nil
}

// checkUsername returns why a username is unacceptable, or "".
func checkUsername(name string) string {
	switch {
	case strings.TrimSpace(name) == "":
		return "username must not be empty"
	case len(name) > maxUsernameBytes:
		return fmt.Sprintf("username must be at most %d bytes", maxUsernameBytes)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == '/' }):
		return "username must not contain control characters or slashes"
	}
	return ""
}

func userResponse(u dbgen.User) api.UserResponse {
	return api.UserResponse{Username: u.Username, Role: api.Role(u.Role), CreatedAt: u.CreatedAt}
}

// ListUsers lists every account with its last activity per client.
func (s *Server) ListUsers(ctx context.Context, _ api.ListUsersRequestObject) (api.ListUsersResponseObject, error) {
	users, err := s.q.UserList(ctx)
	if err != nil {
		return nil, fmt.Errorf("error listing users: %w", err)
	}
	presence, err := s.q.PresenceList(ctx)
	if err != nil {
		return nil, fmt.Errorf("error listing presence: %w", err)
	}
	byUser := make(map[uuid.UUID][]dbgen.UserClientPresence)
	for _, p := range presence {
		byUser[p.UserID] = append(byUser[p.UserID], p)
	}
	out := make(api.ListUsers200JSONResponse, 0, len(users))
	for _, u := range users {
		item := api.UserListItem{Id: u.ID, Username: u.Username, Role: api.Role(u.Role), CreatedAt: u.CreatedAt, UpdatedAt: u.UpdatedAt}
		item.Presence = presenceSummary(byUser[u.ID])
		out = append(out, item)
	}
	return out, nil
}

// presenceSummary maps one user's presence rows (newest first) onto the contract.
func presenceSummary(rows []dbgen.UserClientPresence) *api.UserPresenceSummary {
	if len(rows) == 0 {
		return nil
	}
	clients := make([]api.UserPresenceClient, len(rows))
	last := rows[0].LastSeenAt
	for i, r := range rows {
		clients[i] = api.UserPresenceClient{ClientId: r.ClientID, LastSeenAt: r.LastSeenAt, LastDataVersion: r.LastDataVersion,
			AppBundleVersion: r.AppBundleVersion, LastOdeVersion: r.LastOdeVersion}
		if r.LastSeenAt.After(last) {
			last = r.LastSeenAt
		}
	}
	n := len(clients)
	return &api.UserPresenceSummary{LastSeenAt: &last, ClientCount: &n, Clients: &clients}
}

// DeleteUser deletes an account; its tokens stop working at once.
func (s *Server) DeleteUser(ctx context.Context, req api.DeleteUserRequestObject) (api.DeleteUserResponseObject, error) {
	err := s.deleteUser(ctx, req.Username)
	switch {
	case errors.Is(err, db.ErrNotFound):
		return api.DeleteUser404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(fmt.Sprintf("no user named %q", req.Username))}, nil
	case errors.Is(err, errLastAdmin):
		return api.DeleteUser409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: conflict(errLastAdmin.Error())}, nil
	case err != nil:
		return nil, err
	}
	return api.DeleteUser200JSONResponse{Message: "User deleted successfully"}, nil
}

// DeleteUserCompat is DeleteUser at the path the portal and the synk CLI use.
func (s *Server) DeleteUserCompat(ctx context.Context, req api.DeleteUserCompatRequestObject) (api.DeleteUserCompatResponseObject, error) {
	err := s.deleteUser(ctx, req.Username)
	switch {
	case errors.Is(err, db.ErrNotFound):
		return api.DeleteUserCompat404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(fmt.Sprintf("no user named %q", req.Username))}, nil
	case errors.Is(err, errLastAdmin):
		return api.DeleteUserCompat409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: conflict(errLastAdmin.Error())}, nil
	case err != nil:
		return nil, err
	}
	return api.DeleteUserCompat200JSONResponse{Message: "User deleted successfully"}, nil
}

func (s *Server) deleteUser(ctx context.Context, username string) error {
	id, err := db.InTxValue(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) (uuid.UUID, error) {
		q := s.q.WithTx(tx)
		admins, err := q.UserCountAdmins(ctx) // locks the admins: see UserCountAdmins
		if err != nil {
			return uuid.Nil, fmt.Errorf("error counting admins: %w", err)
		}
		u, err := q.UserGetForUpdate(ctx, username)
		if err != nil {
			return uuid.Nil, err
		}
		if u.Role == string(api.RoleAdmin) && admins <= 1 {
			return uuid.Nil, errLastAdmin
		}
		_, err = q.UserDelete(ctx, username) // refresh tokens and presence go with it
		return u.ID, err
	})
	if err == nil {
		s.accounts.forget(id)
	}
	return err
}

// UpdateUser changes a user's role; tokens issued under the old role stop working.
func (s *Server) UpdateUser(ctx context.Context, req api.UpdateUserRequestObject) (api.UpdateUserResponseObject, error) {
	updated, err := db.InTxValue(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) (dbgen.User, error) {
		q := s.q.WithTx(tx)
		admins, err := q.UserCountAdmins(ctx)
		if err != nil {
			return dbgen.User{}, fmt.Errorf("error counting admins: %w", err)
		}
		u, err := q.UserGetForUpdate(ctx, req.Username)
		if err != nil {
			return dbgen.User{}, err
		}
		if u.Role == string(api.RoleAdmin) && req.Body.Role != api.RoleAdmin && admins <= 1 {
			return dbgen.User{}, errLastAdmin
		}
		updated, err := q.UserSetRole(ctx, dbgen.UserSetRoleParams{Username: req.Username, Role: string(req.Body.Role)})
		if err != nil {
			return dbgen.User{}, fmt.Errorf("error setting role: %w", err)
		}
		if u.Role != updated.Role {
			if err := q.RefreshTokenRevokeUser(ctx, u.ID); err != nil {
				return dbgen.User{}, fmt.Errorf("error revoking refresh tokens: %w", err)
			}
		}
		return updated, nil
	})
	switch {
	case errors.Is(err, db.ErrNotFound):
		return api.UpdateUser404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(fmt.Sprintf("no user named %q", req.Username))}, nil
	case errors.Is(err, errLastAdmin):
		return api.UpdateUser409ApplicationProblemPlusJSONResponse{ConflictApplicationProblemPlusJSONResponse: conflict(errLastAdmin.Error())}, nil
	case err != nil:
		return nil, err
	}
	s.accounts.forget(updated.ID)
	return api.UpdateUser200JSONResponse(userResponse(updated)), nil
}

// ResetUserPassword sets another user's password; that user's sessions end.
func (s *Server) ResetUserPassword(ctx context.Context, req api.ResetUserPasswordRequestObject) (api.ResetUserPasswordResponseObject, error) {
	if err := passwords.Validate(req.Body.NewPassword); err != nil {
		return api.ResetUserPassword400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("newPassword: " + err.Error())}, nil
	}
	err := s.setPassword(ctx, req.Body.Username, req.Body.NewPassword)
	if errors.Is(err, db.ErrNotFound) {
		return api.ResetUserPassword404ApplicationProblemPlusJSONResponse{NotFoundApplicationProblemPlusJSONResponse: notFound(fmt.Sprintf("no user named %q", req.Body.Username))}, nil
	}
	if err != nil {
		return nil, err
	}
	return api.ResetUserPassword200JSONResponse{Message: "Password reset successfully"}, nil
}

// ChangePassword changes the caller's own password after checking the current one
// (sent as currentPassword, or oldPassword by the synk CLI). Wrong current passwords are
// throttled like logins. Every session of the account ends, including the caller's: it
// logs in again with the new password.
func (s *Server) ChangePassword(ctx context.Context, req api.ChangePasswordRequestObject) (api.ChangePasswordResponseObject, error) {
	p, _ := principalFrom(ctx)
	current := req.Body.CurrentPassword
	if current == nil || *current == "" {
		current = req.Body.OldPassword
	}
	if current == nil || *current == "" {
		return api.ChangePassword400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("currentPassword (or oldPassword) is required")}, nil
	}
	if err := passwords.Validate(req.Body.NewPassword); err != nil {
		return api.ChangePassword400ApplicationProblemPlusJSONResponse{BadRequestApplicationProblemPlusJSONResponse: badRequest("newPassword: " + err.Error())}, nil
	}
	addr := clientAddr(ctx)
	wait, limited, err := s.limiter.Check(ctx, addr, p.Username, time.Now())
	if err != nil {
		return nil, err
	}
	if limited {
		return api.ChangePassword429ApplicationProblemPlusJSONResponse{TooManyRequestsApplicationProblemPlusJSONResponse: tooManyAttempts(wait)}, nil
	}
	_, ok, err := s.checkPassword(ctx, p.Username, *current)
	if err != nil {
		return nil, err
	}
	if !ok {
		if err := s.limiter.Failure(ctx, addr, p.Username, time.Now()); err != nil {
			return nil, err
		}
		return api.ChangePassword401ApplicationProblemPlusJSONResponse{UnauthorizedApplicationProblemPlusJSONResponse: unauthorized("the current password is wrong")}, nil
	}
	if err := s.limiter.Success(ctx, addr, p.Username); err != nil {
		return nil, err
	}
	if err := s.setPassword(ctx, p.Username, req.Body.NewPassword); err != nil {
		return nil, err
	}
	return api.ChangePassword200JSONResponse{Message: "Password changed successfully"}, nil
}

// setPassword stores a new password and ends every session of the account.
func (s *Server) setPassword(ctx context.Context, username, password string) error {
	hash, err := s.hasher.Hash(ctx, password)
	if err != nil {
		return fmt.Errorf("error hashing password: %w", err)
	}
	id, err := db.InTxValue(ctx, s.pool, pgx.TxOptions{}, func(tx pgx.Tx) (uuid.UUID, error) {
		q := s.q.WithTx(tx)
		u, err := q.UserSetPassword(ctx, dbgen.UserSetPasswordParams{Username: username, PasswordHash: hash})
		if err != nil {
			return uuid.Nil, err
		}
		if err := q.RefreshTokenRevokeUser(ctx, u.ID); err != nil {
			return uuid.Nil, fmt.Errorf("error revoking refresh tokens: %w", err)
		}
		return u.ID, nil
	})
	if err == nil {
		s.accounts.forget(id)
	}
	return err
}
