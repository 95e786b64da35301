-- Issue #5 (sync speed), replica side of a push and of the pull that follows it.
--
-- `pushed_seq`: the last of this entity's local change rows (`entity_changes.seq`) that the
-- server has acknowledged. The changes to push are then the rows after it (read from the log,
-- in order), without loading the Automerge document. NULL when unknown (rows from before this
-- migration with changes waiting, or after the server sent a whole document over the copy
-- here, e.g. restored from a backup): the replica then loads the document as before.
ALTER TABLE replica_entities ADD COLUMN pushed_seq INTEGER DEFAULT 0;

UPDATE replica_entities SET pushed_seq = CASE
    WHEN acked_heads = (SELECT d.heads FROM entity_docs d WHERE d.entity_id = replica_entities.entity_id)
    THEN coalesce((SELECT max(c.seq) FROM entity_changes c WHERE c.entity_id = replica_entities.entity_id), 0)
    ELSE NULL END;

-- Accepted pushes whose result the feed will list again ("echo"): the server's sequence of the
-- entity right after the push and its heads then. When the feed lists the entity at exactly
-- that sequence with those heads, and nothing happened to it on the server between the
-- replica's last pull and the push (checked before a row is written here), there is nothing to
-- pull. Rows are removed once the feed has been read.
CREATE TABLE replica_echo (
    entity_id INTEGER PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,
    seq       INTEGER NOT NULL,
    heads     TEXT NOT NULL
);
