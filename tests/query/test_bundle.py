"""Audit bundles: built from a real ledger, verified offline, and no changed byte goes unnoticed."""

from __future__ import annotations

import argparse
import ast
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ledger.cli import main
from ledger.core import merkle
from ledger.core.checkpoint import format_vkey
from ledger.core.errors import ProvaultError, UnknownKey
from ledger.core.keys import Ed25519Signer, save_public_key
from provault.v1 import query_pb2
from query import projector
from query.bundle import build_bundle, bundle_trace, proofs_for
from query.bundle_verify import BundleReport, decode_bundle, encode_bundle, printable, verify_bundle
from query.cli.bundle import _json, _summary
from query.traverse import trace
from query.wire import RELATION_NAMES
from tests.ledgerkit import ORIGIN, Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Ids, Story, dataset_registered, predictions_logged

ROOT = Path(__file__).resolve().parents[2]


# --- fixtures ------------------------------------------------------------------------


@pytest.fixture
def story(ledger: Ledger, logged_story: Story) -> Story:
    """Keys registered (seqs 0-2), the six story events (seqs 3-8), a checkpoint at size 9, projected."""
    sign_and_project(ledger)
    return logged_story


def vkey_file(tmp_path: Path, ledger: Ledger, signer: Ed25519Signer | None = None) -> Path:
    path = tmp_path / "log.vkey"
    path.write_text(format_vkey(ORIGIN, (signer or ledger.checkpoint_key).public_key) + "\n")
    return path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


# --- a story bundle verifies offline ----------------------------------------------------------


@pytest.mark.postgres
def test_a_bundle_for_the_story_verifies_offline(story: Story, ledger: Ledger, aconn, tmp_path: Path, capsys) -> None:
    i = story.ids
    bundle = build_bundle(aconn, [5, 6], subject=i.model, direction="upstream")
    assert bundle.as_of_seq == 8 and bundle.checkpoint.tree_size == 9
    seqs = [pe.entry.seq for pe in bundle.entries]
    assert {5, 6} <= set(seqs) and 3 in seqs  # the dataset's registration gives its attributes
    assert [pe.entry.seq for pe in bundle.key_entries] == [0]  # the trainer's key
    assert bundle.root_keyids == [ledger.admin.keyid]
    assert bundle.nodes[0].id == i.model and bundle.nodes[0].kind == "provault:Model"

    report = verify_bundle(bundle)
    assert report.key_source == "bundle" and not report.admin_keys_pinned and report.unchecked_seqs == (0,)
    pinned = verify_bundle(
        bundle, vkey=format_vkey(ORIGIN, ledger.checkpoint_key.public_key), admin_keys=[ledger.admin.public_key]
    )
    assert pinned.fully_pinned and pinned.unchecked_seqs == ()

    path = tmp_path / "model.bundle.json"
    path.write_bytes(encode_bundle(bundle))
    code, out = run_cli(capsys, "verify-bundle", str(path))
    assert code == 0 and "OK" in out and "NOT pinned" in out
    admin_pub = save_public_key(ledger.admin.public_key, tmp_path / "admin.pub")
    code, out = run_cli(
        capsys,
        "verify-bundle",
        str(path),
        "--key",
        str(vkey_file(tmp_path, ledger)),
        "--admin-key",
        str(admin_pub),
        "--json",
    )
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["key_source"] == "given" and doc["admin_keys_pinned"]
    assert decode_bundle(encode_bundle(bundle, binary=True)) == bundle


