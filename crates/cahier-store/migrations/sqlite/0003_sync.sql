-- Sync with field replicas (docs/SYNC.md).

-- One global sequence for the feed. Every insert or update of an entity row (content
-- projection, access rules, lock, state) takes the next number, so a replica that remembers
-- one checkpoint never misses an event. Triggers keep every write path honest.
CREATE TABLE sync_counter (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO sync_counter (id, value) VALUES (1, 0);

ALTER TABLE entities ADD COLUMN sync_seq INTEGER NOT NULL DEFAULT 0;

CREATE TRIGGER entities_sync_seq_insert AFTER INSERT ON entities BEGIN
    UPDATE sync_counter SET value = value + 1 WHERE id = 1;
    UPDATE entities SET sync_seq = (SELECT value FROM sync_counter WHERE id = 1) WHERE id = NEW.id;
END;

CREATE TRIGGER entities_sync_seq_update AFTER UPDATE ON entities WHEN NEW.sync_seq = OLD.sync_seq BEGIN
    UPDATE sync_counter SET value = value + 1 WHERE id = 1;
    UPDATE entities SET sync_seq = (SELECT value FROM sync_counter WHERE id = 1) WHERE id = NEW.id;
END;

UPDATE entities SET sync_seq = id;
UPDATE sync_counter SET value = (SELECT coalesce(max(id), 0) FROM entities) WHERE id = 1;
CREATE INDEX entities_by_sync_seq ON entities(sync_seq);

-- Devices (field replicas) registered by users. Only a SHA-256 of the secret is kept.
-- Revoking a device refuses its next request.
CREATE TABLE devices (
    id          INTEGER PRIMARY KEY,
    uuid        TEXT NOT NULL UNIQUE,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    last_seen   INTEGER,
    revoked_at  INTEGER
);
CREATE INDEX devices_user ON devices(user_id);

-- Change sets refused at push, kept whole with the reason so nothing is ever lost; an owner or
-- admin can apply them later.
CREATE TABLE quarantine (
    id          INTEGER PRIMARY KEY,
    entity_uuid TEXT NOT NULL,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    device_id   INTEGER REFERENCES devices(id),
    received_at INTEGER NOT NULL,
    base_heads  TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    reason      TEXT NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending',
    resolved_by INTEGER REFERENCES users(id),
    resolved_at INTEGER
);
CREATE INDEX quarantine_entity ON quarantine(entity_uuid, status);

-- Replica side (empty on a lab instance). What the server last acknowledged of each entity:
-- local heads beyond `acked_heads` are changes waiting to be pushed.
CREATE TABLE replica_entities (
    entity_id   INTEGER PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,
    acked_heads TEXT NOT NULL DEFAULT '',
    server_id   INTEGER
);

-- Replica settings and checkpoints (server URL, device, feed position, last sync).
CREATE TABLE replica_state (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- Local changes the server refused, kept whole with the reason (never dropped).
CREATE TABLE rejected_edits (
    id          INTEGER PRIMARY KEY,
    entity_uuid TEXT NOT NULL,
    title       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    base_heads  TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    status      TEXT NOT NULL DEFAULT 'pending'
);
