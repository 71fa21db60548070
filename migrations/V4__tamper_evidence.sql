-- Tamper evidence: the commit-safe order of events and the stored Merkle tree.

-- The transaction that inserted each event. Events are sealed into the tree in the
-- order (txid, id), and only once every transaction with a smaller txid has ended
-- (below the xmin of the sealer's snapshot), so an event that commits late is never
-- skipped. Null for events stored before this migration: they are sealed first.
ALTER TABLE events ADD COLUMN txid xid8;
ALTER TABLE events ALTER COLUMN txid SET DEFAULT pg_current_xact_id();

-- An event's id is drawn only after its transaction has its txid (the CASE asks for
-- the txid first). So a transaction whose txid was assigned after a sealing round's
-- snapshot draws ids above the sequence value read before that snapshot: this bounds
-- where unsealed events can be, and tells a row written with a chosen, older id (a
-- forgery) from a late commit. An identity column cannot have this default, so the
-- identity (or the original's serial) becomes a plain sequence, continued past every
-- id ever handed out.
DO $$
DECLARE
    old_sequence text := pg_get_serial_sequence('events', 'id');
    next_id bigint := 1;
BEGIN
    IF old_sequence IS NOT NULL THEN
        next_id := nextval(old_sequence);
    END IF;
    SELECT greatest(next_id, coalesce(max(id), 0) + 1) INTO next_id FROM events;
    ALTER TABLE events ALTER COLUMN id DROP IDENTITY IF EXISTS;
    ALTER TABLE events ALTER COLUMN id DROP DEFAULT;
    IF old_sequence IS NOT NULL THEN
        EXECUTE format('DROP SEQUENCE IF EXISTS %s', old_sequence);
    END IF;
    -- CACHE 1: ids must follow the order in which they are drawn across sessions.
    EXECUTE format(
        'CREATE SEQUENCE events_id_seq AS bigint CACHE 1 START WITH %s OWNED BY events.id',
        next_id);
END $$;
ALTER TABLE events ALTER COLUMN id SET DEFAULT
    CASE WHEN pg_current_xact_id() IS NOT NULL THEN nextval('events_id_seq') END;

-- What the collector computed as it wrote the event: the SHA-256 content digest of
-- its leaf (all of it but the id) and the CRC-32 of each text (merkle::leaf). The
-- sealer hashes the id with it instead of reading the texts back; the verifier
-- recomputes it from the row. Null for rows written otherwise: the sealer then reads
-- the texts.
ALTER TABLE events ADD COLUMN seal bytea;

-- How far the sealer got: the tree's size, the horizon below which every txid is
-- sealed, and the right edge of the tree (its perfect subtree roots, concatenated).
CREATE TABLE tree_head (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    size      bigint  NOT NULL,
    horizon   xid8,
    frontier  bytea   NOT NULL
);

-- Recent sealing rounds: the id sequence's value read at the start of each, and the
-- txid after the round's own (which it took after that read). Any event of a
-- transaction with a txid at or above `next_xid` has an id above `id_bound`.
CREATE TABLE tree_rounds (
    next_xid xid8   PRIMARY KEY,
    id_bound bigint NOT NULL
);

-- The tree's hashes as C2SP tlog-tiles (height 8): tile `tile` of level `level` holds
-- up to 256 hashes, each the root of 256^level leaves, concatenated; the last tile of
-- a level grows until full.
CREATE TABLE tree_tiles (
    level  smallint NOT NULL,
    tile   bigint   NOT NULL,
    hashes bytea    NOT NULL,
    PRIMARY KEY (level, tile)
);
-- Hashes do not compress: storing them without trying saves the sealer's database
-- session a fifth of its CPU (measured with perf under full ingest).
ALTER TABLE tree_tiles ALTER COLUMN hashes SET STORAGE EXTERNAL;

-- What each leaf of a level-0 tile was sealed from: per leaf 32 bytes (the event's
-- id, its event_ts in microseconds, and the CRC-32 (IEEE) of its
-- application_name, event_kind, payload and token_name), so that the verifier can
-- name the field of a changed event and find a deleted one by its id.
CREATE TABLE tree_leaves (
    tile    bigint PRIMARY KEY,
    min_id  bigint NOT NULL,
    max_id  bigint NOT NULL,
    records bytea  NOT NULL
);
ALTER TABLE tree_leaves ALTER COLUMN records SET STORAGE EXTERNAL;
CREATE INDEX tree_leaves_ids ON tree_leaves USING gist (int8range(min_id, max_id, '[]'));

-- Every signed checkpoint, as the signed note served at /api/checkpoint.
CREATE TABLE tree_checkpoints (
    size       bigint      PRIMARY KEY,
    note       text        NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
