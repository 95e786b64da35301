-- Issue #7: a team's tag vocabulary (eLabFTW's `/teams/{id}/tags`). Tags live in each entry's
-- document; this table only keeps the tags a team admin declared before any entry carries them,
-- so scripts that create a team's tags from a list (`POST /teams/{id}/tags`) find them again.
CREATE TABLE team_tags (
    team_id    INTEGER NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    tag        TEXT NOT NULL,
    created_by INTEGER REFERENCES users(id) ON DELETE SET NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (team_id, tag)
);
