-- Issue #7: a counter that moves whenever who-may-do-what changes, so a server can keep API
-- keys' grants and users' memberships in memory and still see every change, also one made by
-- another process on the same file (`cahier apikey revoke`, `cahier user` on a live instance).
-- Readers select `value` as an extra column of a statement they run anyway and drop what they
-- cached when it moved. Triggers, not application code, bump it: no writer can forget.
CREATE TABLE auth_epoch (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO auth_epoch (id, value) VALUES (1, 0);

-- API keys: every change but the once-a-minute `last_used_at` stamp (it grants nothing).
CREATE TRIGGER auth_epoch_api_keys_insert AFTER INSERT ON api_keys
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_api_keys_delete AFTER DELETE ON api_keys
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_api_keys_update AFTER UPDATE OF user_id, team_id, secret_hash, can_write ON api_keys
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;

-- Users: any column (archiving, sysadmin flag, names shown in answers, language, team).
CREATE TRIGGER auth_epoch_users_insert AFTER INSERT ON users
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_users_delete AFTER DELETE ON users
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_users_update AFTER UPDATE ON users
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;

-- Team memberships and their admin flag.
CREATE TRIGGER auth_epoch_memberships_insert AFTER INSERT ON memberships
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_memberships_delete AFTER DELETE ON memberships
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_memberships_update AFTER UPDATE ON memberships
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;

-- Group memberships.
CREATE TRIGGER auth_epoch_group_members_insert AFTER INSERT ON group_members
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_group_members_delete AFTER DELETE ON group_members
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_group_members_update AFTER UPDATE ON group_members
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;

-- Teams and groups: deleting one removes memberships by cascade (which fires the triggers
-- above too); these make the rule hold whatever the foreign-key settings of the writer.
CREATE TRIGGER auth_epoch_teams_delete AFTER DELETE ON teams
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_teams_update AFTER UPDATE ON teams
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_team_groups_delete AFTER DELETE ON team_groups
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
CREATE TRIGGER auth_epoch_team_groups_update AFTER UPDATE ON team_groups
BEGIN UPDATE auth_epoch SET value = value + 1 WHERE id = 1; END;
