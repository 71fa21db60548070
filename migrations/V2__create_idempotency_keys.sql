-- Idempotency keys of POST /api/event, recorded in the same transaction as the
-- events they stored, so that a retried request can be answered without storing
-- its events again. Rows older than the configured time to live are deleted.
CREATE TABLE idempotency_keys (
    key          text        PRIMARY KEY,
    -- SHA-256 of the request body: the same key with another body is refused.
    request_hash bytea       NOT NULL,
    inserted     bigint      NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- The periodic clean-up deletes by age.
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
