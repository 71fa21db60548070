-- Search postings without sealing (audit_core::postings::poster): every server walks
-- the committed events above `id_floor` in the commit-safe order of tree::order and
-- posts them, sealing on or off; the sealer no longer writes them. What it wrote is
-- dropped and posted again from the first event.
TRUNCATE search_postings;

-- `id_floor`: every committed event with an id at or below it is posted.
-- `settle_bound`, `settle_xid`: the next step's bound, read from the id sequence
-- before the txid was taken; once every transaction with a txid below `settle_xid`
-- has ended, every id up to `settle_bound` is committed or never will be (an id is
-- drawn after its transaction's txid).
ALTER TABLE search_postings_state DROP COLUMN leaves;
UPDATE search_postings_state SET id_floor = 0;
ALTER TABLE search_postings_state ADD COLUMN settle_bound bigint;
ALTER TABLE search_postings_state ADD COLUMN settle_xid xid8;
