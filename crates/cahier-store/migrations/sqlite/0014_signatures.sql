-- Signatures with a meaning (minisign / Ed25519). Each user may hold one signing key: the
-- public key and the secret key box exactly as minisign writes them; the secret key is
-- encrypted with the user's passphrase (scrypt), which is never stored.
CREATE TABLE signing_keys (
    user_id    INTEGER PRIMARY KEY REFERENCES users(id),
    -- minisign key id (8 bytes, upper-case hex as `minisign` prints it).
    key_id     TEXT NOT NULL,
    -- The public key file (`untrusted comment: …` + base64 line).
    public_key TEXT NOT NULL,
    -- The encrypted secret key file.
    secret_key TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

-- One signature of one entity version. `export` is the exact signed bytes (the canonical
-- export, as for timestamps) and `signature` the `.minisig` file, so both download as they
-- were signed and `minisign -V` checks them. Rows are never updated or deleted.
CREATE TABLE entity_signatures (
    id         INTEGER PRIMARY KEY,
    entity_id  INTEGER NOT NULL REFERENCES entities(id),
    -- The document's heads the export was read at.
    heads      TEXT NOT NULL,
    -- eLabFTW's meaning code (10 approval, 11 disapproval, 20 authorship, 30 responsibility,
    -- 40 review, 50 safety) or ours (60 witness).
    meaning    INTEGER NOT NULL,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    key_id     TEXT NOT NULL,
    -- The signer's public key file at signing time (keys may be replaced later).
    public_key TEXT NOT NULL,
    export     BLOB NOT NULL,
    signature  TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
CREATE INDEX entity_signatures_entity ON entity_signatures (entity_id, id);
