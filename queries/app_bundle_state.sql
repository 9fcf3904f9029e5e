-- name: AppBundleStateLock :one
-- AppBundleStateLock takes the lock that orders version allocation, activation and
-- retention, until the end of the transaction.
SELECT last_version, active_version FROM app_bundle_state WHERE id = 1 FOR UPDATE;

-- name: AppBundleStateNextVersion :one
-- AppBundleStateNextVersion allocates the next version number (never reused, even after
-- retention deleted the version that held it).
UPDATE app_bundle_state SET last_version = last_version + 1 WHERE id = 1 RETURNING last_version;

-- name: AppBundleStateActivate :exec
UPDATE app_bundle_state
SET active_version = @version, switched_at = now(), switched_by = @switched_by
WHERE id = 1;
