-- Attachments of entities (eLabFTW's `uploads`). The file itself is a blob named by its
-- SHA-256 in the blob store; the entity's document also references it under `attachments`.
-- Replacing a file adds a row pointing at the one it replaces, which is archived.
CREATE TABLE uploads (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id    INTEGER NOT NULL REFERENCES entities(id),
    sha256       TEXT NOT NULL,
    real_name    TEXT NOT NULL,
    comment      TEXT NOT NULL DEFAULT '',
    size         INTEGER NOT NULL,
    media_type   TEXT NOT NULL,
    user_id      INTEGER NOT NULL REFERENCES users(id),
    created_at   INTEGER NOT NULL,
    -- 1 normal, 2 archived, 3 deleted (eLabFTW's State).
    state        INTEGER NOT NULL DEFAULT 1,
    replaces_id  INTEGER REFERENCES uploads(id)
);
CREATE INDEX uploads_entity ON uploads(entity_id, state);
CREATE INDEX uploads_sha256 ON uploads(sha256);
