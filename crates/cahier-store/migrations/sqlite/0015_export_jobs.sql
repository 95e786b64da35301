-- Background exports (.eln) of a selection, a user's or a team's notebook. A row is the job:
-- what was asked (scope, a JSON object: {"experiments": [ids], "items": [ids]}, {"user": id}
-- or {"team": id}), where it stands (state queued|running|done|failed, entities written out
-- of total) and the file it produced under <data>/exports/. The entities are read through
-- the access policy of the user who asked, when the job runs.
CREATE TABLE export_jobs (
    id          INTEGER PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id),
    scope       TEXT NOT NULL,
    format      TEXT NOT NULL DEFAULT 'eln',
    state       TEXT NOT NULL DEFAULT 'queued',
    total       INTEGER NOT NULL DEFAULT 0,
    done        INTEGER NOT NULL DEFAULT 0,
    -- File name under <data>/exports/ once written (never a path given by a user).
    file_name   TEXT,
    file_size   INTEGER,
    error       TEXT,
    created_at  INTEGER NOT NULL,
    finished_at INTEGER
);
CREATE INDEX export_jobs_user ON export_jobs (user_id, id);
