-- +goose Up

-- Accounts. Usernames are compared exactly (upstream did the same); roles are a closed set.
CREATE TABLE users (
    id                 uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    username           text        NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 255),
    password_hash      text        NOT NULL,
    role               text        NOT NULL CHECK (role IN ('read-only', 'read-write', 'admin')),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- Access tokens issued before this instant (whole seconds) are refused: set when the
    -- password or the role changes, so stolen or stale tokens stop working at once.
    tokens_valid_after timestamptz NOT NULL DEFAULT 'epoch'
);

-- Refresh tokens are opaque; only their SHA-256 is stored. Each use rotates the token
-- within its family; a second use of a rotated token revokes the whole family.
CREATE TABLE refresh_tokens (
    token_hash  bytea       PRIMARY KEY,
    user_id     uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    family_id   uuid        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX refresh_tokens_user_idx ON refresh_tokens (user_id);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires_idx ON refresh_tokens (expires_at);

-- Secrets shared by every server process of this database (the generated JWT key).
CREATE TABLE server_secrets (
    name       text        PRIMARY KEY,
    value      bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- +goose Down
DROP TABLE server_secrets;
DROP TABLE refresh_tokens;
DROP TABLE users;
