-- Issue #5, a pull's speed: a replica imports the lab's reference records again after a pull
-- only while a category names a default template it did not hold (`replica_state` key
-- `category_templates_pending`, kept by `Store::import_reference`). A replica made before
-- this starts with the key set, so its next pull checks once.
INSERT OR IGNORE INTO replica_state (key, value)
SELECT 'category_templates_pending', '1'
WHERE EXISTS (SELECT 1 FROM replica_state WHERE key = 'server');
