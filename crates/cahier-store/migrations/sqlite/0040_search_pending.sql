-- Issue #5, a pull's speed: entries whose full-text row a pull left to be written once the
-- sync is over (`Store::index_pending_search`, docs/SYNC.md "The search index after a pull").
-- A search writes them first, so it never answers from an outdated row.
CREATE TABLE search_pending (entity_id INTEGER PRIMARY KEY);
