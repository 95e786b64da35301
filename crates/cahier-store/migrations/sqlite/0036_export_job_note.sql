-- Issue #5: a field replica's export may leave out attachment files it could not fetch; the
-- finished job says which (in the language of whoever asked), shown beside "Done".
ALTER TABLE export_jobs ADD COLUMN note TEXT;
