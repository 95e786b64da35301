-- Foundation schema. Two kinds of data live here (docs/ARCHITECTURE.md):
--  * authoritative records changed only by the server: users, teams, memberships, groups,
--    statuses, categories, sessions, keys, entity ownership/access/lock/state;
--  * the projection of each entity's Automerge document (entities' content columns and the
--    entity_* child tables, entity_fts), rewritten in the same transaction as every change.
-- Times are INTEGER milliseconds since the Unix epoch, UTC.

CREATE TABLE instance_settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

CREATE TABLE teams (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at INTEGER NOT NULL
);

CREATE TABLE users (
    id                 INTEGER PRIMARY KEY,
    email              TEXT NOT NULL UNIQUE COLLATE NOCASE,
    firstname          TEXT NOT NULL,
    lastname           TEXT NOT NULL,
    -- argon2id PHC string; NULL = cannot sign in with a password.
    password_hash      TEXT,
    is_sysadmin        INTEGER NOT NULL DEFAULT 0,
    -- 'en', 'fr', or NULL to follow the browser.
    lang               TEXT,
    default_read_base  INTEGER NOT NULL DEFAULT 30,
    default_write_base INTEGER NOT NULL DEFAULT 20,
    current_team       INTEGER REFERENCES teams(id) ON DELETE SET NULL,
    is_archived        INTEGER NOT NULL DEFAULT 0,
    created_at         INTEGER NOT NULL,
    last_login         INTEGER
);

CREATE TABLE memberships (
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    team_id  INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    is_admin INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (user_id, team_id)
);
CREATE INDEX memberships_team ON memberships(team_id);

CREATE TABLE team_groups (
    id      INTEGER PRIMARY KEY,
    team_id INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name    TEXT NOT NULL,
    UNIQUE (team_id, name)
);

-- Members of a group may come from other teams (as in eLabFTW: groups serve projects).
CREATE TABLE group_members (
    group_id INTEGER NOT NULL REFERENCES team_groups(id) ON DELETE CASCADE,
    user_id  INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    PRIMARY KEY (group_id, user_id)
);
CREATE INDEX group_members_user ON group_members(user_id);

