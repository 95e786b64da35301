-- Issue #5 (sync speed): `heads` moves before the document bytes. SQLite reads a row's columns
-- in order, and a document of a few KB spills into overflow pages: reading `heads` behind it
-- meant walking (and on a replica, decrypting) every page of the document. A replica's sync
-- compares the heads of every entry it holds with what the server acknowledged, so a sync with
-- nothing to do read every document whole; the document cache also checks heads before it
-- needs the bytes.
CREATE TABLE entity_docs_new (
    entity_id INTEGER PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,
    heads     TEXT NOT NULL,
    doc       BLOB NOT NULL
);
INSERT INTO entity_docs_new (entity_id, heads, doc)
    SELECT entity_id, heads, doc FROM entity_docs ORDER BY entity_id;
DROP TABLE entity_docs;
ALTER TABLE entity_docs_new RENAME TO entity_docs;
