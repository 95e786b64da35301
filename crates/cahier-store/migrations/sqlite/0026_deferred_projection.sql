-- Issue #5 (push speed): the server accepts a pushed edit of an entry's body or plain fields
-- without loading its document (sync/fast_push.rs) and projects it later (deferred.rs).

-- What the fast path needs to know of a document without loading it, valid while `heads` are
-- the document's heads (entity_docs.heads): the id of its body Text object, the op ids of the
-- body's elements (runs of counters per actor) and each actor's last change sequence number.
-- Rebuilt from `entity_changes` when the heads differ; never trusted otherwise.
CREATE TABLE entity_doc_index (
    entity_id INTEGER PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,
    heads     TEXT NOT NULL,
    info      TEXT NOT NULL
);

-- Entries whose projection (columns of `entities`, child rows, search index) is older than
-- their document: written in the transaction that accepts the change, deleted by whoever
-- projects the document at these heads (or later ones).
CREATE TABLE projection_stale (
    entity_id INTEGER PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,
    heads     TEXT NOT NULL,
    since     INTEGER NOT NULL
);
