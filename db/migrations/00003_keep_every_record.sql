-- +goose Up

-- The records of a push on their way in. The server writes them here in small chunks as it
-- reads the request body, so that a push of tens of MiB is never held in memory, and the
-- push transaction reads them from here. raw is the record exactly as sent; meta is what
-- validation read from it (NULL when it failed validation); extra holds its members the
-- contract does not name, as a JSON object ('' when there are none). Rows live for one
-- request: the push's write or, failing that, the end of the request deletes them, and the
-- cleanup job removes those of a process that died.
-- UNLOGGED: nothing here outlives a request, so it is not worth the WAL.
CREATE UNLOGGED TABLE push_staging (
    batch_id   uuid        NOT NULL,
    idx        integer     NOT NULL,
    raw        bytea       NOT NULL,
    meta       jsonb,
    extra      text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, idx)
);
CREATE INDEX push_staging_created_idx ON push_staging (created_at);
-- Rows are read once, right after they are written: rows of up to 8 kB (most records) stay
-- in the table's own pages, and larger records go to TOAST uncompressed (compressing them
-- would only cost CPU).
ALTER TABLE push_staging SET (toast_tuple_target = 8160);
ALTER TABLE push_staging ALTER COLUMN raw SET STORAGE EXTERNAL;

-- Pushed records that cannot be stored as observations, kept byte for byte (bytea: a
-- record may be invalid UTF-8) with who sent them and why, until an admin retries or
-- discards them. A push replayed after its receipt expired does not quarantine a record twice.
CREATE TABLE quarantined_records (
    id              bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raw             bytea       NOT NULL,
    client_id       text        NOT NULL,
    transmission_id text        NOT NULL,
    record_index    integer     NOT NULL,
    pushed_by       text        NOT NULL,
    observation_id  text,
    code            text        NOT NULL,
    reason          text        NOT NULL,
    received_at     timestamptz NOT NULL DEFAULT now(),
    UNIQUE (client_id, transmission_id, record_index)
);

-- extra: the record's members the contract does not name, as sent, returned on pull.
-- record_bytes: the record's size as pushed, which bounds a pull page by bytes.
ALTER TABLE observations ADD COLUMN extra json, ADD COLUMN record_bytes integer NOT NULL DEFAULT 0;
UPDATE observations SET record_bytes = octet_length(data::text) + coalesce(octet_length(geolocation::text), 0);
ALTER TABLE observations ALTER COLUMN record_bytes DROP DEFAULT;
ALTER TABLE observation_revisions ADD COLUMN extra json;

-- +goose Down
ALTER TABLE observation_revisions DROP COLUMN extra;
ALTER TABLE observations DROP COLUMN record_bytes, DROP COLUMN extra;
DROP TABLE quarantined_records;
DROP TABLE push_staging;
