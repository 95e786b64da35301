-- Issue #5 (a sync with nothing to do in a few ms): `GET /reference` answers "unchanged"
-- (304) when the replica already holds the records it would build. The server names what it
-- sends by a version made of this counter, the feed's `sync_counter` (entries, their owners,
-- rules and files), the user and the process (see `Store::reference_version`). Every write
-- to a table the reference records are read from moves this counter, through triggers, so no
-- write path can forget it. A replica's own copies of these tables move it too; harmless.
CREATE TABLE reference_version (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO reference_version (id, value) VALUES (1, 0);

CREATE TRIGGER reference_version_users_insert AFTER INSERT ON users BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
-- Not on a sign-in (last_login) or a change of preferences the reference does not carry.
CREATE TRIGGER reference_version_users_update
AFTER UPDATE OF email, firstname, lastname, is_sysadmin, is_archived, time_zone ON users BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_users_delete AFTER DELETE ON users BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER reference_version_teams_insert AFTER INSERT ON teams BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_teams_update AFTER UPDATE ON teams BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_teams_delete AFTER DELETE ON teams BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER reference_version_memberships_insert AFTER INSERT ON memberships BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_memberships_update AFTER UPDATE ON memberships BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_memberships_delete AFTER DELETE ON memberships BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER reference_version_team_groups_insert AFTER INSERT ON team_groups BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_team_groups_update AFTER UPDATE ON team_groups BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_team_groups_delete AFTER DELETE ON team_groups BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER reference_version_group_members_insert AFTER INSERT ON group_members BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_group_members_update AFTER UPDATE ON group_members BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_group_members_delete AFTER DELETE ON group_members BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER reference_version_statuses_insert AFTER INSERT ON statuses BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_statuses_update AFTER UPDATE ON statuses BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_statuses_delete AFTER DELETE ON statuses BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;

CREATE TRIGGER reference_version_categories_insert AFTER INSERT ON categories BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_categories_update AFTER UPDATE ON categories BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_categories_delete AFTER DELETE ON categories BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;

-- Who may read an entry (an uploader of a readable entry is listed among the users). Writes
-- to these also move the entry's `sync_seq`; the triggers keep the rule local all the same.
CREATE TRIGGER reference_version_entity_acl_insert AFTER INSERT ON entity_acl BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_entity_acl_delete AFTER DELETE ON entity_acl BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_uploads_insert AFTER INSERT ON uploads BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_uploads_delete AFTER DELETE ON uploads BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;

-- The lab's time zone (other instance settings are not reference records).
CREATE TRIGGER reference_version_zone_insert AFTER INSERT ON instance_settings
WHEN NEW.key = 'time_zone' BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_zone_update AFTER UPDATE ON instance_settings
WHEN NEW.key = 'time_zone' OR OLD.key = 'time_zone' BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
CREATE TRIGGER reference_version_zone_delete AFTER DELETE ON instance_settings
WHEN OLD.key = 'time_zone' BEGIN
    UPDATE reference_version SET value = value + 1 WHERE id = 1;
END;
