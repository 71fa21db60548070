-- Access control (tokens per application) and "who sent this".

-- Bearer tokens. The secret itself is never stored: only its SHA-256, which is what a
-- request's token is looked up by. Revoked tokens stay, so their names cannot be
-- reused and old events keep a meaningful `token_name`.
CREATE TABLE api_tokens (
    name               text        PRIMARY KEY,
    secret_hash        bytea       NOT NULL UNIQUE,
    -- Application names this token may write and read; '{*}' is every application.
    write_applications text[]      NOT NULL DEFAULT '{}',
    read_applications  text[]      NOT NULL DEFAULT '{}',
    admin              boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    created_by         text        NOT NULL,
    expires_at         timestamptz,
    -- Set once a server has recorded the `TokenExpired` event, so that it is
    -- recorded once however many servers share the database.
    expiry_recorded    boolean     NOT NULL DEFAULT false,
    revoked_at         timestamptz,
    revoked_by         text,
    last_used_at       timestamptz
);

-- The name of the token that wrote the event; null when access control was off.
ALTER TABLE events ADD COLUMN token_name text;

-- No index on application_name here: one halves the rate of a raw COPY (measured,
-- BENCHMARKS.md). Readers scoped to some applications scan a bounded id range per
-- page instead; an operator who wants full pages for rare applications creates
-- events_application_name_id (README, "Securing it"), which the server then uses.

-- Small facts the servers share, such as the `auth.mode` last in force.
CREATE TABLE collector_state (
    key   text PRIMARY KEY,
    value text NOT NULL
);
