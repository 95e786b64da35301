-- Field filters read entity ids from these indexes alone: with the id in the index, a filter
-- matching 12,500 of 100,000 entries builds its set in an index range scan instead of 12,500
-- table lookups (44 ms, BENCHMARKS.md). They replace the (name, value) indexes of migration 6.
CREATE INDEX entity_fields_num_entity ON entity_fields(name, value_num, entity_id);
CREATE INDEX entity_fields_text_entity ON entity_fields(name, value_text, entity_id);
DROP INDEX entity_fields_num;
DROP INDEX entity_fields_text;
