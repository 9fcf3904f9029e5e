-- name: AttachmentUploadBegin :one
-- AttachmentUploadBegin starts an upload in one round trip. It returns the server's
-- repository generation and, when the id is stored, the SHA-256 of its upload. Otherwise,
-- unless the client sent a generation other than the server's, it registers @blob_key as
-- unclaimed for @grace_seconds: the cleanup deletes the blob unless the upload is recorded
-- (and the registration removed) before then.
WITH stored AS (
    SELECT sha256 FROM attachments WHERE attachment_id = @attachment_id AND NOT deleted
),
state AS (
    SELECT repository_generation FROM sync_state WHERE id = 1
),
registered AS (
    INSERT INTO attachment_unclaimed_blobs (blob_key, delete_after)
    SELECT @blob_key, now() + make_interval(secs => @grace_seconds::float8)
    WHERE NOT EXISTS (SELECT 1 FROM stored)
      AND (sqlc.narg('generation')::bigint IS NULL OR sqlc.narg('generation')::bigint = (SELECT repository_generation FROM state))
    RETURNING true AS registered
)
SELECT (SELECT repository_generation FROM state)::bigint AS repository_generation,
       (SELECT sha256 FROM stored)::bytea AS stored_sha256,
       COALESCE((SELECT registered FROM registered), false)::boolean AS registered;

-- name: AttachmentCreate :execrows
-- AttachmentCreate records an upload under a version from SyncStateAdvance. It stores
-- nothing (0 rows) when the id holds a live attachment; a tombstone is replaced.
INSERT INTO attachments AS a (
    attachment_id, version, deleted, blob_key, size, sha256, content_type,
    processed_size, processed_sha256, uploaded_at, uploaded_by)
VALUES (@attachment_id, @version, false, @blob_key::text, @size::bigint, @sha256::bytea, @content_type::text,
        sqlc.narg('processed_size'), sqlc.narg('processed_sha256'), now(), @uploaded_by)
ON CONFLICT (attachment_id) DO UPDATE SET
    version = EXCLUDED.version, deleted = false, blob_key = EXCLUDED.blob_key, size = EXCLUDED.size,
    sha256 = EXCLUDED.sha256, content_type = EXCLUDED.content_type,
    processed_size = EXCLUDED.processed_size, processed_sha256 = EXCLUDED.processed_sha256,
    uploaded_at = EXCLUDED.uploaded_at, uploaded_by = EXCLUDED.uploaded_by,
    deleted_at = NULL, deleted_by = NULL
WHERE a.deleted;

-- name: AttachmentGet :one
-- AttachmentGet returns a stored (not deleted) attachment.
SELECT attachment_id, version, blob_key::text AS blob_key, size::bigint AS size, sha256::bytea AS sha256,
       content_type::text AS content_type, processed_size, processed_sha256, uploaded_at
FROM attachments
WHERE attachment_id = @attachment_id AND NOT deleted;

-- name: AttachmentDelete :one
-- AttachmentDelete turns a stored attachment into a tombstone under a version from
-- SyncStateAdvance and hands its blobs to the cleanup. It returns the number of
-- attachments deleted (0 or 1).
WITH old AS (
    SELECT o.attachment_id, o.blob_key FROM attachments o WHERE o.attachment_id = @attachment_id::text AND NOT o.deleted
),
tombstone AS (
    UPDATE attachments a
    SET version = @version::bigint, deleted = true, blob_key = NULL, size = NULL, sha256 = NULL, content_type = NULL,
        processed_size = NULL, processed_sha256 = NULL, deleted_at = now(), deleted_by = @deleted_by::text
    FROM old
    WHERE a.attachment_id = old.attachment_id
),
freed AS (
    INSERT INTO attachment_unclaimed_blobs (blob_key, delete_after)
    SELECT blob_key, now() FROM old
    ON CONFLICT (blob_key) DO NOTHING
)
SELECT count(*) FROM old;

-- name: AttachmentListSince :many
-- AttachmentListSince returns the attachments changed after a version, in version order:
-- for each, its latest operation. size is that of the copy served by default.
SELECT attachment_id, version, deleted, COALESCE(processed_size, size) AS size, content_type
FROM attachments
WHERE version > @since
ORDER BY version
LIMIT @max_rows;

-- name: AttachmentListStored :many
-- AttachmentListStored pages through the stored attachments in id order, after @after.
SELECT attachment_id, blob_key::text AS blob_key, content_type::text AS content_type, uploaded_at
FROM attachments
WHERE NOT deleted AND attachment_id > @after
ORDER BY attachment_id
LIMIT @max_rows;

-- name: AttachmentDeleteAll :exec
-- AttachmentDeleteAll erases every attachment and tombstone (a repository reset) and hands
-- the blobs to the cleanup.
WITH gone AS (
    DELETE FROM attachments RETURNING blob_key
)
INSERT INTO attachment_unclaimed_blobs (blob_key, delete_after)
SELECT blob_key, now() FROM gone WHERE blob_key IS NOT NULL
ON CONFLICT (blob_key) DO NOTHING;

-- name: AttachmentList :many
-- AttachmentList pages through the stored attachments for browsing, newest version first.
-- The id filter is a substring match (strpos, never a LIKE pattern); size is that of the
-- copy served by default.
SELECT attachment_id, version, COALESCE(processed_size, size)::bigint AS size,
       size::bigint AS original_size, (processed_size IS NOT NULL)::boolean AS processed,
       content_type::text AS content_type, uploaded_at, uploaded_by
FROM attachments
WHERE NOT deleted
  AND (sqlc.narg('before_version')::bigint IS NULL OR version < sqlc.narg('before_version')::bigint)
  AND (sqlc.narg('contains')::text IS NULL OR strpos(attachment_id, sqlc.narg('contains')::text) > 0)
  AND (sqlc.narg('content_type')::text IS NULL OR starts_with(content_type, sqlc.narg('content_type')::text))
ORDER BY version DESC
LIMIT @max_rows;
