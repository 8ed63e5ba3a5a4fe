"""`provault verify`: the independent audit finds each kind of tampering with the log and names where.

Pinned admin keys: ``test_verify_admin_keys.py``; a saved checkpoint against today's log:
``test_verify_saved_checkpoint.py``; the log they all tamper with: ``verifykit.py``.
"""

from __future__ import annotations

import io
import json

import pytest

from ledger.cli._verify import ProgressBar
from ledger.core import merkle
from ledger.core.checkpoint import (
    Note,
    NoteSignature,
    format_note,
    format_vkey,
    parse_note,
    parse_vkey,
)
from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, parse_envelope, sign_envelope
from ledger.core.keys import Ed25519Signer
from ledger.store import checkpoints
from tests.ledgerkit import ORIGIN, Ledger
from tests.store.verifykit import (
    build_log,
    note_at,
    put_envelope,
    put_payload,
    rebuild_tree,
    run_audit,
    stored_envelope,
    superuser,
    verify_cli,
)

pytestmark = pytest.mark.postgres


# --- a clean log ----------------------------------------------------------------------


def test_a_clean_log_verifies(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = run_audit(ledger)
    assert (
        empty.ok
        and (empty.entries_checked, empty.checkpoints_checked) == (0, 1)
        and empty.root_hash == merkle.EMPTY_ROOT
    )
    build_log(ledger)
    report = run_audit(ledger, chunk=4)  # several chunks, checkpoints inside and at their edges
    assert report.ok and report.problems == () and report.first_problem is None
    assert (report.entries_checked, report.log_size, report.checkpoints_checked) == (13, 13, 5)
    assert report.nodes_checked == 13 + 6 + 3 + 1  # every complete subtree of 13 leaves
    assert report.root_hash == checkpoints.latest(ledger.conn).root_hash
    code, out, err = verify_cli(monkeypatch, capsys, ledger)
    assert code == 0, out
    assert "provault verify: OK" in out and "13 re-verified" in out and "5 checked" in out
    assert "read from the database" in out and "100%" in err
    code, out, _ = verify_cli(monkeypatch, capsys, ledger, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True and doc["audit"]["problem_count"] == 0
    assert doc["audit"]["root_hash"] == report.root_hash.hex() and doc["audit"]["origin"] == ORIGIN


def test_progress_bar_draws_on_a_terminal_and_writes_tenths_otherwise() -> None:
    plain = io.StringIO()
    bar = ProgressBar(plain)
    for done in range(0, 101, 5):
        bar(done, 100)
    bar.finish()
    assert plain.getvalue().count("\n") == 11 and "verifying: 100% (100/100 entries)" in plain.getvalue()

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty = Tty()
    bar = ProgressBar(tty)
    bar(1, 4)
    bar(4, 4)
    bar.finish()
    assert tty.getvalue().count("\r") == 2 and tty.getvalue().endswith("100% 4/4\n")


# --- tampering with entries ---------------------------------------------------------


def edited(raw: bytes) -> bytes:
    """The payload of a stored envelope with one byte of its event id changed."""
    payload = bytearray(parse_envelope(raw).payload)
    at = payload.index(b'"id":"') + 8
    payload[at] = ord("b") if payload[at] != ord("b") else ord("c")
    return bytes(payload)


def test_one_edited_envelope_byte_is_named_by_seq(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_log(ledger)
    with superuser(ledger) as su:
        raw = put_payload(su, 4, edited(stored_envelope(su, 4)))
    report = run_audit(ledger)
    first = report.first_problem
    assert first is not None and (first.kind, first.seq) == ("leaf_hash", 4)
    assert first.expected == merkle.leaf_hash(bytes(raw)).hex()
    code, out, _ = verify_cli(monkeypatch, capsys, ledger)
    assert code == 1
    assert "first divergence: seq 4: leaf hash mismatch" in out


def test_an_edit_with_a_matching_leaf_hash_shows_in_the_tree_and_checkpoints(ledger: Ledger) -> None:
    build_log(ledger)
    with superuser(ledger) as su:
        raw = put_payload(su, 4, edited(stored_envelope(su, 4)), leaf_hash=True)
    report = run_audit(ledger)
    kinds = dict(report.problem_kinds)
    assert "leaf_hash" not in kinds
    assert (report.first_problem.kind, report.first_problem.seq) == ("signature", 4)
    assert "bad_signature" in report.first_problem.message
    node = next(p for p in report.problems if p.kind == "merkle_node")
    assert node.node == (0, 4) and node.expected == merkle.leaf_hash(bytes(raw)).hex()
    roots = [p.tree_size for p in report.problems if p.kind == "checkpoint_root"]
    assert roots == [7, 10, 13]
    assert "log_state_frontier" in kinds


def test_a_resigned_entry_is_a_key_problem_at_its_seq(ledger: Ledger) -> None:
    built = build_log(ledger)
    rogue = Ed25519Signer.generate()
    with superuser(ledger) as su:
        payload = parse_envelope(stored_envelope(su, 5)).payload
        put_envelope(su, 5, encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, [rogue])), keyid=rogue.keyid)
        # seq 11 (carol's) re-signed with bob's key, which was revoked at seq 7
        payload = parse_envelope(stored_envelope(su, 11)).payload
        put_envelope(
            su, 11, encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, [built.b.signer])), keyid=built.b.signer.keyid
        )
        rebuild_tree(su)
    report = run_audit(ledger)
    first = report.first_problem
    assert (first.kind, first.seq) == ("signature", 5)
    assert "unknown_key" in first.message and rogue.keyid in first.message
    revoked = next(p for p in report.problems if p.seq == 11)
    assert revoked.kind == "authorization" and "key_revoked" in revoked.message and "seq 7" in revoked.message
    kinds = dict(report.problem_kinds)
    assert not {"leaf_hash", "merkle_node", "merkle_node_missing", "log_state_frontier"} & set(kinds)
    assert kinds["checkpoint_root"] == 3  # sizes 7, 10 and 13 signed the original entries


