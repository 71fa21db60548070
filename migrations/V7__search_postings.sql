-- Search postings: the ids of the sealed events of each application, kind and day of
-- `event_ts`, written by the sealer in its round's transaction from what it sealed
-- (audit_core::postings). A filtered page finds its events through them instead of
-- through a B-tree index that every insert would pay for (BENCHMARKS.md, "Search
-- postings").
--
-- `field` is 1 for `application_name`, 2 for `event_kind` (`key` the CRC-32 of the
-- text, as the leaf records fingerprint it) and 3 for `event_ts` (`key` the day, UTC,
-- counted from 1970-01-01). `ids` are ascending, each as the LEB128 difference from the
-- one before (the first from `first_id`). A row's ids span less than 65,536, which
-- bounds the rows a reader must look at around where its page starts.
--
-- Postings are candidates, never trusted: a page reads the events they name and checks
-- every condition on the rows.
CREATE TABLE search_postings (
    field    smallint NOT NULL,
    key      bigint   NOT NULL,
    first_id bigint   NOT NULL,
    last_id  bigint   NOT NULL,
    ids      bytea    NOT NULL,
    PRIMARY KEY (field, key, first_id)
);
-- Newest first, rows are read in the order of their last id (an id above the last one
-- read is in no row still unread); oldest first, of their first id.
CREATE INDEX search_postings_last_id ON search_postings (field, key, last_id);
-- Differences hardly compress: a long row goes out of line without trying.
ALTER TABLE search_postings ALTER COLUMN ids SET STORAGE EXTERNAL;

-- How far the postings reach: those of leaves 0..leaves are written, and every
-- committed event with an id at or below `id_floor` is sealed (tree::order). A tree
-- older than this table has leaves without postings: the sealer writes them from the
-- stored leaf records, a step each round, and readers use postings only once
-- `leaves` is the tree's size.
CREATE TABLE search_postings_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    leaves    bigint  NOT NULL,
    id_floor  bigint  NOT NULL
);
INSERT INTO search_postings_state (leaves, id_floor) VALUES (0, 0);
