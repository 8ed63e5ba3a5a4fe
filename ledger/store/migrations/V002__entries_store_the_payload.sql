-- An entry keeps its payload bytes and its signatures, not the envelope
-- text: the envelope's base64 made the payload a third larger and left
-- PostgreSQL nothing to compress (bench.lineage s=1: 14.1 MB of envelopes
-- against 7.8 MB of payloads and signatures).  The ledger admits canonical
-- envelopes of one payload type, whose bytes are joined back exactly from the
-- two parts on read (ledger.core.envelope.join_stored).  An entry whose
-- envelope does not come back byte for byte from its parts (one admitted
-- before the ledger required the canonical form) keeps its envelope as it is.
ALTER TABLE ledger.entries ADD COLUMN payload bytea, ADD COLUMN signatures bytea;
ALTER TABLE ledger.entries ALTER COLUMN envelope DROP NOT NULL;

ALTER TABLE ledger.entries DISABLE TRIGGER entries_no_change;
WITH doc AS (
    SELECT seq, envelope, convert_from(envelope, 'UTF8')::json AS j FROM ledger.entries
), parts AS (
    SELECT seq, envelope,
           CASE WHEN j ->> 'payload' ~ '^[A-Za-z0-9+/]*={0,2}$' THEN decode(j ->> 'payload', 'base64') END AS payload,
           convert_to((j -> 'signatures')::text, 'UTF8') AS signatures
    FROM doc
)
UPDATE ledger.entries AS e SET payload = p.payload, signatures = p.signatures, envelope = NULL
FROM parts AS p
WHERE p.seq = e.seq
  AND '{"payload":"'::bytea || convert_to(translate(encode(p.payload, 'base64'), E'\n', ''), 'UTF8')
      || '","payloadType":"application/vnd.provault.event+json;version=1","signatures":'::bytea
      || p.signatures || '}'::bytea = p.envelope;
ALTER TABLE ledger.entries ENABLE TRIGGER entries_no_change;

ALTER TABLE ledger.entries ADD CONSTRAINT entries_stored_form CHECK (
    (envelope IS NULL AND payload IS NOT NULL AND signatures IS NOT NULL)
    OR (envelope IS NOT NULL AND payload IS NULL AND signatures IS NULL));
