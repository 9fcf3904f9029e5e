-- +goose Up

-- Every push now stages all of its records before it is written, parsed into the columns
-- observations has: the push's goroutine does that on its own connection, in parallel with
-- the others, so that the group write, which holds the write lock, only copies rows and
-- parses nothing (see server/obsync/commit.go). The columns are NULL for a record that
-- cannot be stored. meta is what servers before this migration staged instead; they read
-- only what they wrote themselves, so both kinds of rows can live here during an upgrade.
-- (Later, pushes that fit in one chunk were held in memory and sent with the group write
-- instead; only larger ones are staged. See server/obsync/batch.go.)
ALTER TABLE push_staging
    ADD COLUMN observation_id    text,
    ADD COLUMN form_type         text,
    ADD COLUMN form_version      text,
    ADD COLUMN author            text,
    ADD COLUMN device_id         text,
    ADD COLUMN tags              text[],
    ADD COLUMN record_created_at timestamptz,
    ADD COLUMN created_at_text   text,
    ADD COLUMN record_updated_at timestamptz,
    ADD COLUMN updated_at_text   text,
    ADD COLUMN deleted           boolean,
    ADD COLUMN content_hash      bytea,
    ADD COLUMN data              json,
    ADD COLUMN geolocation       json;

-- +goose Down
ALTER TABLE push_staging
    DROP COLUMN observation_id, DROP COLUMN form_type, DROP COLUMN form_version, DROP COLUMN author,
    DROP COLUMN device_id, DROP COLUMN tags, DROP COLUMN record_created_at, DROP COLUMN created_at_text,
    DROP COLUMN record_updated_at, DROP COLUMN updated_at_text, DROP COLUMN deleted, DROP COLUMN content_hash,
    DROP COLUMN data, DROP COLUMN geolocation;
