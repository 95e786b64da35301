-- Issue #5, a server restored from a backup (docs/SYNC.md, "A restored server"): every value
-- the feed sequence (`sync_counter`) takes gets a random stamp, written by a trigger in the
-- transaction that moves the counter, so no write path can forget it. A replica keeps the
-- stamp of the sequence it read (its checkpoint, and the end of the sequence after its
-- pushes) and names it later: the server still holds what the replica saw exactly when it
-- holds that stamp at that value. A restored database lacks the stamps written after its
-- backup; once its sequence grows again, the same values get other stamps. This holds for a
-- restore under a running server too (SQLite's backup API into the live file), which starts
-- no new history (`sync_history`, migration 32). A value moved past several at once (a push
-- in bulk) stamps only the last: the first stamp at or above a value answers for it, since
-- both were written by the same transaction.
CREATE TABLE sync_stamps (
    seq   INTEGER PRIMARY KEY,
    stamp INTEGER NOT NULL
);
INSERT INTO sync_stamps (seq, stamp) SELECT value, random() FROM sync_counter WHERE id = 1;

-- OR REPLACE: should the sequence ever take a value again, the new stamp is the one that
-- counts, and a replica holding the old one hears that the server lost it.
CREATE TRIGGER sync_counter_stamp AFTER UPDATE OF value ON sync_counter BEGIN
    INSERT OR REPLACE INTO sync_stamps (seq, stamp) VALUES (NEW.value, random());
END;

-- The version of the reference records (migration 29) is made of counters; a restore under a
-- running server takes them back, and new writes can bring them to the values a replica saw
-- before with other records. A stamp that changes with each move tells the two apart.
ALTER TABLE reference_version ADD COLUMN stamp INTEGER NOT NULL DEFAULT 0;
UPDATE reference_version SET stamp = random() WHERE id = 1;
CREATE TRIGGER reference_version_stamp AFTER UPDATE OF value ON reference_version BEGIN
    UPDATE reference_version SET stamp = random() WHERE id = 1;
END;
