-- Stock of resources (issue #4), projected from the document's `stock` section like every
-- other content column. Quantities are thousandths of the unit (2.5 mL is 2500), the same
-- fixed point as the document's counter, so sums are exact. A NULL unit means "not tracked".
-- The quantity is never clipped: below zero is stored as it is and flagged by the pages.
ALTER TABLE entities ADD COLUMN stock_unit TEXT;
ALTER TABLE entities ADD COLUMN stock_quantity INTEGER;
ALTER TABLE entities ADD COLUMN stock_threshold INTEGER;

-- The "to reorder" page reads only the few rows at or below their threshold; the query repeats
-- this WHERE clause so SQLite can use the partial index.
CREATE INDEX entities_to_reorder ON entities(team_id, stock_quantity)
    WHERE stock_threshold IS NOT NULL AND stock_quantity <= stock_threshold;

-- Stock events as projected from the document (append-only there, so rows are only added).
-- `received_at` is when this database first stored the event: on the lab instance, the
-- server's receive time, which is what proves anteriority (the device clock `at` is shown
-- beside it, never trusted).
CREATE TABLE entity_stock_events (
    entity_id       INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    event_id        TEXT NOT NULL,
    kind            TEXT NOT NULL,
    delta           INTEGER NOT NULL,
    unit            TEXT NOT NULL,
    user_id         INTEGER NOT NULL,
    at              INTEGER NOT NULL,
    experiment_uuid TEXT,
    note            TEXT NOT NULL,
    received_at     INTEGER NOT NULL,
    PRIMARY KEY (entity_id, event_id)
);
