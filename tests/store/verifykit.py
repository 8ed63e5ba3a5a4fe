"""A log to tamper with for the ``provault verify`` tests: 13 entries built through the real ledger, and what an
attacker with superuser access (triggers off) or the keys does to it; the audit and the CLI as an auditor runs them."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psycopg
import pytest

from ledger.audit import audit
from ledger.cli import main
from ledger.core import merkle
from ledger.core.checkpoint import (
    Checkpoint,
    sign_checkpoint,
)
from ledger.core.envelope import join_stored, split_stored
from ledger.core.events import chain_hash
from ledger.core.frontier import append_leaves
from ledger.core.producing import ProducerChain
from ledger.db import connect
from ledger.store import checkpoints
from tests.ledgerkit import ORIGIN, Ledger, dataset_prov


@dataclass
class Built:
    a: ProducerChain
    b: ProducerChain
    c: ProducerChain


def sign_latest(lg: Ledger) -> None:
    assert checkpoints.sign_latest(lg.conn, lg.checkpoint_key, ORIGIN) is not None


def build_log(lg: Ledger) -> Built:
    """13 entries, three producers, one revocation; checkpoints at sizes 0, 2, 7, 10 and 13."""
    a, reg_a = lg.producer_with_key("trainer@host-1")
    b, reg_b = lg.producer_with_key("pipeline@host-2", kinds=("dataset.*",), producers=("pipeline@*",), name="bob")
    lg.append(reg_a, reg_b)  # seqs 0, 1
    sign_latest(lg)
    lg.append(
        *(a.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(3)),
        *(b.emit("dataset.registered", dataset_prov(f"{i + 10:064x}")) for i in range(2)),
    )  # 2..6; fmt: skip
    sign_latest(lg)
    plan = lg.append(
        lg.revocation(b.signer),
        *(a.emit("run.started", dataset_prov(f"{i + 20:064x}")) for i in range(2)),
        b.emit("dataset.registered", dataset_prov("ee" * 32)),
    )  # 7..9; b's last is refused; fmt: skip
    assert len(plan.accepted) == 3 and len(plan.refused) == 1
    sign_latest(lg)
    c, reg_c = lg.producer_with_key("server@host-3", name="carol")
    lg.append(reg_c, *(c.emit("predictions.logged", dataset_prov(f"{i + 30:064x}")) for i in range(2)))  # 10..12
    sign_latest(lg)
    return Built(a=a, b=b, c=c)


@contextmanager
def superuser(lg: Ledger) -> Iterator[psycopg.Connection]:
    """A superuser session with the append-only triggers off, as an attacker with DB access has."""
    with psycopg.connect(lg.dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def run_audit(lg: Ledger, **kw):
    with connect(lg.dsn, autocommit=True, role="provault_auditor") as conn:
        return audit(conn, **kw)


def stored_envelope(su: psycopg.Connection, seq: int) -> bytes:
    payload, signatures, envelope = su.execute(
        "SELECT payload, signatures, envelope FROM ledger.entries WHERE seq = %s", (seq,)
    ).fetchone()
    return bytes(envelope) if envelope is not None else join_stored(bytes(payload), bytes(signatures))


def put_envelope(
    su: psycopg.Connection, seq: int, raw: bytes, *, keyid: str | None = None, leaf_hash: bytes | None = None
) -> None:
    """Store ``raw`` (a canonical envelope) at ``seq``; with its own leaf hash unless ``leaf_hash`` is given."""
    payload, signatures = split_stored(raw)
    su.execute(
        "UPDATE ledger.entries SET payload = %s, signatures = %s, envelope = NULL, leaf_hash = %s, payload_hash = %s,"
        " keyid = coalesce(%s, keyid) WHERE seq = %s",
        (payload, signatures, leaf_hash or merkle.leaf_hash(raw), chain_hash(payload), keyid, seq),
    )


def put_payload(su: psycopg.Connection, seq: int, payload: bytes, *, leaf_hash: bool = False) -> bytes:
    """Overwrite the stored payload at ``seq`` (and, with ``leaf_hash``, the leaf hash to match); the new envelope."""
    signatures = bytes(su.execute("SELECT signatures FROM ledger.entries WHERE seq = %s", (seq,)).fetchone()[0])
    raw = join_stored(payload, signatures)
    su.execute("UPDATE ledger.entries SET payload = %s WHERE seq = %s", (payload, seq))
    if leaf_hash:
        su.execute("UPDATE ledger.entries SET leaf_hash = %s WHERE seq = %s", (merkle.leaf_hash(raw), seq))
    return raw


def rebuild_tree(su: psycopg.Connection) -> list[bytes]:
    """Recompute every Merkle node and the log state from the stored leaf hashes."""
    leaves = [bytes(h) for (h,) in su.execute("SELECT leaf_hash FROM ledger.entries ORDER BY seq")]
    frontier, nodes = append_leaves(0, [], leaves)
    su.execute("DELETE FROM ledger.merkle_nodes")
    with su.cursor().copy("COPY ledger.merkle_nodes (level, idx, hash) FROM STDIN") as cp:
        for n in nodes:
            cp.write_row((n.level, n.index, n.hash))
    su.execute("UPDATE ledger.log_state SET size = %s, frontier = %s", (len(leaves), frontier))
    return leaves


def resign_checkpoints(su: psycopg.Connection, lg: Ledger, leaves: list[bytes], sizes: tuple[int, ...]) -> None:
    """Replace every checkpoint with ones signed (with the real key) over the rebuilt tree."""
    su.execute("DELETE FROM ledger.checkpoints")
    for size in sizes:
        root = merkle.root_hash(leaves[:size])
        note = sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root_hash=root), ORIGIN, lg.checkpoint_key)
        su.execute(
            "INSERT INTO ledger.checkpoints (tree_size, root_hash, note) VALUES (%s, %s, %s)", (size, root, note)
        )


def note_at(lg: Ledger, size: int) -> str:
    cp = checkpoints.at_size(lg.conn, size)
    assert cp is not None
    return cp.note


def verify_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lg: Ledger, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", lg.dsn)
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err
