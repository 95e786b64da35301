-- Issue #5 (a sync with nothing to do in a few ms): the replica finds its entries with local
-- changes waiting (no acknowledgement, or acknowledged heads other than the document's) from a
-- small set kept by triggers, instead of comparing the heads of every entry it holds (two scans
-- of 10,000 rows per sync). The set may hold entries that are no longer waiting (they are
-- checked against the heads when read), never miss one that is: every write of a document's
-- heads and every acknowledgement goes through the triggers below. Only on a replica (it has
-- `replica_state` rows before it holds any entry); a lab server never fills it. No `OR IGNORE`
-- in the triggers: the conflict clause of the statement that fires them (an upsert) would
-- override it.
CREATE TABLE replica_pending (entity_id INTEGER PRIMARY KEY);

INSERT INTO replica_pending (entity_id)
SELECT d.entity_id FROM entity_docs d LEFT JOIN replica_entities r ON r.entity_id = d.entity_id
WHERE (r.acked_heads IS NULL OR r.acked_heads != d.heads)
  AND EXISTS (SELECT 1 FROM replica_state);

CREATE TRIGGER replica_pending_doc_insert AFTER INSERT ON entity_docs
WHEN EXISTS (SELECT 1 FROM replica_state) BEGIN
    INSERT INTO replica_pending (entity_id) SELECT NEW.entity_id
      WHERE NOT EXISTS (SELECT 1 FROM replica_pending WHERE entity_id = NEW.entity_id);
END;

CREATE TRIGGER replica_pending_doc_heads AFTER UPDATE OF heads ON entity_docs
WHEN NEW.heads != OLD.heads AND EXISTS (SELECT 1 FROM replica_state) BEGIN
    INSERT INTO replica_pending (entity_id) SELECT NEW.entity_id
      WHERE NOT EXISTS (SELECT 1 FROM replica_pending WHERE entity_id = NEW.entity_id);
END;

CREATE TRIGGER replica_pending_doc_delete AFTER DELETE ON entity_docs BEGIN
    DELETE FROM replica_pending WHERE entity_id = OLD.entity_id;
END;

-- An acknowledgement of the document's heads takes the entry out; any other puts it in.
CREATE TRIGGER replica_pending_ack_insert AFTER INSERT ON replica_entities BEGIN
    DELETE FROM replica_pending WHERE entity_id = NEW.entity_id
      AND NEW.acked_heads = (SELECT heads FROM entity_docs WHERE entity_id = NEW.entity_id);
    INSERT INTO replica_pending (entity_id) SELECT NEW.entity_id
      WHERE NEW.acked_heads IS NOT (SELECT heads FROM entity_docs WHERE entity_id = NEW.entity_id)
        AND NOT EXISTS (SELECT 1 FROM replica_pending WHERE entity_id = NEW.entity_id);
END;

CREATE TRIGGER replica_pending_ack_update AFTER UPDATE OF acked_heads ON replica_entities BEGIN
    DELETE FROM replica_pending WHERE entity_id = NEW.entity_id
      AND NEW.acked_heads = (SELECT heads FROM entity_docs WHERE entity_id = NEW.entity_id);
    INSERT INTO replica_pending (entity_id) SELECT NEW.entity_id
      WHERE NEW.acked_heads IS NOT (SELECT heads FROM entity_docs WHERE entity_id = NEW.entity_id)
        AND NOT EXISTS (SELECT 1 FROM replica_pending WHERE entity_id = NEW.entity_id);
END;

CREATE TRIGGER replica_pending_ack_delete AFTER DELETE ON replica_entities BEGIN
    INSERT INTO replica_pending (entity_id) SELECT OLD.entity_id
      WHERE EXISTS (SELECT 1 FROM entity_docs WHERE entity_id = OLD.entity_id)
        AND NOT EXISTS (SELECT 1 FROM replica_pending WHERE entity_id = OLD.entity_id);
END;

-- The count of entries the server knows (`Store::synced_count`, read at every sync) from a
-- small index rather than the table's rows.
CREATE INDEX replica_entities_known ON replica_entities(server_id) WHERE server_id IS NOT NULL;