-- Statuses and categories, per team and per entity family ('experiment' or 'resource').
CREATE TABLE statuses (
    id         INTEGER PRIMARY KEY,
    team_id    INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    family     TEXT NOT NULL,
    title      TEXT NOT NULL,
    color      TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    ordering   INTEGER NOT NULL DEFAULT 0,
    state      INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX statuses_team ON statuses(team_id, family);

CREATE TABLE categories (
    id         INTEGER PRIMARY KEY,
    team_id    INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    family     TEXT NOT NULL,
    title      TEXT NOT NULL,
    color      TEXT NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    ordering   INTEGER NOT NULL DEFAULT 0,
    state      INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX categories_team ON categories(team_id, family);

-- Server-side sessions; the cookie holds a random token, we keep only its SHA-256.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at INTEGER NOT NULL,
    last_seen  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX sessions_user ON sessions(user_id);

-- API keys, bound to a user and a team (eLabFTW API v2). Only a SHA-256 of the secret is kept.
CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY,
    user_id      INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    team_id      INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    secret_hash  TEXT NOT NULL,
    can_write    INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    last_used_at INTEGER
);

-- Failed sign-ins, by e-mail and by client address, for throttling.
CREATE TABLE login_failures (
    subject TEXT NOT NULL,
    at      INTEGER NOT NULL
);
CREATE INDEX login_failures_subject ON login_failures(subject, at);

-- Automerge actors seen in documents, bound to the user (and device) that wrote with them.
CREATE TABLE actors (
    actor      TEXT PRIMARY KEY,
    user_id    INTEGER NOT NULL REFERENCES users(id),
    device     TEXT NOT NULL,
    first_seen INTEGER NOT NULL
);

-- One row per entity: authoritative columns (team, owner, access, lock, state) and the
-- projection of its document (title … n_conflicts). Lists, search and policy read only this.
CREATE TABLE entities (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    uuid          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL,
    team_id       INTEGER NOT NULL REFERENCES teams(id),
    owner_id      INTEGER NOT NULL REFERENCES users(id),
    canread_base  INTEGER NOT NULL,
    canwrite_base INTEGER NOT NULL,
    locked_by     INTEGER REFERENCES users(id),
    locked_at     INTEGER,
    -- 1 normal, 2 archived, 3 deleted (eLabFTW's State).
    state         INTEGER NOT NULL DEFAULT 1,
    elabid        TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    modified_at   INTEGER NOT NULL,
    lastchangeby  INTEGER NOT NULL,
    -- Projection of the document:
    title         TEXT NOT NULL,
    date          TEXT NOT NULL,
    body          TEXT NOT NULL,
    body_html     TEXT NOT NULL,
    content_type  INTEGER NOT NULL,
    status_id     INTEGER,
    category_id   INTEGER,
    rating        INTEGER NOT NULL DEFAULT 0,
    tags_text     TEXT NOT NULL DEFAULT '',
    template_uuid TEXT,
    metadata      TEXT,
    heads         TEXT NOT NULL,
    n_conflicts   INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX entities_by_change ON entities(kind, state, modified_at DESC, id DESC);
CREATE INDEX entities_by_date ON entities(kind, state, date DESC, id DESC);
CREATE INDEX entities_by_title ON entities(kind, state, title, id);
CREATE INDEX entities_by_owner ON entities(owner_id, kind, state, modified_at DESC);
CREATE INDEX entities_by_team ON entities(team_id, kind, state);
CREATE INDEX entities_by_status ON entities(status_id);
CREATE INDEX entities_by_category ON entities(category_id);

-- The explicit grants of canread ('r') and canwrite ('w'): to a team ('t'), a team group ('g')
-- or a user ('u'). Kept as rows so the policy filter is an indexed lookup.
CREATE TABLE entity_acl (
    entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    mode      TEXT NOT NULL,
    grantee   TEXT NOT NULL,
    ref_id    INTEGER NOT NULL,
    PRIMARY KEY (entity_id, mode, grantee, ref_id)
);
CREATE INDEX entity_acl_grantee ON entity_acl(grantee, ref_id);

CREATE TABLE entity_tags (
    entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    tag       TEXT NOT NULL,
    PRIMARY KEY (entity_id, tag)
);
CREATE INDEX entity_tags_tag ON entity_tags(tag);

CREATE TABLE entity_links (
    entity_id   INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    target_uuid TEXT NOT NULL,
    PRIMARY KEY (entity_id, target_uuid)
);
CREATE INDEX entity_links_target ON entity_links(target_uuid);

CREATE TABLE entity_steps (
    entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    step_id   TEXT NOT NULL,
    ordering  INTEGER NOT NULL,
    body      TEXT NOT NULL,
    done      INTEGER NOT NULL,
    done_by   INTEGER,
    done_at   INTEGER,
    PRIMARY KEY (entity_id, step_id)
);
CREATE INDEX entity_steps_open ON entity_steps(done, entity_id);

CREATE TABLE entity_comments (
    entity_id  INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    comment_id TEXT NOT NULL,
    author     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    edited_at  INTEGER,
    body       TEXT NOT NULL,
    PRIMARY KEY (entity_id, comment_id)
);

CREATE TABLE entity_conflicts (
    entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    field     TEXT NOT NULL,
    values_json TEXT NOT NULL,
    PRIMARY KEY (entity_id, field)
);

-- The saved Automerge document of each entity (compact save after every change).
CREATE TABLE entity_docs (
    entity_id INTEGER PRIMARY KEY REFERENCES entities(id) ON DELETE CASCADE,
    doc       BLOB NOT NULL,
    heads     TEXT NOT NULL
);

-- Every accepted change, append-only, with its global sequence number (the sync feed) and
-- provenance: the user and device behind its actor, the writer's clock and the server's.
CREATE TABLE entity_changes (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    entity_id   INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    hash        TEXT NOT NULL,
    actor       TEXT NOT NULL,
    user_id     INTEGER NOT NULL,
    device      TEXT NOT NULL,
    time_ms     INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    message     TEXT NOT NULL,
    deps        TEXT NOT NULL,
    bytes       BLOB NOT NULL,
    UNIQUE (entity_id, hash)
);

-- Full-text index over title, body, tags and comments; rowid = entities.id. Contentless, so
-- the 5 KB bodies are not stored twice.
CREATE VIRTUAL TABLE entity_fts USING fts5(
    title, body, tags, comments,
    content = '', contentless_delete = 1,
    tokenize = 'unicode61 remove_diacritics 2'
);