def test_edited_missing_and_extra_merkle_nodes(ledger: Ledger) -> None:
    build_log(ledger)
    with superuser(ledger) as su:
        su.execute("UPDATE ledger.merkle_nodes SET hash = %s WHERE level = 1 AND idx = 2", (b"\x11" * 32,))
        su.execute("DELETE FROM ledger.merkle_nodes WHERE level = 0 AND idx = 9")
        su.execute(
            "INSERT INTO ledger.merkle_nodes (level, idx, hash) VALUES (0, 50, %s), (3, 1, %s)",
            (b"\x22" * 32, b"\x33" * 32),
        )
    report = run_audit(ledger)
    first = report.first_problem
    assert (first.kind, first.node, first.found) == ("merkle_node", (1, 2), "11" * 32)
    assert "merkle node (level 1, idx 2)" in first.describe()
    missing = next(p for p in report.problems if p.kind == "merkle_node_missing")
    assert missing.node == (0, 9)
    assert sorted(p.node for p in report.problems if p.kind == "merkle_node_extra") == [(0, 50), (3, 1)]
    assert "checkpoint_consistency" in dict(report.problem_kinds)  # the proof 2 -> 7 reads node (1, 2)
    assert "leaf_hash" not in dict(report.problem_kinds) and "checkpoint_root" not in dict(report.problem_kinds)


def test_a_deleted_entry_breaks_the_seq_order(ledger: Ledger) -> None:
    build_log(ledger)
    with superuser(ledger) as su:
        su.execute("DELETE FROM ledger.entries WHERE seq = 5")
    report = run_audit(ledger)
    first = report.first_problem
    assert (first.kind, first.seq, first.expected, first.found) == ("seq", 6, "seq 5", "seq 6")
    assert "seq 5 is missing" in first.message
    assert report.entries_checked == 12 and "log_state_size" in dict(report.problem_kinds)


def test_derived_state_must_match_the_replayed_log(ledger: Ledger) -> None:
    built = build_log(ledger)
    with superuser(ledger) as su:
        su.execute("UPDATE ledger.keys SET kinds = '{*}', revoked_seq = NULL WHERE keyid = %s", (built.b.signer.keyid,))
        su.execute("UPDATE ledger.log_state SET frontier[2] = %s", (b"\x44" * 32,))
    report = run_audit(ledger)
    assert report.problem_count == 3
    assert [(p.kind, p.message) for p in report.problems[1:]] == [
        ("key_table", "ledger.keys.kinds differs from the replayed log"),
        ("key_table", "ledger.keys.revoked_seq differs from the replayed log"),
    ]
    assert report.problems[0].kind == "log_state_frontier" and "44" * 32 in report.problems[0].found


# --- checkpoints ------------------------------------------------------------------------


def test_a_deleted_checkpoint_is_fine_a_forged_one_is_not(ledger: Ledger) -> None:
    build_log(ledger)
    with superuser(ledger) as su:
        su.execute("DELETE FROM ledger.checkpoints WHERE tree_size = 7")
    report = run_audit(ledger)
    assert report.ok and report.checkpoints_checked == 4
    note = parse_note(note_at(ledger, 10))
    sig = note.signatures[0]
    forged = NoteSignature(
        name=sig.name, key_hash=sig.key_hash, signature=bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
    )
    with superuser(ledger) as su:
        su.execute(
            "UPDATE ledger.checkpoints SET note = %s WHERE tree_size = 10",
            (format_note(Note(text=note.text, signatures=(forged,))),),
        )
    report = run_audit(ledger)
    assert report.problem_count == 1
    assert (report.first_problem.kind, report.first_problem.tree_size) == ("checkpoint_signature", 10)
    assert "bad_signature" in report.first_problem.message


def test_a_checkpoint_key_given_by_the_auditor_is_used_and_compared(ledger: Ledger) -> None:
    build_log(ledger)
    own = format_vkey(ORIGIN, ledger.checkpoint_key.public_key)
    report = run_audit(ledger, checkpoint_key=parse_vkey(own))
    assert report.ok and report.key_source == "given" and report.checkpoints_checked == 5
    other = parse_vkey(format_vkey(ORIGIN, Ed25519Signer.generate().public_key))
    report = run_audit(ledger, checkpoint_key=other)
    assert report.first_problem.kind == "trust_root" and report.first_problem.found == own
    assert dict(report.problem_kinds)["checkpoint_signature"] == 5
