-- The projector refreshes the planner's statistics of the tables it writes once the projection has grown
-- (query/projector.py, Projector): right after a bulk load or a rebuild, autovacuum takes a minute or more
-- to get there, and until then a wide trace's plans are several times slower.  ANALYZE needs the table's
-- owner or, from PostgreSQL 17, the MAINTAIN privilege; on older servers the projector's ANALYZE is
-- skipped with a warning and autovacuum alone keeps the statistics.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 170000 THEN
        EXECUTE 'GRANT MAINTAIN ON prov.nodes, prov.node_versions, prov.edges, prov.predictions, prov.entries '
                'TO provault_projector';
    END IF;
END
$$;
