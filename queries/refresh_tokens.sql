-- name: RefreshTokenCreate :exec
INSERT INTO refresh_tokens (token_hash, user_id, family_id, user_generation, expires_at)
VALUES (@token_hash, @user_id, @family_id, @user_generation, @expires_at);

-- name: RefreshTokenUse :one
-- RefreshTokenUse marks an unused, unexpired token as used and returns it. Exactly one of
-- several concurrent uses of the same token succeeds.
UPDATE refresh_tokens
SET used_at = clock_timestamp()
WHERE token_hash = @token_hash AND used_at IS NULL AND expires_at > now()
RETURNING *;

-- name: RefreshTokenGetForUpdate :one
-- RefreshTokenGetForUpdate reads a token and locks it, so that concurrent presentations of
-- one spent token are decided one after the other.
SELECT * FROM refresh_tokens WHERE token_hash = @token_hash FOR UPDATE;

-- name: RefreshTokenFamilyUsedSince :one
-- RefreshTokenFamilyUsedSince reports whether a token of the family was used after the
-- given time: a spent token presented again after its successor was used is a replay.
SELECT EXISTS (SELECT 1 FROM refresh_tokens WHERE family_id = @family_id AND used_at > @used_at);

-- name: RefreshTokenDeleteUnused :exec
-- RefreshTokenDeleteUnused deletes the family's unused tokens: the successor a client never
-- received is replaced by the one issued on its retry.
DELETE FROM refresh_tokens WHERE family_id = @family_id AND used_at IS NULL;

-- name: RefreshTokenRevokeFamily :exec
DELETE FROM refresh_tokens WHERE family_id = @family_id;

-- name: RefreshTokenRevokeUser :exec
DELETE FROM refresh_tokens WHERE user_id = @user_id;

-- name: RefreshTokenDeleteExpired :execrows
-- RefreshTokenDeleteExpired removes tokens past their expiry (a replayed expired token is
-- refused either way).
DELETE FROM refresh_tokens WHERE expires_at < now() - interval '1 day';

-- name: RefreshTokenDelete :exec
-- RefreshTokenDelete removes one refresh token (the web portal spends none: it drops the
-- one its login receives).
DELETE FROM refresh_tokens WHERE token_hash = @token_hash;
