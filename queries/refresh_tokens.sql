-- name: RefreshTokenCreate :exec
INSERT INTO refresh_tokens (token_hash, user_id, family_id, expires_at)
VALUES (@token_hash, @user_id, @family_id, @expires_at);

-- name: RefreshTokenUse :one
-- RefreshTokenUse marks an unused, unexpired token as used and returns it. Exactly one of
-- several concurrent uses of the same token succeeds.
UPDATE refresh_tokens
SET used_at = now()
WHERE token_hash = @token_hash AND used_at IS NULL AND expires_at > now()
RETURNING user_id, family_id;

-- name: RefreshTokenGet :one
SELECT * FROM refresh_tokens WHERE token_hash = @token_hash;

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
