"""With `provault up` running, 10,000 signed events from 3 producers end up in a provable log.

Keys are registered with the real CLI; events go through JetStream; the answer
is checked against the database and with proofs served over gRPC, verified by
the pure core.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys

import grpc
import psycopg
import pytest

from ledger.cli import main
from ledger.config import NatsSettings
from ledger.core import merkle
from ledger.core.checkpoint import NoteVerifier, open_checkpoint
from ledger.core.keys import Ed25519Signer, Ed25519Verifier, save_private_key
from ledger.core.producing import ProducerChain
from provault.v1 import ledger_pb2, ledger_pb2_grpc
from tests.cli.test_up import _start_up, _stop
from tests.ledgerkit import dataset_prov
from tests.service.natskit import publish, wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

EVENTS = 10_000
PRODUCERS = 3


def test_ten_thousand_events_from_three_producers(tmp_path, capsys) -> None:
    data = tmp_path / "state"
    proc, info = _start_up(data, extra_env={"PROVAULT_GRPC_LEDGER_LISTEN": "127.0.0.1:0"})
    try:
        keys = [Ed25519Signer.generate() for _ in range(PRODUCERS)]
        for i, k in enumerate(keys):
            save_private_key(k, tmp_path / f"p{i}.key")
            assert (
                main(
                    [
                        "keys",
                        "register",
                        str(tmp_path / f"p{i}.key"),
                        "--identity",
                        f"service:trainer-{i}",
                        "--kinds",
                        "dataset.*",
                        "--producers",
                        f"trainer-{i}@*",
                        "--data-dir",
                        str(data),
                    ]
                )
                == 0
            )
        chains = [ProducerChain(f"trainer-{i}@host", k) for i, k in enumerate(keys)]
        events = [chains[i % PRODUCERS].emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(EVENTS)]
        publish(info["nats_url"], NatsSettings(), events)
        total = EVENTS + PRODUCERS + 2  # and `provault up`'s registrations of its OpenLineage and attestation keys

        def checkpointed() -> int:
            with psycopg.connect(info["postgres_dsn"]) as c:
                return c.execute("SELECT coalesce(max(tree_size), 0) FROM ledger.checkpoints").fetchone()[0]

        wait_for(lambda: checkpointed() >= total, timeout=240, what="all events committed and checkpointed")
        with psycopg.connect(info["postgres_dsn"]) as c:
            rows = c.execute("SELECT event_id::text, leaf_hash FROM ledger.entries ORDER BY seq").fetchall()
            assert c.execute("SELECT count(*) FROM ledger.rejections").fetchone()[0] == 0
        ids = [r[0] for r in rows]
        assert len(ids) == len(set(ids)) == total, "every event exactly once"
        assert {e.event_id for e in events} <= set(ids)
        leaves = [bytes(r[1]) for r in rows]
        _check_proofs(info["ledger_grpc"], leaves, data)
    finally:
        out = _stop(proc, signal.SIGINT)
    assert proc.returncode == 0, out


def _check_proofs(target: str, leaves: list[bytes], data) -> None:
    with grpc.insecure_channel(target) as channel:
        stub = ledger_pb2_grpc.LedgerServiceStub(channel)
        cp = stub.GetCheckpoint(ledger_pb2.GetCheckpointRequest()).checkpoint
        size = cp.tree_size
        assert size == len(leaves)
        checkpoint_key = (data / "keys" / "checkpoint.key.pub").read_bytes()
        from ledger.core.keys import parse_public_key  # noqa: PLC0415

        opened = open_checkpoint(
            cp.signed_note, [NoteVerifier(name=cp.origin, verifier=Ed25519Verifier(parse_public_key(checkpoint_key)))]
        )
        assert opened.root_hash == merkle.root_hash(leaves) == cp.root_hash, (
            "the signed root is the root of the stored leaves"
        )
        rng = random.Random(7)
        for seq in rng.sample(range(size), 25):
            res = stub.GetInclusionProof(ledger_pb2.GetInclusionProofRequest(seq=seq, tree_size=size))
            merkle.verify_inclusion(leaves[seq], res.proof.leaf_index, size, list(res.proof.hashes), opened.root_hash)
        for old in rng.sample(range(1, size), 10):
            res = stub.GetConsistencyProof(ledger_pb2.GetConsistencyProofRequest(old_size=old, new_size=size))
            merkle.verify_consistency(old, size, merkle.root_hash(leaves[:old]), opened.root_hash, list(res.hashes))


def test_cli_verify_passes_after_the_story_would_run(tmp_path) -> None:
    """`provault verify` against a stopped stack's database needs the stack: say so clearly."""
    res = subprocess.run(
        [sys.executable, "-m", "ledger.cli", "verify", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        timeout=60,
    )
    assert res.returncode == 1
    assert "no running `provault up` found" in res.stderr
