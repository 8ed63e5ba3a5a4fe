-- The projection is derived data with one writer: the projector writes an
-- entry's prov.entries row, its nodes, versions, edges and predictions in the
-- same transaction, and `provault project --rebuild` gives the same tables
-- again (checksum).  Checking each copied row against prov.entries and
-- prov.nodes tripled the cost of writing it (bench.query (e): 99k against 301k
-- prediction rows/s copied), so those references are not re-checked row by
-- row any more; the projector's tests check that none dangles after a
-- projection and after a rebuild (tests/query/test_projector.py).
-- prov.skipped keeps its reference: it is rare and written row by row.
ALTER TABLE prov.nodes DROP CONSTRAINT IF EXISTS nodes_first_seq_fkey;
ALTER TABLE prov.nodes DROP CONSTRAINT IF EXISTS nodes_last_seq_fkey;
ALTER TABLE prov.node_versions DROP CONSTRAINT IF EXISTS node_versions_node_id_fkey;
ALTER TABLE prov.node_versions DROP CONSTRAINT IF EXISTS node_versions_seq_fkey;
ALTER TABLE prov.edges DROP CONSTRAINT IF EXISTS edges_seq_fkey;
ALTER TABLE prov.edges DROP CONSTRAINT IF EXISTS edges_src_fkey;
ALTER TABLE prov.edges DROP CONSTRAINT IF EXISTS edges_dst_fkey;
ALTER TABLE prov.predictions DROP CONSTRAINT IF EXISTS predictions_seq_fkey;
ALTER TABLE prov.predictions DROP CONSTRAINT IF EXISTS predictions_activity_fkey;
