-- Which attachment files a field replica keeps on the laptop (issue #5). Documents always sync
-- whole; only file contents are optional. The policy itself (`all`, `pinned`, `teams=…`) is one
-- row of `replica_state` (key `files`). These tables are used on a replica only; a lab server
-- leaves them empty.

-- Entries pinned "available offline" on this device: their files are kept whatever the
-- policy. Keyed by UUID, the id shared with the server, so a pin survives an entry made
-- offline getting its server id. Pins are local: they never travel with sync.
CREATE TABLE replica_pins (
    entity_uuid  TEXT PRIMARY KEY,
    pinned_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Files fetched on demand (opened while online although the policy does not select them).
-- They are kept for a while as a cache, so a file just opened is not dropped by the next
-- background sync a minute later.
CREATE TABLE replica_fetched (
    sha256      TEXT PRIMARY KEY,
    fetched_at  INTEGER NOT NULL
) WITHOUT ROWID;
