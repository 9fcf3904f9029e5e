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
-- server/obsync decided every record beforehand, push after push, under the write lock.
-- The @push_* arrays hold one element per push that writes (@push_seqs numbers them from
-- 1), the @rec_* arrays one element per decided record, of the push @rec_push
-- (@rec_observation_id is empty for a quarantined record): "write" rows carry their new
-- version and become the stored state (one per id in the whole group; @rec_stored says
-- whether the id may have a stored row, which is then moved to the history), "history" rows
-- (conflict losers, and winners replaced later in the group, which keep their version) go
-- only to the history, "quarantine" rows carry the reason. The records' values are those
-- a push staged in push_staging under its batch id when @push_staged says so (a large
-- push), else @text (the records as sent of every push held in memory, one after another:
-- each record's text, data and geolocation lie at the @rec_*_at offsets, a geolocation of
-- length 0 is NULL) and the @rec_* value arrays (@rec_nulls: bit 1 author, bit 2 device_id
-- are NULL). @text is one value, not one per push, and comes last but for two small
-- parameters: the driver then copies it once, where an array of large values is copied
-- again each time its buffer grows.
-- A push without a request hash stores no receipt (an admin's retry of a quarantined
-- record). The staged records are deleted when @clear_staging.
WITH pushes AS (
    SELECT unnest(@push_seqs::integer[]) AS seq, unnest(@push_batch_ids::uuid[]) AS batch_id,
           unnest(@push_staged::boolean[]) AS staged,
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
           unnest(@rec_reason::text[]) AS reason,
           unnest(@rec_form_type::text[]) AS form_type, unnest(@rec_form_version::text[]) AS form_version,
           unnest(@rec_at::integer[]) AS at, unnest(@rec_bytes::integer[]) AS record_bytes,
           unnest(@rec_data_at::integer[]) AS data_at, unnest(@rec_data_len::integer[]) AS data_len,
           unnest(@rec_geolocation_at::integer[]) AS geolocation_at, unnest(@rec_geolocation_len::integer[]) AS geolocation_len,
           unnest(@rec_extra::text[]) AS extra, unnest(@rec_nulls::integer[]) AS nulls,
           unnest(@rec_author::text[]) AS author, unnest(@rec_device_id::text[]) AS device_id,
           unnest(@rec_tags::json[]) AS tags,
           unnest(@rec_created_at::timestamptz[]) AS record_created_at, unnest(@rec_created_at_text::text[]) AS created_at_text,
           unnest(@rec_updated_at::timestamptz[]) AS record_updated_at, unnest(@rec_updated_at_text::text[]) AS updated_at_text,
           unnest(@rec_deleted::boolean[]) AS deleted, unnest(@rec_content_hash::bytea[]) AS content_hash,
           unnest(@rec_stored::boolean[]) AS stored
),
-- The decisions with their push and the records' values, from the arrays or from push_staging.
decided AS (
    SELECT r.push, r.idx, r.observation_id, r.outcome, r.status, NULLIF(r.version, 0) AS version, r.conflict,
           r.reported_id, r.code, r.reason, p.pushed_by, p.client_id, p.transmission_id,
           r.form_type, r.form_version,
           CASE WHEN r.outcome <> 'quarantine'
               THEN convert_from(substring(@text::bytea FROM r.data_at + 1 FOR r.data_len), 'UTF8')::json
           END AS data,
           CASE WHEN r.geolocation_len > 0
               THEN convert_from(substring(@text::bytea FROM r.geolocation_at + 1 FOR r.geolocation_len), 'UTF8')::json
           END AS geolocation,
           NULLIF(r.extra, '')::json AS extra,
           CASE WHEN r.nulls & 1 = 0 THEN r.author END AS author,
           CASE WHEN r.nulls & 2 = 0 THEN r.device_id END AS device_id,
           CASE WHEN r.tags IS NOT NULL THEN ARRAY(SELECT json_array_elements_text(r.tags)) END AS tags,
           r.record_created_at, r.created_at_text, r.record_updated_at, r.updated_at_text, r.deleted,
           r.content_hash,
           CASE WHEN r.outcome = 'quarantine' THEN substring(@text::bytea FROM r.at + 1 FOR r.record_bytes) END AS raw,
           r.record_bytes, r.stored
    FROM rec r
    JOIN pushes p ON p.seq = r.push AND NOT p.staged
    UNION ALL
    SELECT r.push, r.idx, r.observation_id, r.outcome, r.status, NULLIF(r.version, 0), r.conflict,
           r.reported_id, r.code, r.reason, p.pushed_by, p.client_id, p.transmission_id,
           s.form_type, s.form_version, s.data, s.geolocation, NULLIF(s.extra, '')::json,
           s.author, s.device_id, s.tags,
           s.record_created_at, s.created_at_text, s.record_updated_at, s.updated_at_text, s.deleted,
           s.content_hash, s.raw, octet_length(s.raw), r.stored
    FROM rec r
    JOIN pushes p ON p.seq = r.push AND p.staged
    JOIN push_staging s ON s.batch_id = p.batch_id AND s.idx = r.idx
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
        JOIN decided d ON d.observation_id = o.observation_id AND d.outcome = 'write' AND d.stored
        UNION ALL
        SELECT 1, d.push, d.idx, d.observation_id, d.version, d.status, d.conflict,
               d.form_type, d.form_version, d.data, d.geolocation, d.extra, d.author, d.device_id, d.tags,
               d.created_at_text, d.updated_at_text, d.deleted,
               now(), d.pushed_by, d.client_id, d.transmission_id
        FROM decided d
        WHERE d.outcome = 'history'
    ) h
    ORDER BY h.arrival, h.push, h.idx
),
written AS (
    INSERT INTO observations AS o (
        observation_id, version, form_type, form_version, data, geolocation, extra, author, device_id, tags,
        created_at, created_at_text, updated_at, updated_at_text, deleted, content_hash, conflict,
        record_bytes, synced_at, pushed_by, client_id, transmission_id)
    SELECT d.observation_id, d.version, d.form_type, d.form_version, d.data, d.geolocation, d.extra,
           d.author, d.device_id, d.tags, d.record_created_at, d.created_at_text, d.record_updated_at, d.updated_at_text,
           d.deleted, d.content_hash, d.conflict, d.record_bytes,
           now(), d.pushed_by, d.client_id, d.transmission_id
    FROM decided d
    WHERE d.outcome = 'write' AND d.stored
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
inserted AS (
    -- An id the write lock saw no row for has none: a plain insert, without the check for
    -- a conflicting row that ON CONFLICT makes first.
    INSERT INTO observations (
        observation_id, version, form_type, form_version, data, geolocation, extra, author, device_id, tags,
        created_at, created_at_text, updated_at, updated_at_text, deleted, content_hash, conflict,
        record_bytes, synced_at, pushed_by, client_id, transmission_id)
    SELECT d.observation_id, d.version, d.form_type, d.form_version, d.data, d.geolocation, d.extra,
           d.author, d.device_id, d.tags, d.record_created_at, d.created_at_text, d.record_updated_at, d.updated_at_text,
           d.deleted, d.content_hash, d.conflict, d.record_bytes,
           now(), d.pushed_by, d.client_id, d.transmission_id
    FROM decided d
    WHERE d.outcome = 'write' AND NOT d.stored
),
quarantined AS (
    INSERT INTO quarantined_records (raw, client_id, transmission_id, record_index, pushed_by, observation_id, code, reason)
    SELECT d.raw, d.client_id, d.transmission_id, d.idx, d.pushed_by, NULLIF(d.reported_id, ''), d.code, d.reason
    FROM decided d
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
    DELETE FROM push_staging
    WHERE batch_id = ANY (ARRAY(SELECT batch_id FROM pushes WHERE staged)) AND @clear_staging::boolean
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
