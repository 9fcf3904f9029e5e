-- name: AttachmentUnclaimedBlobDelete :execrows
-- AttachmentUnclaimedBlobDelete removes registrations: an upload claims its blob with it
-- in the transaction that records the attachment, and the cleanup drops the rows whose
-- blobs it deleted.
DELETE FROM attachment_unclaimed_blobs WHERE blob_key = ANY (@blob_keys::text[]);

-- name: AttachmentUnclaimedBlobListDue :many
-- AttachmentUnclaimedBlobListDue locks a batch of registrations whose time is up. Rows
-- another process is working on are skipped, and an upload that tries to claim a locked
-- row waits and then finds it gone.
SELECT blob_key FROM attachment_unclaimed_blobs
WHERE delete_after <= now()
ORDER BY delete_after
LIMIT @max_rows
FOR UPDATE SKIP LOCKED;
