-- provault PROV projection, version 1 (component "prov"; needs the ledger schema).
--
-- Every table here is a deterministic function of ledger.entries up to
-- prov.position.last_seq: `query.projector.rebuild` truncates them and
-- replays the log, and `query.projector.checksum` shows the result is
-- identical.  No column holds a wall-clock time of the projector or a value
-- drawn from a sequence, so replays cannot differ.  Every row carries the log
-- seq that introduced it, which makes as-of answers exact (docs/query.md).

CREATE SCHEMA IF NOT EXISTS prov;

-- One row per log entry projected (also the ones skipped): the link from
-- every node version, edge and prediction back to its ledger entry and the
-- key that signed it.  received_at resolves "as of time T" to a seq.
CREATE TABLE prov.entries (
    seq           bigint PRIMARY KEY CHECK (seq >= 0),
    event_id      uuid NOT NULL UNIQUE,
    kind          text NOT NULL,
    keyid         text NOT NULL,
    producer_id   text NOT NULL,
    producer_seq  bigint NOT NULL,
    event_time    timestamptz NOT NULL,
    received_at   timestamptz NOT NULL
);
CREATE INDEX entries_received_idx ON prov.entries (received_at, seq);
CREATE INDEX entries_keyid_idx ON prov.entries (keyid, seq);

-- Entries of the log the projector could not map (their seq is still in
-- prov.entries and counted by the position); never silently dropped.
CREATE TABLE prov.skipped (
    seq      bigint PRIMARY KEY REFERENCES prov.entries (seq),
    reason   text NOT NULL,
    message  text NOT NULL
);

-- The graph's nodes as of prov.position: attributes merged over every
-- mention (per attribute, the highest seq wins); label and kind are read
-- from the merged prov:label / prov:type.  node_type is NULL only while the
-- node has been seen solely as an end of wasInfluencedBy.
CREATE TABLE prov.nodes (
    id          text PRIMARY KEY,
    iri         text NOT NULL,
    node_type   text CHECK (node_type IN ('entity', 'activity', 'agent')),
    label       text,
    kind        text,
    attributes  jsonb NOT NULL,
    first_seq   bigint NOT NULL REFERENCES prov.entries (seq),
    last_seq    bigint NOT NULL REFERENCES prov.entries (seq),
    CHECK (first_seq <= last_seq)
);
CREATE INDEX nodes_kind_idx ON prov.nodes (kind, id);
CREATE INDEX nodes_type_idx ON prov.nodes (node_type, id);

-- Every mention of a node by an entry, with what that entry said about it:
-- the node as of seq N is the fold of its versions with seq <= N.
CREATE TABLE prov.node_versions (
    node_id     text NOT NULL REFERENCES prov.nodes (id),
    seq         bigint NOT NULL REFERENCES prov.entries (seq),
    node_type   text CHECK (node_type IN ('entity', 'activity', 'agent')),
    attributes  jsonb NOT NULL,
    PRIMARY KEY (node_id, seq)
);
CREATE INDEX node_versions_seq_idx ON prov.node_versions (seq);
-- Hubs (a model every prediction batch uses) gain a version per mention, most
-- of them empty; traversal reads only the versions that say something.
CREATE INDEX node_versions_said_idx ON prov.node_versions (node_id, seq) WHERE attributes <> '{}'::jsonb;

