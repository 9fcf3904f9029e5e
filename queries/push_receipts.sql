-- name: PushReceiptGet :one
SELECT request_hash, response FROM push_receipts
WHERE client_id = @client_id AND transmission_id = @transmission_id;

-- name: PushReceiptDeleteOlderThan :execrows
-- PushReceiptDeleteOlderThan removes receipts past their retention, a bounded batch at a time.
DELETE FROM push_receipts
WHERE ctid = ANY (ARRAY(
    SELECT ctid FROM push_receipts WHERE created_at < @cutoff::timestamptz LIMIT @batch_size
));

-- name: PushReceiptDeleteAll :exec
DELETE FROM push_receipts;
