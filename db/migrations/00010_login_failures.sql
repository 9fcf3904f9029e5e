-- +goose Up

-- Failed login counters, shared by every server process of the database: behind a load
-- balancer a client's attempts reach several processes, and a limit kept in each process's
-- memory would multiply the allowance by their number. A row is one fixed window of one
-- counter; its key is a digest of the counter's kind, address and account, so neither
-- addresses nor attempted user names are kept in clear.
CREATE TABLE login_failures (
    key        bytea PRIMARY KEY,
    expires_at timestamptz NOT NULL,
    failures   integer NOT NULL,
    -- admitted is when an account over its limit last let in an attempt from an address
    -- that had not failed on it (the account's counter only).
    admitted   timestamptz
);
CREATE INDEX login_failures_expires_at ON login_failures (expires_at);

-- +goose Down
DROP TABLE login_failures;
