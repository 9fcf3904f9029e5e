-- name: DatabaseOldestWriteAge :one
-- DatabaseOldestWriteAge is how long, in seconds, the oldest open write transaction on this
-- database has been running (0 when there is none): the oldest transaction that holds a
-- transaction id (it wrote, or locked a row such as sync_state's) or waits for a lock, over
-- every server process of the database and anything else connected to it. A stuck one holds
-- the sync_state lock, or keeps vacuum from reclaiming rows, for as long as it stays open.
SELECT coalesce(extract(epoch FROM now() - min(xact_start)), 0)::float8 AS age_seconds
FROM pg_catalog.pg_stat_activity
WHERE datname = current_database()
  AND pid <> pg_backend_pid()
  AND state <> 'idle'
  AND xact_start IS NOT NULL
  AND (backend_xid IS NOT NULL OR wait_event_type = 'Lock');
