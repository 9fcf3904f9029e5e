-- name: ObservationRevisionList :many
-- ObservationRevisionList returns the non-current revisions of an observation, oldest first.
SELECT * FROM observation_revisions WHERE observation_id = @observation_id ORDER BY id;

-- name: ObservationRevisionDeleteAll :exec
DELETE FROM observation_revisions;
