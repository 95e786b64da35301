-- Issue #5, a pull's speed: which child rows (access lists, tags, links, steps, comments,
-- metadata fields, conflicts) a pull last wrote for an entry, as a digest bound to the
-- entry's heads then. A later pull of an entry still at those heads whose child rows are the
-- same leaves them as they are instead of deleting and writing them again (a body edit).
ALTER TABLE replica_entities ADD COLUMN children BLOB;
