-- name: ServerSecretEnsure :one
-- ServerSecretEnsure stores the value unless a secret of that name exists, and returns the
-- stored one, so that every process of the same database agrees on it.
WITH inserted AS (
    INSERT INTO server_secrets (name, value) VALUES (@name, @value)
    ON CONFLICT (name) DO NOTHING
    RETURNING value
)
SELECT value FROM inserted
UNION ALL
SELECT value FROM server_secrets WHERE name = @name
LIMIT 1;