@pytest.mark.postgres
def test_a_wrong_pinned_key_fails_step_1_and_a_wrong_admin_key_step_3(
    story: Story, ledger: Ledger, aconn, tmp_path: Path, capsys
) -> None:
    bundle = build_bundle(aconn, [8], subject=story.ids.batch, direction="upstream")
    path = tmp_path / "b.json"
    path.write_bytes(encode_bundle(bundle))
    code, out = run_cli(
        capsys, "verify-bundle", str(path), "--key", str(vkey_file(tmp_path, ledger, Ed25519Signer.generate()))
    )
    assert code == 1
    assert "FAILED at step 1 (checkpoint), checkpoint_verifier_key" in out and "the key you pinned" in out
    other = save_public_key(Ed25519Signer.generate().public_key, tmp_path / "other.pub")
    code, out = run_cli(capsys, "verify-bundle", str(path), "--admin-key", str(other))
    assert code == 1 and "step 3 (signatures and keys)" in out and "not among the admin keys you pinned" in out


@pytest.mark.postgres
def test_without_the_key_registration_step_3_fails(story: Story, aconn) -> None:
    bundle = build_bundle(aconn, [7], subject=story.ids.deployment, direction="upstream")
    assert [pe.entry.seq for pe in bundle.key_entries] == [0, 1]  # the model's versions bring the trainer's key
    del bundle.key_entries[1]  # the deployer's registration
    with pytest.raises(ProvaultError) as e:
        verify_bundle(bundle)
    assert e.value.step == 3 and e.value.reason == "unknown_key"
    assert "(seq 7)" in e.value.place and "neither a root key" in str(e.value)


@pytest.mark.postgres
def test_an_entry_newer_than_the_checkpoint_is_not_provable(story: Story, ledger: Ledger, aconn) -> None:
    late = ledger.append(
        predictions_logged(story.server, story.ids, [["req-9", "2025-03-02T11:00:00Z", "sha256:" + "09" * 32, 1]])
    )
    assert [a.seq for a in late.accepted] == [9]
    proofs = proofs_for(aconn, [3, 9, 8])
    assert proofs.checkpoint.tree_size == 9 and proofs.unproven_seqs == (9,)
    assert [p.seq for p in proofs.proofs] == [3, 8]
    for p in proofs.proofs:
        merkle.verify_inclusion(p.leaf_hash, p.seq, 9, list(p.hashes), proofs.checkpoint.root_hash)
    assert proofs.to_pb().unproven_seqs == [9]
    with pytest.raises(ProvaultError) as e:
        build_bundle(aconn, [9], subject=story.ids.batch, direction="upstream")
    assert e.value.reason == "not_covered" and "[9]" in str(e.value)


