-- What a resource category gives a new resource filed in it, set by team admins: the base
-- levels of its read and write rules (NULL: the author's own defaults) and the template it
-- starts from (NULL: none; cleared if the template is purged). Numbered 0009 because 0008 is
-- taken by the timestamps work on another branch.
ALTER TABLE categories ADD COLUMN default_canread_base INTEGER;
ALTER TABLE categories ADD COLUMN default_canwrite_base INTEGER;
ALTER TABLE categories ADD COLUMN default_template_id INTEGER REFERENCES entities(id) ON DELETE SET NULL;
