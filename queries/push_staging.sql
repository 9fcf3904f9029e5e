-- name: PushStagingInsert :copyfrom
-- PushStagingInsert writes a chunk of a push's records as they are read from the request,
-- with what validation read from them (NULL for a record that cannot be stored). COPY sends
-- them a few kilobytes at a time, where the parameters of a statement would be encoded
-- whole, twice.
INSERT INTO push_staging (
    batch_id, idx, raw, extra, observation_id, form_type, form_version, author, device_id, tags,
    record_created_at, created_at_text, record_updated_at, updated_at_text, deleted, content_hash, data, geolocation)
VALUES (
    @batch_id, @idx, @raw, @extra, @observation_id, @form_type, @form_version, @author, @device_id, @tags,
    @record_created_at, @created_at_text, @record_updated_at, @updated_at_text, @deleted, @content_hash, @data, @geolocation);

-- name: PushStagingDelete :exec
-- PushStagingDelete removes the records of a push once it has ended, stored or not.
DELETE FROM push_staging WHERE batch_id = @batch_id;

-- name: PushStagingDeleteOlderThan :execrows
-- PushStagingDeleteOlderThan removes, a bounded batch at a time, records left behind by a
-- process that died during a push.
DELETE FROM push_staging
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM push_staging WHERE created_at < @cutoff::timestamptz LIMIT @batch_size
));
