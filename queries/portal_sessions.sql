-- name: PortalSessionCreate :exec
INSERT INTO portal_sessions (token_hash, user_id, username, role, csrf_token, token_generation, expires_at)
VALUES (@token_hash, @user_id, @username, @role, @csrf_token, @token_generation, @expires_at);

-- name: PortalSessionTouch :one
-- PortalSessionTouch returns a live session (neither past its absolute expiry nor idle for
-- longer than the idle timeout) and records this use of it.
UPDATE portal_sessions
SET last_seen_at = now()
WHERE token_hash = @token_hash
  AND expires_at > now()
  AND last_seen_at > now() - make_interval(secs => @idle_seconds::float8)
RETURNING *;

-- name: PortalSessionDelete :exec
DELETE FROM portal_sessions WHERE token_hash = @token_hash;

-- name: PortalSessionDeleteExpired :execrows
-- PortalSessionDeleteExpired removes sessions past their absolute expiry or idle too long.
DELETE FROM portal_sessions
WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(secs => @idle_seconds::float8);
