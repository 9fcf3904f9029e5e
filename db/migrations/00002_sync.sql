-- +goose Up

-- The one row that orders all observation writes. current_version is the highest version
-- handed out; a push locks this row only for its final write and commit (see
-- queries/sync_state.sql), so versions become visible in commit order.
CREATE TABLE sync_state (
    id                    integer     PRIMARY KEY CHECK (id = 1),
    current_version       bigint      NOT NULL DEFAULT 0,
    repository_generation bigint      NOT NULL DEFAULT 1 CHECK (repository_generation >= 1),
    last_reset_at         timestamptz,
    last_reset_by         text
);
INSERT INTO sync_state (id) VALUES (1);

-- The current state of every observation. Contract fields are kept exactly as the client
-- sent them: data and geolocation as json text, timestamps as the client's text beside
-- their parsed values (used for conflict resolution, ordering and stats).
CREATE TABLE observations (
    observation_id  text        PRIMARY KEY,
    version         bigint      NOT NULL,
    form_type       text        NOT NULL,
    form_version    text        NOT NULL,
    data            json        NOT NULL,
    geolocation     json,
    author          text,
    device_id       text,
    tags            text[],
    created_at      timestamptz NOT NULL,
    created_at_text text        NOT NULL,
    updated_at      timestamptz NOT NULL,
    updated_at_text text        NOT NULL,
    deleted         boolean     NOT NULL,
    content_hash    bytea       NOT NULL,
    conflict        boolean     NOT NULL DEFAULT false,
    synced_at       timestamptz NOT NULL,
    pushed_by       text        NOT NULL,
    client_id       text        NOT NULL,
    transmission_id text        NOT NULL
);
CREATE UNIQUE INDEX observations_version_idx ON observations (version);
CREATE INDEX observations_form_type_version_idx ON observations (form_type, version);
CREATE INDEX observations_live_created_idx ON observations (created_at) WHERE NOT deleted;

-- Every revision that is not the current one: earlier states that were replaced
-- (superseded, with the version they held) and incoming writes that lost a conflict
-- (rejected, never current, no version). Together with observations this is the full history.
CREATE TABLE observation_revisions (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    observation_id  text        NOT NULL,
    version         bigint,
    status          text        NOT NULL CHECK (status IN ('superseded', 'rejected')),
    conflict        boolean     NOT NULL,
    form_type       text        NOT NULL,
    form_version    text        NOT NULL,
    data            json        NOT NULL,
    geolocation     json,
    author          text,
    device_id       text,
    tags            text[],
    created_at_text text        NOT NULL,
    updated_at_text text        NOT NULL,
    deleted         boolean     NOT NULL,
    received_at     timestamptz NOT NULL,
    pushed_by       text        NOT NULL,
    client_id       text        NOT NULL,
    transmission_id text        NOT NULL
);
CREATE INDEX observation_revisions_observation_idx ON observation_revisions (observation_id, id);

-- The answer given to each push, so that a replayed transmission returns it unchanged.
CREATE TABLE push_receipts (
    client_id       text        NOT NULL,
    transmission_id text        NOT NULL,
    request_hash    bytea       NOT NULL,
    response        jsonb       NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (client_id, transmission_id)
);
CREATE INDEX push_receipts_created_idx ON push_receipts (created_at);

-- Last activity per user and client, shown in the admin user list.
CREATE TABLE user_client_presence (
    user_id            uuid        NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    client_id          text        NOT NULL DEFAULT '',
    last_seen_at       timestamptz NOT NULL,
    last_data_version  bigint,
    app_bundle_version text,
    last_ode_version   text,
    PRIMARY KEY (user_id, client_id)
);

-- Form data is compressed with lz4, several times cheaper in CPU than the default pglz.
-- (A DO block because sqlc's SQL parser does not know the COMPRESSION clause.)
-- +goose StatementBegin
DO $$
BEGIN
    ALTER TABLE observations ALTER COLUMN data SET COMPRESSION lz4;
    ALTER TABLE observation_revisions ALTER COLUMN data SET COMPRESSION lz4;
END
$$;
-- +goose StatementEnd

-- +goose Down
DROP TABLE user_client_presence;
DROP TABLE push_receipts;
DROP TABLE observation_revisions;
DROP TABLE observations;
DROP TABLE sync_state;
