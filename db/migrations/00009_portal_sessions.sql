-- +goose Up

-- Sessions of the web portal (/portal). The browser holds a random token in an HttpOnly
-- cookie; only its SHA-256 is stored. The portal calls the API in process with short-lived
-- access tokens of the credential generation the session signed in with, so the API's own
-- token checks end a session when the user's password or role changes or the user is deleted.
CREATE TABLE portal_sessions (
    token_hash       bytea       PRIMARY KEY,
    user_id          uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    username         text        NOT NULL,
    role             text        NOT NULL,
    -- The synchronizer token every state-changing form of this session must carry.
    csrf_token       text        NOT NULL,
    token_generation bigint      NOT NULL,
    last_seen_at     timestamptz NOT NULL DEFAULT now(),
    expires_at       timestamptz NOT NULL
);
CREATE INDEX portal_sessions_user_idx ON portal_sessions (user_id);
CREATE INDEX portal_sessions_expires_idx ON portal_sessions (expires_at);

-- +goose Down
DROP TABLE portal_sessions;
