-- name: PushReceiptGet :one
SELECT request_hash, response FROM push_receipts
WHERE client_id = @client_id AND transmission_id = @transmission_id;

-- name: PushReceiptListByKeys :many
-- PushReceiptListByKeys returns the receipts of several pushes, each named by its client id
-- and transmission id at the same position of the two arrays. A group of pushes reads them
-- under the write lock, which every writer of a receipt holds: what it finds is exact.
SELECT client_id, transmission_id, request_hash, response
FROM push_receipts
WHERE (client_id, transmission_id) IN (
    SELECT unnest(@client_ids::text[]), unnest(@transmission_ids::text[])
);

-- name: PushReceiptDeleteOlderThan :execrows
-- PushReceiptDeleteOlderThan removes receipts past their retention, a bounded batch at a time.
DELETE FROM push_receipts
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM push_receipts WHERE created_at < @cutoff::timestamptz LIMIT @batch_size
));

-- name: PushReceiptDeleteAll :exec
DELETE FROM push_receipts;
