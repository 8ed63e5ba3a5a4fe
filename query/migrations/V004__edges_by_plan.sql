-- The activities that followed a plan: an association's prov:plan (an OpenLineage job is the plan its runs
-- follow).  The explorer opens a job as its latest runs (query/explorer/_api.py); without this index that
-- lookup would scan every association.
CREATE INDEX edges_plan_idx ON prov.edges ((attributes ->> 'prov:plan'), seq)
    WHERE relation = 'wasAssociatedWith' AND attributes ? 'prov:plan';
