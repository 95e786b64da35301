-- Issue #5 (sync speed): a replica applying a pull batch writes each entry's row once. The
-- sync_seq triggers of 0003 rewrite the whole row (body, HTML: ~15 KB) after every insert and
-- update, to number the server's feed; a replica serves no feed. While `sync_seq_quiet` holds a
-- row, they do nothing. Only the replica's pull (`Store::apply_pulled_batch`) writes that row,
-- inside its own transaction, and deletes it before committing (it bumps `sync_counter` once
-- itself), so no other connection ever sees it and a lab server never has it.
CREATE TABLE sync_seq_quiet (id INTEGER PRIMARY KEY CHECK (id = 1));

DROP TRIGGER entities_sync_seq_insert;
DROP TRIGGER entities_sync_seq_update;

CREATE TRIGGER entities_sync_seq_insert AFTER INSERT ON entities
WHEN NOT EXISTS (SELECT 1 FROM sync_seq_quiet) BEGIN
    UPDATE sync_counter SET value = value + 1 WHERE id = 1;
    UPDATE entities SET sync_seq = (SELECT value FROM sync_counter WHERE id = 1) WHERE id = NEW.id;
END;

CREATE TRIGGER entities_sync_seq_update AFTER UPDATE ON entities
WHEN NEW.sync_seq = OLD.sync_seq AND NOT EXISTS (SELECT 1 FROM sync_seq_quiet) BEGIN
    UPDATE sync_counter SET value = value + 1 WHERE id = 1;
    UPDATE entities SET sync_seq = (SELECT value FROM sync_counter WHERE id = 1) WHERE id = NEW.id;
END;

-- Bytes of pulled changes appended to an entry's saved document since it was last saved
-- whole: a pulled edit to an entry without local changes is stored as `doc || changes`
-- (Automerge loads the concatenation) instead of load, merge, save; past a bound the replica
-- saves it whole again.
ALTER TABLE replica_entities ADD COLUMN appended INTEGER NOT NULL DEFAULT 0;