-- One row per relation statement (per member for hadMember), pointing from
-- the dependent to what it depends on (PROV's own direction): upstream
-- follows src -> dst, downstream dst -> src.  (seq, ordinal) is the
-- statement's place in the log: ordinal counts the edges of one entry.
CREATE TABLE prov.edges (
    seq         bigint NOT NULL REFERENCES prov.entries (seq),
    ordinal     integer NOT NULL CHECK (ordinal >= 0),
    relation    text NOT NULL CHECK (relation IN (
        'used', 'wasGeneratedBy', 'wasInformedBy', 'wasStartedBy', 'wasEndedBy', 'wasInvalidatedBy',
        'wasDerivedFrom', 'wasAttributedTo', 'wasAssociatedWith', 'actedOnBehalfOf', 'wasInfluencedBy',
        'specializationOf', 'alternateOf', 'hadMember')),
    src         text NOT NULL REFERENCES prov.nodes (id),
    dst         text NOT NULL REFERENCES prov.nodes (id),
    stmt_id     text NOT NULL,
    origin      text NOT NULL CHECK (origin IN ('prov', 'key')),
    attributes  jsonb NOT NULL,
    PRIMARY KEY (seq, ordinal)
);
CREATE INDEX edges_src_idx ON prov.edges (src, relation, seq);
CREATE INDEX edges_dst_idx ON prov.edges (dst, relation, seq);

-- The prediction index: one row per prediction of a predictions.logged
-- batch, pointing at the batch activity.  Predictions are not nodes; a
-- traversal starts from one by looking it up here.  (id, seq): the same
-- prediction id logged again by a later entry is kept, not overwritten.
CREATE TABLE prov.predictions (
    id        text NOT NULL,
    seq       bigint NOT NULL REFERENCES prov.entries (seq),
    activity  text NOT NULL REFERENCES prov.nodes (id),
    time      timestamptz NOT NULL,
    input     jsonb,
    output    jsonb,
    PRIMARY KEY (id, seq)
);
CREATE INDEX predictions_activity_idx ON prov.predictions (activity, seq);

-- One row: the last log seq projected (-1 before the first entry), written
-- in the same transaction as the rows it covers.  Its row lock serialises
-- projectors.
CREATE TABLE prov.position (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_seq  bigint NOT NULL CHECK (last_seq >= -1)
);
INSERT INTO prov.position (last_seq) VALUES (-1);

-- Who signed each projected entry: its key and the identity the key is
-- bound to (ledger.keys for registered keys, ledger.trust_root for root
-- keys).  key_node is the projected entity of a registered key.  A view,
-- not projected state: compare registered_seq / revoked_seq with an as-of
-- seq yourself.
CREATE VIEW prov.entry_signers AS
SELECT e.seq,
       e.keyid,
       CASE WHEN k.keyid IS NOT NULL THEN 'provault:key/' || e.keyid END AS key_node,
       coalesce(k.role, 'admin') AS role,
       coalesce(k.identity, jsonb_build_object('type', 'service', 'name', t.name)) AS identity,
       t.keyid IS NOT NULL AS root_key,
       k.registered_seq,
       k.revoked_seq,
       k.revoked_from
FROM prov.entries e
LEFT JOIN ledger.keys k ON k.keyid = e.keyid
LEFT JOIN ledger.trust_root t ON t.keyid = e.keyid AND t.purpose = 'admin';

-- Roles.  The projector SETs ROLE to provault_projector; the query service
-- reads as provault_auditor.  Roles are cluster-wide: create them when
-- missing (a migration of another database may create them concurrently).
DO $$
DECLARE r text;
BEGIN
    FOREACH r IN ARRAY ARRAY['provault_projector', 'provault_auditor'] LOOP
        IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = r) THEN
            BEGIN
                EXECUTE format('CREATE ROLE %I NOLOGIN', r);
            EXCEPTION WHEN duplicate_object OR unique_violation THEN
                NULL;
            END;
        END IF;
    END LOOP;
END;
$$;

GRANT USAGE ON SCHEMA prov TO provault_projector, provault_auditor;
GRANT USAGE ON SCHEMA ledger TO provault_projector;
GRANT SELECT ON ledger.entries, ledger.keys TO provault_projector;
GRANT SELECT, INSERT, UPDATE, DELETE, TRUNCATE
    ON prov.entries, prov.skipped, prov.nodes, prov.node_versions, prov.edges, prov.predictions, prov.position
    TO provault_projector;
GRANT SELECT ON prov.entry_signers TO provault_projector;
GRANT SELECT ON ALL TABLES IN SCHEMA prov TO provault_auditor;
GRANT SELECT ON public.provault_migrations TO provault_projector;
