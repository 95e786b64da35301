-- The audit log: every server-side action, appended in the transaction of the action itself,
-- hash-chained. Each entry's `hash` is the SHA-256 of a canonical encoding of its own fields
-- and `prev_hash` (the previous entry's hash; 64 zeros for the first), so changing, removing
-- or reordering any entry breaks every later hash (docs/TRACEABILITY.md gives the encoding).
-- Rows are never updated or deleted. No foreign keys: the log must outlive what it names.
CREATE TABLE audit_log (
    -- 1, 2, 3 … without gaps (checked by `cahier verify`).
    seq         INTEGER PRIMARY KEY,
    -- The server's time, ms since the epoch.
    at          INTEGER NOT NULL,
    -- The user who acted (NULL: the system, or an unknown account at a failed sign-in).
    actor_id    INTEGER,
    -- The sync device that acted, when one did.
    device      TEXT,
    -- The client's address, when the action came over HTTP and it was known.
    ip          TEXT,
    -- What happened, e.g. `auth.sign_in`, `entity.lock` (audit::action).
    action      TEXT NOT NULL,
    -- What it happened to: a type (`entity`, `user`, `team`, `device`, …) and its id as text.
    target_type TEXT NOT NULL,
    target_id   TEXT NOT NULL,
    -- Canonical JSON object with the particulars (never a secret).
    details     TEXT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL
);
CREATE INDEX audit_log_action ON audit_log (action, seq);
CREATE INDEX audit_log_actor ON audit_log (actor_id, seq);
CREATE INDEX audit_log_target ON audit_log (target_type, target_id, seq);
CREATE INDEX audit_log_at ON audit_log (at);

-- Trusted timestamps of the chain's head (RFC 3161), taken once a day by the server: each one
-- proves that every entry up to `seq` existed at `gen_time_ms`. The token stamps the bytes of
-- `head_hash` (64 lowercase hex characters, ASCII).
CREATE TABLE audit_anchors (
    id          INTEGER PRIMARY KEY,
    seq         INTEGER NOT NULL,
    head_hash   TEXT NOT NULL,
    hash_alg    TEXT NOT NULL,
    gen_time_ms INTEGER NOT NULL,
    tsa_name    TEXT NOT NULL,
    -- The DER TimeStampResp, and the certificates it carries (PEM).
    token       BLOB NOT NULL,
    chain       BLOB NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE INDEX audit_anchors_seq ON audit_anchors (seq);
