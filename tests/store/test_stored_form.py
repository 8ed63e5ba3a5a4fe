"""Entries store their payload and signatures; the exact envelope comes back on read, and older logs convert."""

from __future__ import annotations

import shutil
from pathlib import Path

import psycopg
import pytest

from ledger.core import merkle
from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, join_stored, sign_envelope, split_stored
from ledger.core.errors import MalformedEnvelope
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.db import connect
from ledger.store import migrate as mig
from ledger.store.entries import read_entries
from tests.ledgerkit import Ledger, dataset_prov


def sealed_envelopes(n: int) -> list[bytes]:
    chain = ProducerChain("trainer@test", Ed25519Signer.generate())
    return [chain.emit("dataset.registered", dataset_prov()).envelope for _ in range(n)]


def test_a_canonical_envelope_comes_back_byte_for_byte() -> None:
    for raw in sealed_envelopes(3):
        payload, signatures = split_stored(raw)
        assert join_stored(payload, signatures) == raw
        assert payload.startswith(b'{"id":"') and signatures.startswith(b'[{"keyid":"')
    two = encode_envelope(sign_envelope(PAYLOAD_TYPE, b'{"x":1}', [Ed25519Signer.generate(), Ed25519Signer.generate()]))
    assert join_stored(*split_stored(two)) == two


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{}",
        b'{"payload":"e30=", "payloadType":"x","signatures":[]}',  # not compact
        b'{"payload":"e30","payloadType":"application/vnd.provault.event+json;version=1","signatures":[]}',  # unpadded
        b'{"payload":"e30=","payloadType":"text/plain","signatures":[]}',  # another payload type
        b'{"payload":"!!!!","payloadType":"application/vnd.provault.event+json;version=1","signatures":[]}',
        b'{"payload":"e30=","payloadType":"application/vnd.provault.event+json;version=1","signatures":[]',
    ],
    ids=["empty", "no-members", "spaces", "unpadded", "payload-type", "not-base64", "unterminated"],
)
def test_anything_but_a_canonical_envelope_is_not_stored(raw: bytes) -> None:
    with pytest.raises(MalformedEnvelope, match="not the canonical form"):
        split_stored(raw)


def _v001_only(tmp_path: Path) -> Path:
    folder = tmp_path / "v001"
    folder.mkdir()
    shutil.copy(mig.LEDGER_MIGRATIONS / "V001__ledger.sql", folder)
    return folder


def _insert_v001(conn: psycopg.Connection, raws: list[bytes]) -> None:
    for seq, raw in enumerate(raws):
        conn.execute(
            "INSERT INTO ledger.entries (seq, event_id, keyid, producer_id, producer_seq, kind, event_time,"
            " envelope, leaf_hash, payload_hash, source)"
            " VALUES (%s, gen_random_uuid(), %s, 'p@test', %s, 'dataset.registered', now(), %s, %s, 'x', 'grpc')",
            (seq, "ab" * 32, seq, raw, merkle.leaf_hash(raw)),
        )


@pytest.mark.postgres
def test_a_log_of_envelopes_converts_and_reads_back_the_same_bytes(pg_dsn: str, tmp_path: Path) -> None:
    raws = sealed_envelopes(5)
    raws[3] = raws[3].replace(b'","payloadType"', b'", "payloadType"')  # not canonical: logged before D5
    assert mig.migrate(pg_dsn, "ledger", _v001_only(tmp_path)) == ["ledger V001 ledger"]
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        _insert_v001(c, raws)
    assert mig.migrate(pg_dsn) == ["ledger V002 entries_store_the_payload"]
    with connect(pg_dsn, autocommit=True) as c:
        entries = read_entries(c, after=-1, limit=10)
        assert [e.envelope for e in entries] == raws
        assert all(e.leaf_hash == merkle.leaf_hash(e.envelope) for e in entries)
        kept = c.execute("SELECT seq FROM ledger.entries WHERE envelope IS NOT NULL").fetchall()
        assert kept == [(3,)]  # only the entry whose parts would not give its bytes back keeps them whole
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"):
            c.execute("UPDATE ledger.entries SET payload = payload")  # the triggers are back


@pytest.mark.postgres
def test_an_entry_is_stored_as_its_parts_or_whole_never_both(ledger: Ledger) -> None:
    chain, reg = ledger.producer_with_key()
    ledger.append(reg, chain.emit("dataset.registered", dataset_prov()))
    with psycopg.connect(ledger.dsn, autocommit=True) as c:
        c.execute("SET session_replication_role = replica")  # past the append-only triggers, as an attacker
        for change in ("envelope = 'x'::bytea", "payload = NULL", "signatures = NULL, payload = NULL"):
            with pytest.raises(psycopg.errors.CheckViolation, match="entries_stored_form"):
                c.execute(f"UPDATE ledger.entries SET {change} WHERE seq = 1")
