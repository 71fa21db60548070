-- Seal batches: what the sealer needs of a group commit's events, in one row written
-- in the group's own transaction, so that the sealer reads a few rows per round
-- instead of every event's row again (audit_core::tree::batches).
--
-- `leaves` holds 64 bytes per event, big-endian: its id, its `event_ts` in
-- microseconds since 1970-01-01T00:00:00Z, and its seal (the content digest and
-- the CRC-32 of each text, as `events.seal` would hold it).
--
-- Nothing here is trusted more than `events.seal` was: the verifier recomputes every
-- leaf from the events. And nothing depends on a batch being here: an event whose
-- transaction left no batch (a row written by hand, an older collector, a batch lost)
-- is read from `events` as before, which is why the table may be UNLOGGED (no WAL
-- for it; after a crash it is empty and the sealer reads those events' rows). The
-- sealer deletes the batches it sealed.
CREATE UNLOGGED TABLE seal_batches (
    txid   xid8  PRIMARY KEY DEFAULT pg_current_xact_id(),
    leaves bytea NOT NULL CHECK (octet_length(leaves) % 64 = 0)
);
-- Digests do not compress: stored out of line without trying.
ALTER TABLE seal_batches ALTER COLUMN leaves SET STORAGE EXTERNAL;
