-- name: AppBundleVersionInsert :one
INSERT INTO app_bundle_versions (version, zip_sha256, zip_size, manifest_hash, file_count, total_size, pushed_by)
VALUES (@version, @zip_sha256, @zip_size, @manifest_hash, @file_count, @total_size, @pushed_by)
RETURNING *;

-- name: AppBundleVersionGet :one
SELECT * FROM app_bundle_versions WHERE version = @version;

-- name: AppBundleVersionActive :one
-- AppBundleVersionActive returns the active version; no row when none was activated.
SELECT v.*
FROM app_bundle_state s
JOIN app_bundle_versions v ON v.version = s.active_version
WHERE s.id = 1;

-- name: AppBundleVersionNewest :one
SELECT * FROM app_bundle_versions ORDER BY version DESC LIMIT 1;

-- name: AppBundleVersionList :many
-- AppBundleVersionList lists the stored versions, newest first, marking the active one.
SELECT v.version, (v.version IS NOT DISTINCT FROM s.active_version)::boolean AS active
FROM app_bundle_versions v
CROSS JOIN app_bundle_state s
WHERE s.id = 1
ORDER BY v.version DESC;

-- name: AppBundleVersionDeleteOld :many
-- AppBundleVersionDeleteOld applies retention (with the state row locked): it keeps the
-- newest @keep versions and the active one, and deletes the rest with their files and forms.
DELETE FROM app_bundle_versions
WHERE version NOT IN (SELECT version FROM app_bundle_versions ORDER BY version DESC LIMIT @keep)
  AND version IS DISTINCT FROM (SELECT active_version FROM app_bundle_state WHERE id = 1)
RETURNING version;

-- name: AppBundleBlobsLockShared :exec
-- AppBundleBlobsLockShared is held (until the end of the transaction) by every push from
-- before it writes its files to blob storage until it commits the rows that reference
-- them, so that garbage collection never deletes a file a push is about to reference.
SELECT pg_advisory_xact_lock_shared(7331005);

-- name: AppBundleBlobsTryLock :one
-- AppBundleBlobsTryLock takes the same lock exclusively for garbage collection, without
-- waiting: when a push holds it, the collection is left to that push.
SELECT pg_try_advisory_xact_lock(7331005);

-- name: AppBundleBlobRefs :many
-- AppBundleBlobRefs lists every blob a stored version references.
SELECT sha256 FROM app_bundle_files
UNION
SELECT zip_sha256 FROM app_bundle_versions;
