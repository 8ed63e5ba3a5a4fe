-- provault ledger schema, version 1.
--
-- The log (ledger.entries), its Merkle nodes and its checkpoints are
-- append-only by construction: triggers refuse UPDATE, DELETE and TRUNCATE,
-- and the service role holds only INSERT and SELECT on them.  Every other
-- table here is state derived from the log (it can be rebuilt by replaying
-- the log) or operational records (rejections, anomalies).

CREATE SCHEMA IF NOT EXISTS ledger;

-- Trust root: admin public keys given to `provault ledger init`, and the key
-- that signs checkpoints.  Not part of the log; everything else about keys is.
CREATE TABLE ledger.trust_root (
    keyid        text PRIMARY KEY CHECK (keyid ~ '^[0-9a-f]{64}$'),
    public_key   bytea NOT NULL CHECK (length(public_key) = 32),
    purpose      text NOT NULL CHECK (purpose IN ('admin', 'checkpoint')),
    name         text NOT NULL,
    added_at     timestamptz NOT NULL DEFAULT now()
);
-- A log has exactly one checkpoint identity for its whole life.
CREATE UNIQUE INDEX trust_root_one_checkpoint_key ON ledger.trust_root (purpose) WHERE purpose = 'checkpoint';

-- The log.  seq is the 0-based leaf index in the Merkle tree.
CREATE TABLE ledger.entries (
    seq           bigint PRIMARY KEY CHECK (seq >= 0),
    event_id      uuid NOT NULL UNIQUE,
    keyid         text NOT NULL,
    producer_id   text NOT NULL,
    producer_seq  bigint NOT NULL,
    kind          text NOT NULL,
    event_time    timestamptz NOT NULL,
    envelope      bytea NOT NULL,
    leaf_hash     bytea NOT NULL CHECK (length(leaf_hash) = 32),
    payload_hash  text NOT NULL,  -- chain hash of the payload: the next event's producer.prev
    received_at   timestamptz NOT NULL DEFAULT now(),
    source        text NOT NULL CHECK (source IN ('nats', 'grpc')),
    UNIQUE (producer_id, producer_seq)
);
CREATE INDEX entries_keyid_idx ON ledger.entries (keyid, seq);
CREATE INDEX entries_received_idx ON ledger.entries (received_at);

