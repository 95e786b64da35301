-- Typed metadata fields (eLabFTW's extra fields), projected from each entity's document in the
-- same transaction as every change, for search and range filters (`field:Temperature>20`).
-- One row per value (a multiple-choice field has several; an empty field one row with ''), so
-- the type of an empty field is known too. Names and text values compare case-insensitively.
-- value_num holds the value when it reads as a number. The two (name, …) indexes serve the
-- filters: `name = ? AND value_num > ?` and `name = ? AND value_text = ?` are index range scans
-- (listing.rs field filters; a test checks the query plan).
CREATE TABLE entity_fields (
    entity_id  INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    name       TEXT NOT NULL COLLATE NOCASE,
    type       TEXT NOT NULL,
    value_text TEXT NOT NULL COLLATE NOCASE,
    value_num  REAL
);
CREATE INDEX entity_fields_entity ON entity_fields(entity_id);
CREATE INDEX entity_fields_num ON entity_fields(name, value_num);
CREATE INDEX entity_fields_text ON entity_fields(name, value_text);

-- The default template of each team, per kind of template ('experiment_template',
-- 'resource_template'): preselected when a member starts a new entry. Set by team admins.
CREATE TABLE team_default_templates (
    team_id   INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    kind      TEXT NOT NULL,
    entity_id INTEGER NOT NULL REFERENCES entities(id) ON DELETE CASCADE,
    PRIMARY KEY (team_id, kind)
);
