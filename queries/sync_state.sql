-- name: SyncStateGet :one
SELECT current_version, repository_generation FROM sync_state WHERE id = 1;

-- name: SyncStateLock :one
-- SyncStateLock takes the write lock that orders all observation writes. A push takes it
-- only after all of its preparation, just before its final write, and holds it to commit:
-- each writer stamps versions above the previous writer's and becomes visible before the
-- next one can stamp, so versions become visible in commit order and a pull never skips one.
SELECT current_version, repository_generation FROM sync_state WHERE id = 1 FOR UPDATE;

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
