-- Trusted timestamps (RFC 3161) of entity versions. The proof itself is an ordinary, immutable
-- attachment of the entity (a ZIP with export.json, token.tsr and chain.pem), so it syncs and
-- lists like any file; this table records what it proves, for the entity page and for
-- `cahier verify`. Rows are never updated or deleted: re-stamping after an edit adds a row.
CREATE TABLE entity_timestamps (
    id            INTEGER PRIMARY KEY,
    entity_id     INTEGER NOT NULL REFERENCES entities(id),
    -- The document's heads the export was read at (comma-separated hex, as entity_docs.heads).
    heads         TEXT NOT NULL,
    -- SHA-256 (hex) of export.json, and the hash algorithm named in the token (sha256|sha512).
    export_sha256 TEXT NOT NULL,
    hash_alg      TEXT NOT NULL,
    -- genTime from the token, ms since the epoch (the TSA's time, not ours).
    gen_time_ms   INTEGER NOT NULL,
    -- The TSA as named by its signing certificate's subject.
    tsa_name      TEXT NOT NULL,
    upload_id     INTEGER NOT NULL REFERENCES uploads(id),
    user_id       INTEGER NOT NULL REFERENCES users(id),
    created_at    INTEGER NOT NULL
);
CREATE INDEX entity_timestamps_entity ON entity_timestamps (entity_id, id);
