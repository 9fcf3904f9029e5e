-- +goose Up

-- Every access and refresh token carries the generation of its account's credentials. A
-- password change or a role change starts a new generation, which ends every token of the
-- previous ones at once; the former cut-off time could not tell apart the tokens issued in
-- the same second as the change.
ALTER TABLE users ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;
-- Access tokens issued before this migration carry no generation and count as generation 0.
-- Accounts whose credentials changed at some point start at 1, so that the tokens the change
-- revoked stay revoked (their current holders log in once more).
UPDATE users SET token_generation = 1 WHERE tokens_valid_after > 'epoch';
ALTER TABLE users DROP COLUMN tokens_valid_after;

ALTER TABLE refresh_tokens ADD COLUMN user_generation bigint NOT NULL DEFAULT 0;
-- A change of credentials deletes the account's refresh tokens, so every stored one was
-- issued in the account's present generation.
UPDATE refresh_tokens rt SET user_generation = u.token_generation FROM users u WHERE u.id = rt.user_id;

-- +goose Down
ALTER TABLE refresh_tokens DROP COLUMN user_generation;
ALTER TABLE users ADD COLUMN tokens_valid_after timestamptz NOT NULL DEFAULT 'epoch';
ALTER TABLE users DROP COLUMN token_generation;
