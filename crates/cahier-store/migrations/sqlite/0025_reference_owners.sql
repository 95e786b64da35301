-- Issue #5 (sync speed): a replica's `GET /reference` names the owners of the entries its user
-- may read, at every sync. Deciding that from `entities` read a row of several KB (body and
-- HTML) per entry, ~40 MB for 10,000 entries. This index holds the columns the read policy
-- looks at (access_sql::readable_by) by owner, so the question "may this user read an entry
-- of that owner?" is answered from the index, stopping at the first readable entry.
CREATE INDEX entities_read_by_owner ON entities(owner_id, canread_base, canwrite_base, team_id);
-- The same for the users who attached files: uploads by uploader.
CREATE INDEX uploads_by_user ON uploads(user_id, entity_id);
