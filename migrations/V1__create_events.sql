-- Events are read newest first by their sequence id (keyset pagination), so the
-- primary key is the only index the reads need; every further index would slow ingest.
CREATE TABLE events (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_ts         timestamptz NOT NULL,
    application_name text        NOT NULL,
    event_kind       text        NOT NULL,
    -- `json`, not `jsonb`: it keeps the client's text byte for byte (key order,
    -- number spelling), which is what an audit log must return.
    payload          json        NOT NULL
);
