-- Issue #4: time zones of the booking calendar and eLabFTW's `canbook` permission.

-- The user's time zone (IANA name such as Europe/Paris); NULL: the instance's. The instance's
-- own zone is the `time_zone` key of instance_settings (set by a sysadmin), else the
-- configuration's, else the server's.
ALTER TABLE users ADD COLUMN time_zone TEXT;

-- Who may book a resource: eLabFTW's canbook as JSON {"base":30,"teams":[],"teamgroups":[],
-- "users":[]}; NULL: the category's default below, else the same as canread.
ALTER TABLE booking_rules ADD COLUMN canbook TEXT;
-- A resource category's default canbook for its resources that have none (same JSON).
ALTER TABLE categories ADD COLUMN default_canbook TEXT;
