-- name: ObservationListSince :many
-- ObservationListSince returns the changes after a version in version order.
SELECT observation_id, version, form_type, form_version, data, geolocation, author, device_id, tags,
       created_at_text, updated_at_text, deleted, synced_at
FROM observations
WHERE version > @since
ORDER BY version
LIMIT @max_rows;

-- name: ObservationListSinceForTypes :many
-- ObservationListSinceForTypes is ObservationListSince restricted to some form types.
SELECT observation_id, version, form_type, form_version, data, geolocation, author, device_id, tags,
       created_at_text, updated_at_text, deleted, synced_at
FROM observations
WHERE version > @since AND form_type = ANY (@form_types::text[])
ORDER BY version
LIMIT @max_rows;

-- name: ObservationHeadsByIDs :many
-- ObservationHeadsByIDs returns what conflict resolution needs of the stored rows.
SELECT observation_id, version, updated_at, content_hash
FROM observations
WHERE observation_id = ANY (@observation_ids::text[]);

-- name: ObservationGet :one
SELECT * FROM observations WHERE observation_id = @observation_id;

-- name: ObservationWriteBatch :one
-- ObservationWriteBatch is the whole write of one push, in one statement: it moves the
-- states being replaced into the history, upserts the winning records, records the losing
-- ones, advances current_version and stores the push receipt. @rows is a JSON array built by
-- server/obsync: "write" rows carry their new version and become the stored state, "history"
-- rows (conflict losers, and writes replaced later in the same push) go only to the history.
-- It returns false when another push with the same receipt committed first.
WITH incoming AS (
    SELECT x.idx,
           x.e ->> 'outcome' AS outcome,
           x.e ->> 'status' AS status,
           x.e ->> 'observation_id' AS observation_id,
           (x.e ->> 'version')::bigint AS version,
           (x.e ->> 'conflict')::boolean AS conflict,
           x.e ->> 'form_type' AS form_type,
           x.e ->> 'form_version' AS form_version,
           x.e ->> 'author' AS author,
           x.e ->> 'device_id' AS device_id,
           CASE WHEN jsonb_typeof(x.e -> 'tags') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(x.e -> 'tags')) END AS tags,
           (x.e ->> 'created_at')::timestamptz AS created_at,
           x.e ->> 'created_at_text' AS created_at_text,
           (x.e ->> 'updated_at')::timestamptz AS updated_at,
           x.e ->> 'updated_at_text' AS updated_at_text,
           (x.e ->> 'deleted')::boolean AS deleted,
           decode(x.e ->> 'content_hash', 'hex') AS content_hash,
           d.data,
           g.geolocation
    FROM jsonb_array_elements(@rows::jsonb) WITH ORDINALITY AS x (e, idx)
    -- data and geolocation travel as json[] rather than inside @rows: the json functions
    -- refuse \u0000 escapes when they unpack values, which the json type itself accepts.
    JOIN unnest(@data::json[]) WITH ORDINALITY AS d (data, idx) ON d.idx = x.idx
    JOIN unnest(@geolocations::json[]) WITH ORDINALITY AS g (geolocation, idx) ON g.idx = x.idx
),
superseded AS (
    INSERT INTO observation_revisions (
        observation_id, version, status, conflict, form_type, form_version, data, geolocation,
        author, device_id, tags, created_at_text, updated_at_text, deleted,
        received_at, pushed_by, client_id, transmission_id)
    SELECT o.observation_id, o.version, 'superseded', o.conflict, o.form_type, o.form_version, o.data,
           o.geolocation, o.author, o.device_id, o.tags, o.created_at_text, o.updated_at_text, o.deleted,
           o.synced_at, o.pushed_by, o.client_id, o.transmission_id
    FROM observations o
    JOIN incoming i ON i.observation_id = o.observation_id AND i.outcome = 'write'
),
rejected AS (
    INSERT INTO observation_revisions (
        observation_id, version, status, conflict, form_type, form_version, data, geolocation,
        author, device_id, tags, created_at_text, updated_at_text, deleted,
        received_at, pushed_by, client_id, transmission_id)
    SELECT i.observation_id, NULL, i.status, i.conflict, i.form_type, i.form_version, i.data,
           i.geolocation, i.author, i.device_id, i.tags, i.created_at_text, i.updated_at_text, i.deleted,
           now(), @pushed_by, @client_id, @transmission_id
    FROM incoming i
    WHERE i.outcome = 'history'
),
written AS (
    INSERT INTO observations AS o (
        observation_id, version, form_type, form_version, data, geolocation, author, device_id, tags,
        created_at, created_at_text, updated_at, updated_at_text, deleted, content_hash, conflict,
        synced_at, pushed_by, client_id, transmission_id)
    SELECT i.observation_id, i.version, i.form_type, i.form_version, i.data, i.geolocation, i.author,
           i.device_id, i.tags, i.created_at, i.created_at_text, i.updated_at, i.updated_at_text,
           i.deleted, i.content_hash, i.conflict,
           now(), @pushed_by, @client_id, @transmission_id
    FROM incoming i
    WHERE i.outcome = 'write'
    ON CONFLICT (observation_id) DO UPDATE SET
        version = EXCLUDED.version, form_type = EXCLUDED.form_type, form_version = EXCLUDED.form_version,
        data = EXCLUDED.data, geolocation = EXCLUDED.geolocation, author = EXCLUDED.author,
        device_id = EXCLUDED.device_id, tags = EXCLUDED.tags, created_at = EXCLUDED.created_at,
        created_at_text = EXCLUDED.created_at_text, updated_at = EXCLUDED.updated_at,
        updated_at_text = EXCLUDED.updated_at_text, deleted = EXCLUDED.deleted,
        content_hash = EXCLUDED.content_hash, conflict = EXCLUDED.conflict, synced_at = EXCLUDED.synced_at,
        pushed_by = EXCLUDED.pushed_by, client_id = EXCLUDED.client_id,
        transmission_id = EXCLUDED.transmission_id
),
advanced AS (
    UPDATE sync_state SET current_version = @current_version::bigint WHERE id = 1
),
receipt AS (
    INSERT INTO push_receipts (client_id, transmission_id, request_hash, response)
    VALUES (@client_id, @transmission_id, @request_hash, @response)
    ON CONFLICT (client_id, transmission_id) DO NOTHING
    RETURNING true AS stored
)
SELECT COALESCE((SELECT stored FROM receipt), false)::boolean AS stored;

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
