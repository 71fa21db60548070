-- Partitions: `events` becomes a table partitioned by ranges of id, so that old events
-- leave by dropping whole partitions, never by DELETE (audit_core::partitions keeps
-- partitions ahead of the id sequence and drops old ones when retention asks).
--
-- By id, not by time: every read pages by id, so a page touches one or two partitions
-- and the primary key stays the id alone. A partition's events arrived while the
-- sequence ran through its range, which is what retention's age is measured by.

-- Every partition the collector made or adopted, and what happened to it.
CREATE TABLE event_partitions (
    name       text        PRIMARY KEY,
    -- The ids it holds: first_id <= id < end_id.
    first_id   bigint      NOT NULL,
    end_id     bigint      NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    -- When the sequence was first seen handing out ids in its range.
    opened_at  timestamptz,
    -- Once the sequence has handed out every id of the range: the xmax of a snapshot
    -- taken after that, so that once every transaction below it has ended (the xmin
    -- of a later snapshot reaches it), no event can still arrive in the partition.
    full_xmax  xid8,
    -- When that was seen: every event of the partition arrived before this.
    closed_at  timestamptz,
    -- Retention: when it was detached and dropped, and how many events it held.
    dropped_at timestamptz,
    dropped_events bigint,
    CHECK (first_id < end_id)
);

-- The optional search indexes an operator may have built (audit_core::search_index):
-- their names pass from the old table to the partitioned one.
CREATE TEMPORARY TABLE optional_indexes (name, definition) AS VALUES
    ('events_application_name_id', '(application_name, id)'),
    ('events_event_kind_id', '(event_kind, id)'),
    ('events_event_ts_id', '(event_ts, id)'),
    ('events_payload_jsonb', 'USING gin ((payload::jsonb) jsonb_path_ops)');

DO $$
DECLARE
    next_id bigint;
    max_id  bigint;
    first_end bigint;
    known record;
BEGIN
    -- The next id the sequence hands out, and past every stored id.
    SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
        INTO next_id FROM events_id_seq;
    SELECT max(id) INTO max_id FROM events;
    IF max_id IS NOT NULL AND max_id >= next_id THEN
        next_id := max_id + 1;
        PERFORM setval('events_id_seq', max_id);
    END IF;

    ALTER TABLE events RENAME TO events_adopted;
    ALTER INDEX events_pkey RENAME TO events_adopted_pkey;
    FOR known IN SELECT * FROM optional_indexes LOOP
        IF to_regclass(known.name) IS NOT NULL THEN
            EXECUTE format('ALTER INDEX %I RENAME TO %I',
                known.name, 'events_adopted_' || substr(known.name, 8));
        END IF;
    END LOOP;

    CREATE TABLE events (LIKE events_adopted INCLUDING ALL EXCLUDING INDEXES)
        PARTITION BY RANGE (id);
    ALTER TABLE events ADD PRIMARY KEY (id);
    -- The sequence must not go with the adopted partition when retention drops it.
    ALTER SEQUENCE events_id_seq OWNED BY events.id;

    IF max_id IS NULL THEN
        DROP TABLE events_adopted;
    ELSE
        -- Every stored event stays where it is: the old table becomes the partition
        -- of every id below the next one (attaching checks that, in one scan).
        EXECUTE format(
            'ALTER TABLE events ATTACH PARTITION events_adopted FOR VALUES FROM (MINVALUE) TO (%s)',
            next_id);
        INSERT INTO event_partitions (name, first_id, end_id, opened_at)
            VALUES ('events_adopted', -9223372036854775808, next_id, now());
        FOR known IN SELECT * FROM optional_indexes LOOP
            IF to_regclass('events_adopted_' || substr(known.name, 8)) IS NOT NULL THEN
                EXECUTE format('CREATE INDEX %I ON ONLY events %s',
                    known.name, known.definition);
                EXECUTE format('ALTER INDEX %I ATTACH PARTITION %I',
                    known.name, 'events_adopted_' || substr(known.name, 8));
            END IF;
        END LOOP;
    END IF;

    -- Room for the first million new events; the servers keep partitions of
    -- `partitions.size` ids ahead from there.
    first_end := next_id + 1000000;
    EXECUTE format('CREATE TABLE %I PARTITION OF events FOR VALUES FROM (%s) TO (%s)',
        'events_from_' || next_id, next_id, first_end);
    INSERT INTO event_partitions (name, first_id, end_id)
        VALUES ('events_from_' || next_id, next_id, first_end);
END $$;

DROP TABLE optional_indexes;
