-- Search postings written by the writers (audit_core::postings): each group commit
-- stores the postings of its own events in its own transaction, so a committed event
-- is in them the moment it is visible, sealing on or off. The sealer no longer writes
-- them; what was written by it is dropped, and a backfill writes the postings of every
-- event that was here before.
--
-- Events inserted any other way (a bulk load, a row written by hand) are noted by a
-- trigger in `search_postings_gaps`: the postings lack events with ids below `below`
-- until the backfill has posted every id up to it. Readers use the postings only when
-- no gap lies above the backfill's floor.
TRUNCATE search_postings;

-- Writers' rows and the backfill's may name the same ids (the backfill posts every
-- event below a gap, written by a writer or not): a page takes each id once. Rows are
-- not unique by their first id any more, only found by it.
ALTER TABLE search_postings DROP CONSTRAINT search_postings_pkey;
CREATE INDEX search_postings_first_id ON search_postings (field, key, first_id);

-- `id_floor`: the backfill has posted every committed event with an id at or below it.
-- `settle_bound`, `settle_xid`: the backfill's next step, taken when every transaction
-- with a txid below `settle_xid` has ended; by then every id up to `settle_bound` is
-- committed or never will be (tree::order: an id is drawn after its txid).
ALTER TABLE search_postings_state DROP COLUMN leaves;
UPDATE search_postings_state SET id_floor = 0;
ALTER TABLE search_postings_state ADD COLUMN settle_bound bigint;
ALTER TABLE search_postings_state ADD COLUMN settle_xid xid8;

CREATE TABLE search_postings_gaps (
    below bigint NOT NULL
);
CREATE INDEX search_postings_gaps_below ON search_postings_gaps (below);

-- Every event already here, if any.
INSERT INTO search_postings_gaps (below)
SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM events_id_seq;

-- A writer sets `audit.posted` for its transaction: it posts its events itself.
CREATE FUNCTION note_unposted_events() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('audit.posted', true), '') <> 'on' THEN
        INSERT INTO search_postings_gaps (below)
        SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
        FROM events_id_seq;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER events_unposted AFTER INSERT ON events
    FOR EACH STATEMENT EXECUTE FUNCTION note_unposted_events();
