-- name: SyncStateGet :one
SELECT current_version, repository_generation FROM sync_state WHERE id = 1;

-- name: SyncStateLock :one
-- SyncStateLock takes the write lock that orders all observation writes (pushes take it
-- with SyncStateLockForWrite). A writer takes it only after all of its preparation, just
-- before its final write, and holds it to commit: each writer stamps versions above the
-- previous writer's and becomes visible before the next one can stamp, so versions become
-- visible in commit order and a pull never skips one.
SELECT current_version, repository_generation FROM sync_state WHERE id = 1 FOR UPDATE;

-- name: SyncStateLockForWrite :many
-- SyncStateLockForWrite takes the write lock (as SyncStateLock) and, in the same round trip,
-- reads what a group of pushes decides on: the stored heads of @observation_ids (what
-- conflict resolution needs; updated_at_text is the client's text, whose precision it
-- compares) and the receipts of the pushes named by @client_ids and @transmission_ids at the
-- same positions. One row of kind 'state' carries the counter; 'head' and 'receipt' rows
-- follow. Under READ COMMITTED the reads see the statement's snapshot, taken before the
-- lock was granted: should another writer have committed in between, they may be out of
-- date, and stale is true on the state row. Every writer of observations and receipts
-- updates sync_state in its transaction, so a row version of sync_state other than the
-- snapshot's is exactly that case; the caller then runs the statement again, now under the
-- lock, and its reads are exact.
WITH locked AS (
    SELECT current_version, repository_generation, xmin::text AS row_version FROM sync_state WHERE id = 1 FOR UPDATE
)
SELECT 'state'::text AS kind, l.current_version AS version, l.repository_generation,
       l.row_version <> (SELECT xmin::text FROM sync_state WHERE id = 1) AS stale,
       ''::text AS observation_id, ''::text AS updated_at_text, ''::bytea AS content_hash,
       ''::text AS client_id, ''::text AS transmission_id, ''::bytea AS request_hash, '{}'::jsonb AS response
FROM locked l
UNION ALL
SELECT 'head', o.version, 0, false, o.observation_id, o.updated_at_text, o.content_hash, '', '', '', '{}'
FROM observations o
WHERE o.observation_id = ANY (@observation_ids::text[])
UNION ALL
SELECT 'receipt', 0, 0, false, '', '', '', r.client_id, r.transmission_id, r.request_hash, r.response
FROM push_receipts r
WHERE (r.client_id, r.transmission_id) IN (
    SELECT unnest(@client_ids::text[]), unnest(@transmission_ids::text[])
);

-- name: SyncStateReset :one
-- SyncStateReset starts a new repository generation (called with the write lock held).
-- current_version keeps counting up rather than restarting: a client that never sends its
-- generation keeps its cursor, and every change after the reset is still above it.
UPDATE sync_state
SET repository_generation = repository_generation + 1,
    last_reset_at = now(),
    last_reset_by = @reset_by
WHERE id = 1
RETURNING current_version, repository_generation;

-- name: SyncStateAdvance :one
-- SyncStateAdvance hands out the next version to a single write outside a push (an
-- attachment upload or deletion). Its UPDATE takes the same row lock as SyncStateLock and
-- holds it to commit, so the caller must run it just before its final write and commit
-- right after: versions then become visible in commit order, as for pushes.
UPDATE sync_state SET current_version = current_version + 1 WHERE id = 1
RETURNING current_version, repository_generation;
