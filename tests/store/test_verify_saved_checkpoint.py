"""`provault verify --checkpoint`: a checkpoint the auditor saved earlier, against today's log: consistent with
the grown log, loud on a rewritten history, precise on bad notes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.audit import LogRewritten, verify_against_checkpoint
from ledger.core import merkle
from ledger.core.checkpoint import (
    Checkpoint,
    Note,
    NoteSignature,
    format_note,
    format_vkey,
    parse_note,
    sign_checkpoint,
)
from ledger.core.envelope import parse_envelope
from ledger.core.events import parse_event
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.db import connect
from tests.ledgerkit import ORIGIN, Ledger, dataset_prov
from tests.store.verifykit import (
    build_log,
    note_at,
    put_envelope,
    rebuild_tree,
    resign_checkpoints,
    run_audit,
    sign_latest,
    stored_envelope,
    superuser,
    verify_cli,
)

pytestmark = pytest.mark.postgres


def test_a_saved_checkpoint_verifies_against_the_grown_log(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_log(ledger)
    saved = tmp_path / "cp7.note"
    saved.write_text(note_at(ledger, 7), encoding="utf-8")
    ledger.append(built.a.emit("run.completed", dataset_prov("cd" * 32)))
    sign_latest(ledger)
    code, out, _ = verify_cli(monkeypatch, capsys, ledger, "--checkpoint", str(saved))
    assert code == 0, out
    assert "size 7" in out and "consistent with the ledger's latest checkpoint, size 14" in out
    assert "read from the database (ledger.trust_root)" in out
    vkey = tmp_path / "log.vkey"
    vkey.write_text(format_vkey(ORIGIN, ledger.checkpoint_key.public_key) + "\n", encoding="utf-8")
    code, out, _ = verify_cli(monkeypatch, capsys, ledger, "--checkpoint", str(saved), "--key", str(vkey), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True
    assert doc["checkpoint"]["key_source"] == "given" and doc["checkpoint"]["latest"]["size"] == 14
    assert doc["audit"]["checkpoint_key_source"] == "given"
    empty = tmp_path / "cp0.note"
    empty.write_text(note_at(ledger, 0), encoding="utf-8")
    assert verify_cli(monkeypatch, capsys, ledger, "--checkpoint", str(empty))[0] == 0


def test_a_rewritten_history_fails_the_saved_checkpoint_loudly(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = build_log(ledger)
    saved_note = note_at(ledger, 7)
    saved = tmp_path / "cp7.note"
    saved.write_text(saved_note, encoding="utf-8")
    with superuser(ledger) as su:
        # The attacker holds the producer's and the checkpoint key, rewrites seq 4 and rebuilds everything.
        original = parse_event(parse_envelope(stored_envelope(su, 4)).payload)
        chain = ProducerChain(original.producer.id, built.a.signer, position=original.producer)
        forged = chain.emit(original.kind, dataset_prov("66" * 32), event_id=original.id, time=original.time)
        put_envelope(su, 4, forged.envelope)
        resign_checkpoints(su, ledger, rebuild_tree(su), (0, 13))
    assert run_audit(ledger).ok  # self-consistent: only the auditor's saved checkpoint can tell
    with (
        connect(ledger.dsn, autocommit=True) as conn,
        pytest.raises(LogRewritten, match="NOT consistent with your saved checkpoint"),
    ):
        verify_against_checkpoint(conn, saved_note)
    code, out, _ = verify_cli(monkeypatch, capsys, ledger, "--checkpoint", str(saved))
    assert code == 1
    assert "REFUSED [log_rewritten]" in out and "THE LOG WAS REWRITTEN" in out
    assert "provault verify: OK" in out  # the audit itself passed; the exit code comes from the checkpoint


def test_bad_saved_checkpoints_are_refused_precisely(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_log(ledger)
    note = parse_note(note_at(ledger, 7))
    sig = note.signatures[0]
    bad_sig = format_note(
        Note(text=note.text, signatures=(NoteSignature(name=sig.name, key_hash=sig.key_hash, signature=b"\x00" * 64),))
    )
    other_key = Ed25519Signer.generate()
    root = merkle.root_hash([])
    other_origin = sign_checkpoint(
        Checkpoint(origin="other.example/log", size=0, root_hash=root), "other.example/log", other_key
    )
    too_big = sign_checkpoint(Checkpoint(origin=ORIGIN, size=1000, root_hash=root), ORIGIN, ledger.checkpoint_key)
    unknown = sign_checkpoint(Checkpoint(origin=ORIGIN, size=7, root_hash=root), ORIGIN, other_key)
    cases = {
        "bad_sig": (bad_sig, "REFUSED [bad_signature]", "does not verify"),
        "other_origin": (other_origin, "REFUSED [origin_mismatch]", "'other.example/log'"),
        "too_big": (too_big, "REFUSED [checkpoint_beyond_log]", "larger than the log, which holds 13"),
        "unknown": (
            unknown,
            "REFUSED [unknown_key]",
            "does not verify with the stored (ledger.trust_root) checkpoint key",
        ),
        "garbage": ("not a note\n", "REFUSED [malformed_checkpoint]", "not a signed checkpoint note"),
    }
    for name, (text, status, detail) in cases.items():
        path = tmp_path / f"{name}.note"
        path.write_text(text, encoding="utf-8")
        code, out, _ = verify_cli(monkeypatch, capsys, ledger, "--checkpoint", str(path))
        assert code == 1, name
        assert status in out and detail in out, (name, out)
