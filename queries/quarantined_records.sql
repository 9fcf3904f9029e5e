-- name: QuarantinedRecordList :many
-- QuarantinedRecordList returns quarantined records after an id, oldest first, optionally
-- only those of a client, a push, an observation or a reason code. The raw record is left
-- out: it can be as large as a push.
SELECT id, client_id, transmission_id, record_index, pushed_by, observation_id, code, reason, received_at,
       octet_length(raw)::integer AS bytes
FROM quarantined_records
WHERE id > @after
  AND (sqlc.narg('client_id')::text IS NULL OR client_id = sqlc.narg('client_id'))
  AND (sqlc.narg('transmission_id')::text IS NULL OR transmission_id = sqlc.narg('transmission_id'))
  AND (sqlc.narg('observation_id')::text IS NULL OR observation_id = sqlc.narg('observation_id'))
  AND (sqlc.narg('code')::text IS NULL OR code = sqlc.narg('code'))
ORDER BY id
LIMIT @max_rows;

-- name: QuarantinedRecordGet :one
SELECT * FROM quarantined_records WHERE id = @id;

-- name: QuarantinedRecordDelete :one
-- QuarantinedRecordDelete removes a quarantined record; of several concurrent deletes (a
-- retry and a discard) exactly one gets the row back.
DELETE FROM quarantined_records WHERE id = @id RETURNING id;

-- name: QuarantinedRecordDeleteAll :exec
DELETE FROM quarantined_records;

-- name: QuarantinedRecordCount :one
-- QuarantinedRecordCount is how many records wait in the quarantine for an admin.
SELECT count(*) FROM quarantined_records;
