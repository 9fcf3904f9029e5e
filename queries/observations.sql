-- name: ObservationSizesSince :many
-- ObservationSizesSince returns the size of each of the next changes after a version as
-- it was pushed, in version order, so that a pull can bound its page by bytes.
SELECT record_bytes FROM observations
WHERE version > @since
ORDER BY version
LIMIT @max_rows;

-- name: ObservationSizesSinceForTypes :many
-- ObservationSizesSinceForTypes is ObservationSizesSince restricted to some form types.
SELECT record_bytes FROM observations
WHERE version > @since AND form_type = ANY (@form_types::text[])
ORDER BY version
LIMIT @max_rows;

-- name: ObservationListSince :many
-- ObservationListSince returns the changes after a version in version order.
SELECT observation_id, version, form_type, form_version, data, geolocation, extra, author, device_id, tags,
       created_at_text, updated_at_text, deleted, synced_at
FROM observations
WHERE version > @since
ORDER BY version
LIMIT @max_rows;

-- name: ObservationListSinceForTypes :many
-- ObservationListSinceForTypes is ObservationListSince restricted to some form types.
SELECT observation_id, version, form_type, form_version, data, geolocation, extra, author, device_id, tags,
       created_at_text, updated_at_text, deleted, synced_at
FROM observations
WHERE version > @since AND form_type = ANY (@form_types::text[])
ORDER BY version
LIMIT @max_rows;

-- name: ObservationGet :one
SELECT * FROM observations WHERE observation_id = @observation_id;

