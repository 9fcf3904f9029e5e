-- name: LoginFailureGet :many
-- LoginFailureGet returns the live counters among the given keys.
SELECT key, expires_at, failures, admitted
FROM login_failures
WHERE key = ANY(@keys::bytea[]) AND expires_at > @now;

-- name: LoginFailureAdd :exec
-- LoginFailureAdd counts a failure in each given counter: a counter whose window has ended
-- (or that does not exist) starts a new window with this failure, ending at its expires_at.
INSERT INTO login_failures AS lf (key, expires_at, failures)
SELECT unnest(@keys::bytea[]), unnest(@expires::timestamptz[]), 1
ON CONFLICT (key) DO UPDATE SET
    failures   = CASE WHEN lf.expires_at <= @now THEN 1 ELSE lf.failures + 1 END,
    expires_at = CASE WHEN lf.expires_at <= @now THEN EXCLUDED.expires_at ELSE lf.expires_at END;

-- name: LoginFailureAdmit :execrows
-- LoginFailureAdmit lets one attempt through an account over its limit: it succeeds for one
-- caller per pace, whichever server process each caller reached.
UPDATE login_failures
SET admitted = @now::timestamptz
WHERE key = @key AND expires_at > @now AND (admitted IS NULL OR admitted <= @not_after::timestamptz);

-- name: LoginFailureDelete :exec
DELETE FROM login_failures WHERE key = @key;

-- name: LoginFailureDeleteExpired :execrows
-- LoginFailureDeleteExpired removes the counters whose window has ended.
DELETE FROM login_failures WHERE expires_at <= now();
