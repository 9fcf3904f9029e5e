-- name: PresenceUpsertBatch :exec
-- PresenceUpsertBatch records last activity for many (user, client) pairs at once. Times only
-- move forward and hints are never cleared by an event that lacks them.
INSERT INTO user_client_presence AS p (user_id, client_id, last_seen_at, last_data_version, app_bundle_version, last_ode_version)
SELECT r.user_id, r.client_id, r.last_seen_at, r.last_data_version, r.app_bundle_version, r.last_ode_version
FROM json_to_recordset(@events::json) AS r (
    user_id uuid, client_id text, last_seen_at timestamptz, last_data_version bigint,
    app_bundle_version text, last_ode_version text)
WHERE EXISTS (SELECT 1 FROM users u WHERE u.id = r.user_id)
ON CONFLICT (user_id, client_id) DO UPDATE SET
    last_seen_at = GREATEST(p.last_seen_at, EXCLUDED.last_seen_at),
    last_data_version = COALESCE(EXCLUDED.last_data_version, p.last_data_version),
    app_bundle_version = COALESCE(EXCLUDED.app_bundle_version, p.app_bundle_version),
    last_ode_version = COALESCE(EXCLUDED.last_ode_version, p.last_ode_version);

-- name: PresenceList :many
SELECT * FROM user_client_presence ORDER BY user_id, last_seen_at DESC, client_id;
