-- +goose Up

-- App bundle versions. The files themselves live in blob storage, addressed by their
-- SHA-256 (identical files are stored once across versions); these tables hold what the
-- server knows about each version. A version never changes once stored.
CREATE TABLE app_bundle_versions (
    version       integer     PRIMARY KEY CHECK (version > 0),
    -- The uploaded archive, served by download-zip.
    zip_sha256    bytea       NOT NULL CHECK (length(zip_sha256) = 32),
    zip_size      bigint      NOT NULL,
    -- SHA-256 (hex) over the sorted (path, file hash, size) list: content only, so the
    -- same bundle always gets the same hash.
    manifest_hash text        NOT NULL,
    file_count    integer     NOT NULL,
    total_size    bigint      NOT NULL,
    pushed_by     text        NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT date_trunc('second', now())
);

CREATE TABLE app_bundle_files (
    version      integer     NOT NULL REFERENCES app_bundle_versions (version) ON DELETE CASCADE,
    path         text        NOT NULL,
    sha256       bytea       NOT NULL CHECK (length(sha256) = 32),
    size         bigint      NOT NULL,
    content_type text        NOT NULL,
    mod_time     timestamptz NOT NULL,
    PRIMARY KEY (version, path)
);

-- The form index of each version, from which changes and the forms list are computed.
-- Hashes are SHA-256 (hex) of canonical JSON; core_fields maps each core field to the
-- properties that must not change. json rather than jsonb keeps the canonical text as
-- written, so what is read back compares byte for byte.
CREATE TABLE app_bundle_forms (
    version     integer NOT NULL REFERENCES app_bundle_versions (version) ON DELETE CASCADE,
    name        text    NOT NULL,
    schema_hash text    NOT NULL,
    ui_hash     text    NOT NULL,
    core_hash   text    NOT NULL,
    core_fields json    NOT NULL,
    fields      json    NOT NULL,
    PRIMARY KEY (version, name)
);

-- The one row that says which version is active. A switch is one update of this row, so
-- every reader sees either the old version or the new one. Pushes lock it to allocate
-- version numbers; the foreign key makes deleting the active version impossible.
CREATE TABLE app_bundle_state (
    id             integer     PRIMARY KEY CHECK (id = 1),
    last_version   integer     NOT NULL DEFAULT 0,
    active_version integer     REFERENCES app_bundle_versions (version),
    switched_at    timestamptz,
    switched_by    text
);
INSERT INTO app_bundle_state (id) VALUES (1);

-- +goose Down
DROP TABLE app_bundle_state;
DROP TABLE app_bundle_forms;
DROP TABLE app_bundle_files;
DROP TABLE app_bundle_versions;