-- name: ObservationWriteGroup :exec
-- ObservationWriteGroup is the whole write of a group of pushes (one or more), in one
-- statement: it moves the states being replaced into the history, upserts the winning
-- records, records the losing ones, quarantines the records that cannot be stored,
-- advances current_version, stores each push's receipt and removes its staged records.
-- The records are those each push staged in push_staging under its batch id; server/obsync
-- decided every one of them beforehand, push after push, under the write lock. The @push_*
-- arrays hold one element per push that writes (@push_seqs numbers them from 1), the @rec_*
-- arrays one element per decided record, of the push @rec_push (@rec_observation_id is
-- empty for a quarantined record): "write" rows carry their
-- new version and become the stored state (one per id in the whole group), "history" rows
-- (conflict losers, and winners replaced later in the group, which keep their version) go
-- only to the history, "quarantine" rows carry the reason. A push without a request hash
-- stores no receipt (an admin's retry of a quarantined record). The staged records are
-- deleted when @clear_staging.
WITH pushes AS (
    SELECT unnest(@push_seqs::integer[]) AS seq, unnest(@push_batch_ids::uuid[]) AS batch_id,
           unnest(@push_client_ids::text[]) AS client_id, unnest(@push_transmission_ids::text[]) AS transmission_id,
           unnest(@push_pushed_by::text[]) AS pushed_by, unnest(@push_request_hashes::bytea[]) AS request_hash,
           unnest(@push_responses::text[]) AS response
),
rec AS (
    SELECT unnest(@rec_push::integer[]) AS push, unnest(@rec_idx::integer[]) AS idx,
           unnest(@rec_observation_id::text[]) AS observation_id,
           unnest(@rec_outcome::text[]) AS outcome, unnest(@rec_status::text[]) AS status,
           unnest(@rec_version::bigint[]) AS version, unnest(@rec_conflict::boolean[]) AS conflict,
           unnest(@rec_reported_id::text[]) AS reported_id, unnest(@rec_code::text[]) AS code,
           unnest(@rec_reason::text[]) AS reason
),
-- The decisions with their push; the records' values are read from push_staging by each
-- insert that needs them, rather than copied once more into this CTE.
decided AS (
    SELECT r.push, r.idx, r.observation_id, r.outcome, r.status, NULLIF(r.version, 0) AS version, r.conflict,
           r.reported_id, r.code, r.reason, p.batch_id, p.pushed_by, p.client_id, p.transmission_id
    FROM rec r
    JOIN pushes p ON p.seq = r.push
),
history AS (
    -- One ordered insert, so that the history lists oldest first (ObservationRevisionList
    -- orders by id): the states the group replaces arrived before anything in it, and the
    -- group's own history rows follow in push order.
    INSERT INTO observation_revisions (
        observation_id, version, status, conflict, form_type, form_version, data, geolocation, extra,
        author, device_id, tags, created_at_text, updated_at_text, deleted,
        received_at, pushed_by, client_id, transmission_id)
    SELECT h.observation_id, h.version, h.status, h.conflict, h.form_type, h.form_version, h.data, h.geolocation,
           h.extra, h.author, h.device_id, h.tags, h.created_at_text, h.updated_at_text, h.deleted,
           h.received_at, h.pushed_by, h.client_id, h.transmission_id
    FROM (
        SELECT 0 AS arrival, 0 AS push, d.idx, o.observation_id, o.version, 'superseded'::text AS status, o.conflict,
               o.form_type, o.form_version, o.data, o.geolocation, o.extra, o.author, o.device_id, o.tags,
               o.created_at_text, o.updated_at_text, o.deleted,
               o.synced_at AS received_at, o.pushed_by, o.client_id, o.transmission_id
        FROM observations o
        JOIN decided d ON d.observation_id = o.observation_id AND d.outcome = 'write'
        UNION ALL
        SELECT 1, d.push, d.idx, s.observation_id, d.version, d.status, d.conflict,
               s.form_type, s.form_version, s.data, s.geolocation, NULLIF(s.extra, '')::json, s.author, s.device_id, s.tags,
               s.created_at_text, s.updated_at_text, s.deleted,
               now(), d.pushed_by, d.client_id, d.transmission_id
        FROM decided d
        JOIN push_staging s ON s.batch_id = d.batch_id AND s.idx = d.idx
        WHERE d.outcome = 'history'
    ) h
    ORDER BY h.arrival, h.push, h.idx
),
written AS (
    INSERT INTO observations AS o (
        observation_id, version, form_type, form_version, data, geolocation, extra, author, device_id, tags,
        created_at, created_at_text, updated_at, updated_at_text, deleted, content_hash, conflict,
        record_bytes, synced_at, pushed_by, client_id, transmission_id)
    SELECT s.observation_id, d.version, s.form_type, s.form_version, s.data, s.geolocation, NULLIF(s.extra, '')::json,
           s.author, s.device_id, s.tags, s.record_created_at, s.created_at_text, s.record_updated_at, s.updated_at_text,
           s.deleted, s.content_hash, d.conflict, octet_length(s.raw),
           now(), d.pushed_by, d.client_id, d.transmission_id
    FROM decided d
    JOIN push_staging s ON s.batch_id = d.batch_id AND s.idx = d.idx
    WHERE d.outcome = 'write'
    ON CONFLICT (observation_id) DO UPDATE SET
        version = EXCLUDED.version, form_type = EXCLUDED.form_type, form_version = EXCLUDED.form_version,
        data = EXCLUDED.data, geolocation = EXCLUDED.geolocation, extra = EXCLUDED.extra, author = EXCLUDED.author,
        device_id = EXCLUDED.device_id, tags = EXCLUDED.tags, created_at = EXCLUDED.created_at,
        created_at_text = EXCLUDED.created_at_text, updated_at = EXCLUDED.updated_at,
        updated_at_text = EXCLUDED.updated_at_text, deleted = EXCLUDED.deleted,
        content_hash = EXCLUDED.content_hash, conflict = EXCLUDED.conflict, record_bytes = EXCLUDED.record_bytes,
        synced_at = EXCLUDED.synced_at, pushed_by = EXCLUDED.pushed_by, client_id = EXCLUDED.client_id,
        transmission_id = EXCLUDED.transmission_id
),
quarantined AS (
    INSERT INTO quarantined_records (raw, client_id, transmission_id, record_index, pushed_by, observation_id, code, reason)
    SELECT s.raw, d.client_id, d.transmission_id, d.idx, d.pushed_by, NULLIF(d.reported_id, ''), d.code, d.reason
    FROM decided d
    JOIN push_staging s ON s.batch_id = d.batch_id AND s.idx = d.idx
    WHERE d.outcome = 'quarantine'
    ON CONFLICT (client_id, transmission_id, record_index) DO NOTHING
),
advanced AS (
    -- Under the write lock current_version is the value the group read, and this only moves
    -- it forward; GREATEST makes sure it never goes back, so that the concurrency proof can
    -- hand out versions outside the lock on purpose and see pulls miss changes.
    UPDATE sync_state SET current_version = GREATEST(current_version, @current_version::bigint) WHERE id = 1
),
cleared AS (
    -- The pushes' staged records are done with (unless this write only probes a record).
    DELETE FROM push_staging WHERE batch_id = ANY (@push_batch_ids::uuid[]) AND @clear_staging::boolean
)
-- The receipts were read under the write lock, which every writer of a receipt holds: a
-- receipt stored meanwhile is a unique violation, which fails the write, never one that
-- is silently not stored.
INSERT INTO push_receipts (client_id, transmission_id, request_hash, response)
SELECT p.client_id, p.transmission_id, p.request_hash, p.response::jsonb
FROM pushes p
WHERE p.request_hash IS NOT NULL;

-- name: ObservationDeleteAll :exec
DELETE FROM observations;

-- name: ObservationStatsByFormType :many
-- ObservationStatsByFormType counts live observations per form type; blank types are grouped.
SELECT COALESCE(NULLIF(btrim(form_type), ''), '(no form type)')::text AS form_type, count(*) AS count
FROM observations
WHERE NOT deleted
GROUP BY 1
ORDER BY lower(COALESCE(NULLIF(btrim(form_type), ''), '(no form type)')), 1;

-- name: ObservationStatsDays :many
-- ObservationStatsDays counts live observations per UTC day of their created_at within a range.
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, count(*) AS count
FROM observations
WHERE NOT deleted
  AND created_at >= @range_start::timestamptz AND created_at < @range_end::timestamptz
GROUP BY 1
ORDER BY 1;

-- name: ObservationStatsSpan :one
-- ObservationStatsSpan returns the earliest and latest created_at of live observations.
SELECT min(created_at)::timestamptz AS first_created, max(created_at)::timestamptz AS last_created
FROM observations
WHERE NOT deleted;

-- name: ObservationExportFormTypes :many
-- ObservationExportFormTypes lists, in order, the form types after @after (all when it
-- is null) that hold observations an export selects; an export walks them page by page.
SELECT DISTINCT form_type
FROM observations
WHERE (sqlc.narg(after)::text IS NULL OR form_type > sqlc.narg(after)::text)
  AND (coalesce(cardinality(@form_types::text[]), 0) = 0 OR form_type = ANY (@form_types::text[]))
  AND version > @since_version
  AND (@include_deleted::boolean OR NOT deleted)
ORDER BY form_type
LIMIT @max_rows;

-- name: ObservationList :many
-- ObservationList pages through current states for browsing, newest version first. Every
-- filter is optional; the author filter is a case-insensitive substring match (strpos, so
-- the text is never read as a LIKE pattern). has_conflicts tells whether any revision of
-- the observation arrived in conflict.
SELECT o.observation_id, o.version, o.form_type, o.form_version, o.author, o.device_id, o.created_at_text,
       o.updated_at_text, o.synced_at, o.deleted, o.conflict, o.pushed_by,
       (o.conflict OR EXISTS (SELECT 1 FROM observation_revisions r
                              WHERE r.observation_id = o.observation_id AND r.conflict))::boolean AS has_conflicts
FROM observations o
WHERE (sqlc.narg('before_version')::bigint IS NULL OR o.version < sqlc.narg('before_version')::bigint)
  AND (sqlc.narg('form_type')::text IS NULL OR o.form_type = sqlc.narg('form_type')::text)
  AND (sqlc.narg('author')::text IS NULL OR strpos(lower(o.author), lower(sqlc.narg('author')::text)) > 0)
  AND (sqlc.narg('created_from')::timestamptz IS NULL OR o.created_at >= sqlc.narg('created_from')::timestamptz)
  AND (sqlc.narg('created_to')::timestamptz IS NULL OR o.created_at < sqlc.narg('created_to')::timestamptz)
  AND (@include_deleted::boolean OR NOT o.deleted)
  AND (NOT @conflicts_only::boolean OR o.conflict OR EXISTS (
        SELECT 1 FROM observation_revisions r WHERE r.observation_id = o.observation_id AND r.conflict))
ORDER BY o.version DESC
LIMIT @max_rows;
