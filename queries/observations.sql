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

-- name: ObservationHeadsByIDs :many
-- ObservationHeadsByIDs returns what conflict resolution needs of the stored rows.
-- updated_at_text is the client's text, whose precision (often beyond the microseconds
-- timestamptz keeps) conflict resolution compares.
SELECT observation_id, version, updated_at_text, content_hash
FROM observations
WHERE observation_id = ANY (@observation_ids::text[]);

-- name: ObservationGet :one
SELECT * FROM observations WHERE observation_id = @observation_id;

-- name: ObservationWriteBatch :one
-- ObservationWriteBatch is the whole write of one push, in one statement: it moves the
-- states being replaced into the history, upserts the winning records, records the losing
-- ones, quarantines the records that cannot be stored, advances current_version and stores
-- the push receipt. The records are those written to push_staging (@batch_id) while the
-- request was read, and the last of them (up to a megabyte, all of a small push) in
-- @idxs, @raws, @metas and @extras, as push_staging would hold them. @decisions is a JSON
-- array built by server/obsync with one element per record to write: "write" rows carry
-- their new version and become the stored state, "history" rows (conflict losers, and
-- writes replaced later in the same push) go only to the history, "quarantine" rows carry
-- the reason. The staged records are deleted when @clear_staging. Without @request_hash no
-- receipt is stored (an admin's retry of a quarantined record). It returns false when
-- another push with the same receipt committed first.
WITH decided AS (
    SELECT (d ->> 'idx')::integer AS idx,
           d ->> 'outcome' AS outcome,
           d ->> 'status' AS status,
           (d ->> 'version')::bigint AS version,
           (d ->> 'conflict')::boolean AS conflict,
           d ->> 'observation_id' AS reported_id,
           d ->> 'code' AS code,
           d ->> 'reason' AS reason
    FROM jsonb_array_elements(@decisions::jsonb) AS d
),
inline AS (
    SELECT unnest(@idxs::integer[]) AS idx, unnest(@raws::bytea[]) AS raw, unnest(@metas::jsonb[]) AS meta,
           unnest(@extras::text[]) AS extra
),
staged AS (
    SELECT d.idx, d.outcome, d.status, d.version, d.conflict, d.reported_id, d.code, d.reason, s.raw, s.meta, s.extra
    FROM decided d
    JOIN push_staging s ON s.batch_id = @batch_id AND s.idx = d.idx
    UNION ALL
    SELECT d.idx, d.outcome, d.status, d.version, d.conflict, d.reported_id, d.code, d.reason, i.raw, i.meta, i.extra
    FROM decided d
    JOIN inline i ON i.idx = d.idx
),
incoming AS (
    SELECT s.idx, s.outcome, s.status, s.version, s.conflict,
           s.meta ->> 'observation_id' AS observation_id,
           s.meta ->> 'form_type' AS form_type,
           s.meta ->> 'form_version' AS form_version,
           s.meta ->> 'author' AS author,
           s.meta ->> 'device_id' AS device_id,
           CASE WHEN jsonb_typeof(s.meta -> 'tags') = 'array'
                THEN ARRAY(SELECT jsonb_array_elements_text(s.meta -> 'tags')) END AS tags,
           (s.meta ->> 'created_at')::timestamptz AS created_at,
           s.meta ->> 'created_at_text' AS created_at_text,
           (s.meta ->> 'updated_at')::timestamptz AS updated_at,
           s.meta ->> 'updated_at_text' AS updated_at_text,
           (s.meta ->> 'deleted')::boolean AS deleted,
           decode(s.meta ->> 'content_hash', 'hex') AS content_hash,
           -- data and geolocation are cut out of the record as sent (meta holds where), so
           -- their text is stored byte for byte; the json type keeps it so.
           convert_from(substring(s.raw FROM (s.meta ->> 'data_at')::integer + 1 FOR (s.meta ->> 'data_len')::integer), 'UTF8')::json AS data,
           CASE WHEN s.meta ->> 'geo_at' IS NOT NULL
                THEN convert_from(substring(s.raw FROM (s.meta ->> 'geo_at')::integer + 1 FOR (s.meta ->> 'geo_len')::integer), 'UTF8')::json END AS geolocation,
           NULLIF(s.extra, '')::json AS extra,
           octet_length(s.raw) AS record_bytes
    FROM staged s
    WHERE s.outcome IN ('write', 'history')
),
history AS (
    -- One ordered insert, so that the history lists oldest first (ObservationRevisionList
    -- orders by id): the states this push replaces arrived before anything in it, and the
    -- push's own history rows follow in push order.
    INSERT INTO observation_revisions (
        observation_id, version, status, conflict, form_type, form_version, data, geolocation, extra,
        author, device_id, tags, created_at_text, updated_at_text, deleted,
        received_at, pushed_by, client_id, transmission_id)
    SELECT h.observation_id, h.version, h.status, h.conflict, h.form_type, h.form_version, h.data, h.geolocation,
           h.extra, h.author, h.device_id, h.tags, h.created_at_text, h.updated_at_text, h.deleted,
           h.received_at, h.pushed_by, h.client_id, h.transmission_id
    FROM (
        SELECT 0 AS arrival, i.idx, o.observation_id, o.version, 'superseded'::text AS status, o.conflict,
               o.form_type, o.form_version, o.data, o.geolocation, o.extra, o.author, o.device_id, o.tags,
               o.created_at_text, o.updated_at_text, o.deleted,
               o.synced_at AS received_at, o.pushed_by, o.client_id, o.transmission_id
        FROM observations o
        JOIN incoming i ON i.observation_id = o.observation_id AND i.outcome = 'write'
        UNION ALL
        SELECT 1, i.idx, i.observation_id, NULL, i.status, i.conflict,
               i.form_type, i.form_version, i.data, i.geolocation, i.extra, i.author, i.device_id, i.tags,
               i.created_at_text, i.updated_at_text, i.deleted,
               now(), @pushed_by::text, @client_id::text, @transmission_id::text
        FROM incoming i
        WHERE i.outcome = 'history'
    ) h
    ORDER BY h.arrival, h.idx
),
written AS (
    INSERT INTO observations AS o (
        observation_id, version, form_type, form_version, data, geolocation, extra, author, device_id, tags,
        created_at, created_at_text, updated_at, updated_at_text, deleted, content_hash, conflict,
        record_bytes, synced_at, pushed_by, client_id, transmission_id)
    SELECT i.observation_id, i.version, i.form_type, i.form_version, i.data, i.geolocation, i.extra, i.author,
           i.device_id, i.tags, i.created_at, i.created_at_text, i.updated_at, i.updated_at_text,
           i.deleted, i.content_hash, i.conflict, i.record_bytes,
           now(), @pushed_by::text, @client_id::text, @transmission_id::text
    FROM incoming i
    WHERE i.outcome = 'write'
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
    SELECT s.raw, @client_id::text, @transmission_id::text, s.idx, @pushed_by::text, NULLIF(s.reported_id, ''), s.code, s.reason
    FROM staged s
    WHERE s.outcome = 'quarantine'
    ON CONFLICT (client_id, transmission_id, record_index) DO NOTHING
),
advanced AS (
    UPDATE sync_state SET current_version = @current_version::bigint WHERE id = 1
),
cleared AS (
    -- The push's staged records are done with (unless this write only probes a record).
    DELETE FROM push_staging WHERE batch_id = @batch_id AND @clear_staging::boolean
),
receipt AS (
    INSERT INTO push_receipts (client_id, transmission_id, request_hash, response)
    SELECT @client_id::text, @transmission_id::text, sqlc.narg('request_hash')::bytea, sqlc.narg('response')::jsonb
    WHERE sqlc.narg('request_hash')::bytea IS NOT NULL
    ON CONFLICT (client_id, transmission_id) DO NOTHING
    RETURNING true AS stored
)
SELECT (sqlc.narg('request_hash')::bytea IS NULL OR EXISTS (SELECT 1 FROM receipt))::boolean AS stored;

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
