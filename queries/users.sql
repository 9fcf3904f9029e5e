-- name: UserCreate :one
-- UserCreate inserts a user; a duplicate username fails with a unique violation.
INSERT INTO users (username, password_hash, role)
VALUES (@username, @password_hash, @role)
RETURNING *;

-- name: UserBootstrapLock :exec
-- UserBootstrapLock serialises the first-admin check of concurrently starting processes
-- (until the end of the transaction). It must be its own statement: a statement's
-- snapshot is taken before it waits, so a check in the same statement could miss the
-- admin another process just created.
SELECT pg_advisory_xact_lock(7331001);

-- name: UserCreateIfNoneExist :one
-- UserCreateIfNoneExist creates the bootstrap admin only while the users table is empty.
INSERT INTO users (username, password_hash, role)
SELECT @username, @password_hash, 'admin'
WHERE NOT EXISTS (SELECT 1 FROM users)
RETURNING *;

-- name: UserGetByName :one
SELECT * FROM users WHERE username = @username;

-- name: UserGetByID :one
SELECT * FROM users WHERE id = @id;

-- name: UserList :many
SELECT * FROM users ORDER BY username;

-- name: UserCountAdmins :one
-- UserCountAdmins counts admins, locking them so that two concurrent demotions or deletions
-- cannot both pass the last-admin check.
SELECT count(*) FROM (SELECT id FROM users WHERE role = 'admin' FOR UPDATE) AS admins;

-- name: UserDelete :execrows
DELETE FROM users WHERE username = @username;

-- name: UserSetPassword :one
-- UserSetPassword replaces the password hash and starts a new token generation, which
-- invalidates every token issued so far.
UPDATE users
SET password_hash = @password_hash, updated_at = now(), token_generation = token_generation + 1
WHERE username = @username
RETURNING *;

-- name: UserSetRole :one
-- UserSetRole changes the role; a different role starts a new token generation, which
-- invalidates every token issued so far.
UPDATE users
SET role = @role, updated_at = now(),
    token_generation = CASE WHEN role = @role THEN token_generation ELSE token_generation + 1 END
WHERE username = @username
RETURNING *;

-- name: UserGetForUpdate :one
SELECT * FROM users WHERE username = @username FOR UPDATE;