-- Hashes of every complete, aligned subtree: level L node i covers leaves
-- [i * 2^L, (i + 1) * 2^L).  Level 0 holds the leaf hashes.  Any inclusion
-- or consistency proof is a fold over O(log n) of these rows.
CREATE TABLE ledger.merkle_nodes (
    level  smallint NOT NULL CHECK (level >= 0 AND level < 64),
    idx    bigint NOT NULL CHECK (idx >= 0),
    hash   bytea NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- Signed checkpoints (C2SP signed-note text), one per tree size signed.
CREATE TABLE ledger.checkpoints (
    tree_size  bigint PRIMARY KEY CHECK (tree_size >= 0),
    root_hash  bytea NOT NULL CHECK (length(root_hash) = 32),
    note       text NOT NULL,
    signed_at  timestamptz NOT NULL DEFAULT now()
);

-- One row: the size of the log and the hashes of its perfect-subtree
-- frontier (left to right), so an append reads O(log n) state in one row.
-- The row lock serialises writers across processes.
CREATE TABLE ledger.log_state (
    id        boolean PRIMARY KEY DEFAULT true CHECK (id),
    size      bigint NOT NULL CHECK (size >= 0),
    frontier  bytea[] NOT NULL
);
INSERT INTO ledger.log_state (size, frontier) VALUES (0, '{}');

-- Key registry: derived from key.registered / key.revoked entries of the log.
CREATE TABLE ledger.keys (
    keyid           text PRIMARY KEY CHECK (keyid ~ '^[0-9a-f]{64}$'),
    public_key      bytea NOT NULL CHECK (length(public_key) = 32),
    role            text NOT NULL CHECK (role IN ('admin', 'producer')),
    identity        jsonb NOT NULL,
    kinds           text[] NOT NULL,
    producers       text[] NOT NULL,
    registered_seq  bigint NOT NULL,
    revoked_seq     bigint,
    revoked_from    timestamptz,
    revoked_reason  text,
    changed_seq     bigint NOT NULL
);
CREATE INDEX keys_changed_idx ON ledger.keys (changed_seq);

-- Per-producer progress along its seq / prev-hash chain.
CREATE TABLE ledger.producers (
    producer_id  text PRIMARY KEY,
    last_seq     bigint NOT NULL,
    last_hash    text NOT NULL,
    entries      bigint NOT NULL,
    first_log_seq bigint NOT NULL,
    last_log_seq bigint NOT NULL
);

-- Gaps, late fills and forks seen in producer chains.
CREATE TABLE ledger.producer_anomalies (
    id            bigserial PRIMARY KEY,
    producer_id   text NOT NULL,
    kind          text NOT NULL CHECK (kind IN ('gap', 'late', 'fork')),
    expected_seq  bigint,
    found_seq     bigint NOT NULL,
    event_id      uuid,
    log_seq       bigint,
    detail        text NOT NULL,
    detected_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX producer_anomalies_producer_idx ON ledger.producer_anomalies (producer_id, id);

-- Everything that failed verification: never in the log, never dropped.
-- For NATS deliveries the stream sequence makes a redelivery idempotent.
CREATE TABLE ledger.rejections (
    id            bigserial PRIMARY KEY,
    received_at   timestamptz NOT NULL DEFAULT now(),
    source        text NOT NULL CHECK (source IN ('nats', 'grpc')),
    stream_seq    bigint,
    event_id      text,
    keyid         text,
    producer_id   text,
    reason        text NOT NULL,
    message       text NOT NULL,
    raw_size      integer NOT NULL,
    raw_sha256    bytea NOT NULL,
    raw           bytea NOT NULL
);
CREATE UNIQUE INDEX rejections_stream_seq_idx ON ledger.rejections (stream_seq) WHERE source = 'nats';
CREATE INDEX rejections_reason_idx ON ledger.rejections (reason, id);

-- Append-only enforcement.
CREATE FUNCTION ledger.refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'provault: % on %.% is refused: the ledger is append-only', TG_OP, TG_TABLE_SCHEMA, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

DO $$
DECLARE t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['entries', 'merkle_nodes', 'checkpoints', 'rejections', 'trust_root'] LOOP
        EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON ledger.%I FOR EACH ROW EXECUTE FUNCTION ledger.refuse_change()', t || '_no_change', t);
        EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON ledger.%I FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_change()', t || '_no_truncate', t);
    END LOOP;
END;
$$;

-- Roles.  The service SETs ROLE to provault_ledger after connecting; the
-- query service to provault_auditor.  Roles are cluster-wide, so create them
-- only when missing.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'provault_ledger') THEN
        CREATE ROLE provault_ledger NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'provault_auditor') THEN
        CREATE ROLE provault_auditor NOLOGIN;
    END IF;
END;
$$;

GRANT USAGE ON SCHEMA ledger TO provault_ledger, provault_auditor;
GRANT SELECT, INSERT ON ledger.entries, ledger.merkle_nodes, ledger.checkpoints, ledger.rejections,
    ledger.producer_anomalies TO provault_ledger;
GRANT SELECT ON ledger.trust_root TO provault_ledger;
GRANT SELECT, INSERT, UPDATE ON ledger.keys, ledger.producers TO provault_ledger;
GRANT SELECT, UPDATE ON ledger.log_state TO provault_ledger;
GRANT USAGE ON SEQUENCE ledger.rejections_id_seq, ledger.producer_anomalies_id_seq TO provault_ledger;
GRANT SELECT ON ALL TABLES IN SCHEMA ledger TO provault_auditor;
-- Services check that the schema is current before they start.
GRANT SELECT ON public.provault_migrations TO provault_ledger, provault_auditor;