@pytest.mark.postgres
def test_the_rpc_traces_then_bundles_and_the_cli_writes_what_verifies(
    story: Story, ledger: Ledger, aconn, tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    i = story.ids
    up = bundle_trace(aconn, "req-2", direction="upstream")
    assert up.node_id == "provault:prediction/req-2" and up.nodes[0].kind == "provault:Prediction"
    assert {i.dataset, i.model, i.run, i.batch, i.deployment} <= {n.id for n in up.nodes}
    assert verify_bundle(up).nodes == len(up.nodes)
    traced = trace(aconn, "req-2", direction="upstream", as_of_seq=8)
    assert [n.id for n in up.nodes] == [n.id for n in traced.nodes]  # the same nodes, as the trace states them
    for mine, theirs in zip(up.nodes, traced.nodes, strict=True):
        assert (json.loads(mine.attributes_json), mine.introduced_seq, mine.kind) == (
            dict(theirs.attributes),
            theirs.first_seq,
            theirs.kind or "",
        )
    stated = {(RELATION_NAMES[e.relation], e.from_id, e.to_id, e.seq) for e in up.edges}
    assert {(e.relation, e.src, e.dst, e.seq) for e in traced.edges} <= stated
    down = bundle_trace(aconn, i.dataset, direction="downstream", as_of_seq=5)
    assert down.as_of_seq == 5 and max(pe.entry.seq for pe in down.entries) == 5
    assert i.model in {n.id for n in down.nodes} and i.deployment not in {n.id for n in down.nodes}
    verify_bundle(down)

    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", ledger.dsn)
    path = tmp_path / "impact.json"
    code, out = run_cli(capsys, "bundle", i.model, "--down", "-o", str(path), "--data-dir", str(tmp_path / "state"))
    assert code == 0 and f"about {i.model}" in out
    code, out = run_cli(capsys, "verify-bundle", str(path), "--key", str(vkey_file(tmp_path, ledger)))
    assert code == 0 and "provault:prediction/req-3" in decode_bundle(path.read_bytes()).nodes[-1].id


@pytest.mark.postgres
def test_a_later_revocation_travels_with_the_bundle_and_is_reported(ledger: Ledger, aconn) -> None:
    projector.migrate_prov(ledger.dsn)
    chain, reg = ledger.producer_with_key("trainer@gpu-07")
    ids = Ids()
    ledger.append(reg, dataset_registered(chain, ids))
    ledger.append(ledger.revocation(chain.signer, effective_from=datetime(2025, 3, 1, tzinfo=UTC)))
    sign_and_project(ledger)
    bundle = build_bundle(aconn, [1], subject=ids.dataset, direction="upstream")
    assert [pe.entry.seq for pe in bundle.key_entries] == [0, 2]
    (note,) = verify_bundle(bundle).notes
    assert "revoked later (seq 2" in note and "AFTER that: treat it as suspect" in note
    del bundle.key_entries[0]  # a revocation without its registration proves nothing
    # replayed in seq order, the first entry signed by the key no longer in the bundle is named
    with pytest.raises(UnknownKey, match=r"step 3 \(signatures and keys\), entries\[0\] \(seq 1\).*neither a root key"):
        verify_bundle(bundle)


# --- every byte counts --------------------------------------------------------------------------


@pytest.fixture
def small_bundle(ledger: Ledger, aconn) -> bytes:
    """One key registration (seq 0) and one dataset event (seq 1), checkpointed: a bundle of a few KB."""
    projector.migrate_prov(ledger.dsn)
    chain, reg = ledger.producer_with_key("trainer@gpu-07")
    ledger.append(reg, dataset_registered(chain, Ids()))
    sign_and_project(ledger)
    return encode_bundle(build_bundle(aconn, [1], subject=Ids().dataset, direction="upstream"))


def flipped_failures(data: bytes, mask: int) -> list[str]:
    failures = []
    for i in range(len(data)):
        changed = bytearray(data)
        changed[i] ^= mask
        try:
            verify_bundle(decode_bundle(bytes(changed)))
        except ProvaultError as e:
            assert getattr(e, "step", None) is not None and e.place, f"byte {i}: unlocated error {e!r}"
            failures.append(f"{e.step}:{e.place}")
            continue
        pytest.fail(
            f"flipping byte {i} (0x{data[i]:02x} ^ 0x{mask:02x}) still verifies: {data[max(i - 80, 0) : i + 20]!r}"
        )
    return failures


@pytest.mark.postgres
def test_flipping_any_byte_of_a_bundle_file_fails_with_a_located_error(
    small_bundle: bytes, tmp_path: Path, capsys
) -> None:
    assert verify_bundle(decode_bundle(small_bundle))
    failures = flipped_failures(small_bundle, 0x01)
    assert len(failures) == len(small_bundle)
    steps = {f.split(":")[0] for f in failures}
    assert steps == {"0", "1", "2", "3", "4"}, steps
    binary = encode_bundle(decode_bundle(small_bundle), binary=True)
    assert len(flipped_failures(binary, 0x01)) == len(binary)

    text = small_bundle.decode()
    at = text.index('"envelopeJson":"') + 40  # inside the first envelope's base64
    path = tmp_path / "flipped.json"
    path.write_bytes(small_bundle[:at] + bytes([small_bundle[at] ^ 0x01]) + small_bundle[at + 1 :])
    code, out = run_cli(capsys, "verify-bundle", str(path))
    assert code == 1 and "FAILED at step 2 (inclusion proofs), entries[0] (seq 1)" in out, out
    assert "expected SHA-256(0x00 || envelope_json)" in out


# --- purity -----------------------------------------------------------------------------------


ALLOWED_PREFIXES = ("ledger.core", "provault.v1", "query._mapping", "query.wire", "google.protobuf", "__future__")


def test_bundle_verify_imports_only_the_pure_core() -> None:
    imported: set[str] = set()
    for path in [*sorted((ROOT / "query" / "bundle_verify").glob("*.py")), ROOT / "query" / "wire.py"]:
        tree = ast.parse(path.read_text())
        imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    outside = {
        m for m in imported if m.split(".")[0] not in sys.stdlib_module_names and not m.startswith(ALLOWED_PREFIXES)
    }
    assert outside == set()
    probe = (
        "import sys, query.bundle_verify; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'psycopg', 'nats', 'grpc', 'psycopg_pool'} "
        "or m.startswith(('ledger.store', 'ledger.service', 'query.projector', 'query.bundle.'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"


def test_a_non_bundle_file_is_refused_as_step_0(tmp_path: Path, capsys) -> None:
    path = tmp_path / "junk.json"
    path.write_text('{"format": "something else"}\n')
    code, out = run_cli(capsys, "verify-bundle", str(path), "--json")
    doc = json.loads(out)
    assert code == 1 and doc["step"] == 0 and doc["reason"] == "malformed_bundle"
    empty = query_pb2.AuditBundle(format="provault.audit-bundle.v1")
    with pytest.raises(ProvaultError, match="direction"):
        verify_bundle(empty)


# --- text from a bundle on a terminal (docs/security.md D7) -------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain, tab-free text: sha256:ab…, é, 日本", "plain, tab-free text: sha256:ab…, é, 日本"),
        ("\x1b[2K\rOK\n\t\x00", "\\x1b[2K\\x0dOK\\x0a\\x09\\x00"),
        ("del\x7f c1\x85\x9b\x9f", "del\\x7f c1\\x85\\x9b\\x9f"),
        (
            "\u202a\u202b\u202c\u202d\u202e \u2066\u2067\u2068\u2069",
            "\\u202a\\u202b\\u202c\\u202d\\u202e \\u2066\\u2067\\u2068\\u2069",
        ),
        ("marks \u200e\u200f\u061c, a lone \ud800", "marks \\u200e\\u200f\\u061c, a lone \\ud800"),
    ],
    ids=["kept", "c0", "del-and-c1", "bidi-overrides-and-isolates", "bidi-marks-and-surrogates"],
)
def test_printable_escapes_what_could_drive_a_terminal(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(shown) == shown  # idempotent: safe to apply at the source and again when printing


def test_a_verified_bundles_summary_and_json_carry_no_control_characters() -> None:
    evil = "sha256:ab\x1b[2J\u202eevil\x7f"
    report = BundleReport(
        node_id=evil,
        direction="upstream",
        as_of_seq=3,
        origin="o",
        tree_size=4,
        root_hash=b"\x00" * 32,
        checkpoint_key="o+abcd+key",
        key_source="given",
        admin_keys_pinned=True,
        root_keyids=("ab" * 32,),
        unchecked_seqs=(),
        entries=1,
        key_entries=1,
        nodes=1,
        edges=0,
        steps=(f"4 graph: subject {evil}",),
        notes=(f"note about {evil}",),
    )
    text = _summary(report, argparse.Namespace(file="bundle\x1b.json"))
    assert not any(c in text for c in "\x1b\x7f\u202e") and "sha256:ab\\x1b[2J\\u202eevil\\x7f" in text
    assert "bundle\\x1b.json" in text
    out = _json(report.to_json())
    assert out.isascii() and "\x7f" not in out and "\x1b" not in out
    assert json.loads(out)["node_id"] == evil  # the data itself is exact
