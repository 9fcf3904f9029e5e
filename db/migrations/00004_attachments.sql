-- +goose Up

-- The latest state of every attachment id: a stored file, or a tombstone after an admin
-- deleted it. version comes from sync_state.current_version, the counter observations use,
-- and changes with every operation, so "the latest operation per attachment since version
-- N" is the rows with version > N. The bytes live in the blob store under blob_key (the
-- upload as received) and, when image processing made a smaller copy, under
-- blob_key || '-processed'; both start with blob_key, so deleting that prefix removes both.
CREATE TABLE attachments (
    attachment_id    text        PRIMARY KEY,
    version          bigint      NOT NULL,
    deleted          boolean     NOT NULL,
    blob_key         text,
    -- The upload as received: what a retried upload is compared with.
    size             bigint,
    sha256           bytea,
    content_type     text,
    -- The processed copy, served by default; NULL when none was kept.
    processed_size   bigint,
    processed_sha256 bytea,
    uploaded_at      timestamptz NOT NULL,
    uploaded_by      text        NOT NULL,
    deleted_at       timestamptz,
    deleted_by       text,
    CHECK (deleted OR (blob_key IS NOT NULL AND size IS NOT NULL AND sha256 IS NOT NULL AND content_type IS NOT NULL)),
    CHECK ((processed_size IS NULL) = (processed_sha256 IS NULL))
);
CREATE UNIQUE INDEX attachments_version_idx ON attachments (version);

-- Blob key prefixes no attachment row refers to: the blobs of uploads in progress (the
-- row is removed by the transaction that records the attachment), and of deleted or reset
-- attachments. The cleanup job deletes the blobs of every row past delete_after, then the
-- row, so a crash at any point leaves at worst a row to retry, never an orphaned file.
CREATE TABLE attachment_unclaimed_blobs (
    blob_key     text        PRIMARY KEY,
    delete_after timestamptz NOT NULL
);
CREATE INDEX attachment_unclaimed_blobs_due_idx ON attachment_unclaimed_blobs (delete_after);

-- +goose Down
DROP TABLE attachment_unclaimed_blobs;
DROP TABLE attachments;
