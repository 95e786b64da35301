-- Issue #5 (sync speed): the heads of every document without its bytes. A replica asks at each
-- sync which entries have changes the server has not acknowledged (their heads differ from the
-- acknowledged ones); scanning `entity_docs` or `entities` for that reads a page of document or
-- body per entry (and on a replica decrypts it), ~40 MB for 10,000 entries. This index holds
-- only (entity_id, heads), a few hundred pages, and answers that scan alone.
CREATE INDEX entity_docs_heads ON entity_docs(entity_id, heads);
