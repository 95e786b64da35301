-- Issue #5, the last gaps of the field replica (docs/SYNC.md).
--
-- 1. The identity of the server's history. Every process that opens the database adds a row:
-- a random id and the feed sequence (`sync_counter`) at that moment. A server restored from a
-- backup is a copy of the database file as it was, so it starts with the rows of the backup
-- and adds its own, whose `start_seq` is the restored sequence; a replica that remembers the
-- id it read its checkpoint under can then tell that the server lost what it saw, even when
-- the server's sequence has grown past that checkpoint again (`Store::feed_in_history`).
CREATE TABLE sync_history (
    n         INTEGER PRIMARY KEY AUTOINCREMENT,
    id        TEXT NOT NULL UNIQUE,
    start_seq INTEGER NOT NULL,
    opened_at INTEGER NOT NULL
);

-- 2. A user's preferences chosen on a replica travel to the lab (`POST /preferences`); each
-- choice carries the device's own counter, and the server applies only a counter above the
-- last it applied for that device, so a replayed or late request never undoes a newer one.
ALTER TABLE devices ADD COLUMN prefs_seq INTEGER NOT NULL DEFAULT 0;
