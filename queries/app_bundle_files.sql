-- name: AppBundleFileInsertBatch :exec
INSERT INTO app_bundle_files (version, path, sha256, size, content_type, mod_time)
SELECT @version::integer, unnest(@paths::text[]), unnest(@sha256s::bytea[]), unnest(@sizes::bigint[]),
       unnest(@content_types::text[]), unnest(@mod_times::timestamptz[]);

-- name: AppBundleFileList :many
SELECT path, sha256, size, content_type, mod_time
FROM app_bundle_files
WHERE version = @version
ORDER BY path COLLATE "C";

-- name: AppBundleFileGetServed :one
-- AppBundleFileGetServed finds a file of the active version, or of the newest one when
-- @preview is set. Paths are matched exactly: nothing outside the version's list is served.
SELECT version, path, sha256, size, content_type, mod_time
FROM app_bundle_files
WHERE path = @path
  AND version = CASE WHEN @preview::boolean
                     THEN (SELECT max(version) FROM app_bundle_versions)
                     ELSE (SELECT active_version FROM app_bundle_state WHERE id = 1) END;
