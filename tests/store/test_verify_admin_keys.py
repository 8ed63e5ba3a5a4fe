"""`provault verify --admin-key`: pinned admin keys, against a trust root that matches them, was replaced, or
holds one too many or too few; bad key files refused before the audit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, parse_envelope, sign_envelope
from ledger.core.errors import KeyMaterialError
from ledger.core.keys import Ed25519Signer, keyid_of, save_public_key
from tests.ledgerkit import Ledger
from tests.store.verifykit import (
    build_log,
    put_envelope,
    rebuild_tree,
    resign_checkpoints,
    run_audit,
    stored_envelope,
    superuser,
    verify_cli,
)

pytestmark = pytest.mark.postgres


KEY_EVENT_SEQS = (0, 1, 7, 10)
"""The entries of build_log signed by the admin key: three registrations and one revocation."""


def _admin_files(tmp_path: Path, *keys: bytes) -> list[str]:
    """Each key written as ``ledger init --admin-key`` takes it: the first as PEM, the others raw."""
    return [str(save_public_key(pk, tmp_path / f"admin{i}.pub", raw=i > 0)) for i, pk in enumerate(keys)]


def _pin_args(files: list[str]) -> list[str]:
    return [arg for f in files for arg in ("--admin-key", f)]


def _replace_admin(lg: Ledger) -> Ed25519Signer:
    """A superuser who holds the checkpoint key swaps the trust root's admin key for their own, re-signs
    every key event with it, and rebuilds the tree and the checkpoints: a self-consistent database."""
    rogue = Ed25519Signer.generate()
    with superuser(lg) as su:
        su.execute(
            "UPDATE ledger.trust_root SET keyid = %s, public_key = %s WHERE purpose = 'admin'",
            (rogue.keyid, rogue.public_key),
        )
        for seq in KEY_EVENT_SEQS:
            payload = parse_envelope(stored_envelope(su, seq)).payload
            put_envelope(su, seq, encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, [rogue])), keyid=rogue.keyid)
        resign_checkpoints(su, lg, rebuild_tree(su), (0, 2, 7, 10, 13))
    return rogue


def test_pinned_admin_keys_that_match_the_trust_root_verify(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_log(ledger)
    admin = ledger.admin.public_key
    report = run_audit(ledger, admin_keys=[admin, admin])  # a key pinned twice is one key
    assert report.ok and report.admin_keys_pinned and report.admin_keyids == (keyid_of(admin),)
    assert report.entries_checked == 13
    pem, raw = _admin_files(tmp_path, admin, admin)
    for files in ([pem], [raw], [pem, raw]):
        code, out, _ = verify_cli(monkeypatch, capsys, ledger, *_pin_args(files))
        assert code == 0, out
        assert f"admin keys      pinned with --admin-key ({keyid_of(admin)[:16]}…)" in out
    code, out, _ = verify_cli(monkeypatch, capsys, ledger)
    assert code == 0 and "admin keys      NOT pinned: read from the database (ledger.trust_root)" in out
    assert "pin them with --admin-key" in out
    doc = json.loads(verify_cli(monkeypatch, capsys, ledger, "--json")[1])
    assert doc["audit"]["admin_keys_pinned"] is False and doc["audit"]["admin_keyids"] == [keyid_of(admin)]
    doc = json.loads(verify_cli(monkeypatch, capsys, ledger, "--json", "--admin-key", pem)[1])
    assert doc["ok"] is True and doc["audit"]["admin_keys_pinned"] is True


def test_a_replaced_admin_key_passes_unpinned_and_fails_pinned(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_log(ledger)
    rogue = _replace_admin(ledger)
    real = keyid_of(ledger.admin.public_key)
    unpinned = run_audit(ledger)
    assert unpinned.ok and unpinned.admin_keyids == (rogue.keyid,)  # self-consistent: only the pinned key can tell
    report = run_audit(ledger, admin_keys=[ledger.admin.public_key])
    first = report.first_problem
    assert (first.kind, first.where) == ("trust_root_mismatch", "ledger.trust_root")
    assert f"missing (pinned, not in the trust root): {real}" in first.message
    assert f"unexpected (in the trust root, not pinned): {rogue.keyid}" in first.message
    assert (first.expected, first.found) == (real, rogue.keyid)
    assert dict(report.problem_kinds)["trust_root_mismatch"] == 1
    # The registry is replayed from the pinned key, so the rogue key's signatures are unknown from seq 0 on.
    resigned = next(p for p in report.problems if p.seq == 0)
    assert resigned.kind == "signature" and "unknown_key" in resigned.message and rogue.keyid in resigned.message
    files = _admin_files(tmp_path, ledger.admin.public_key)
    assert verify_cli(monkeypatch, capsys, ledger)[0] == 0
    code, out, _ = verify_cli(monkeypatch, capsys, ledger, *_pin_args(files))
    assert code == 1
    assert (
        "first divergence: ledger.trust_root: the admin keys stored in the database are not the admin keys you pinned"
        in out
    )
    assert real in out and rogue.keyid in out
    code, out, _ = verify_cli(monkeypatch, capsys, ledger, "--json", *_pin_args(files))
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert doc["audit"]["first_problem"]["kind"] == "trust_root_mismatch"
    assert doc["audit"]["problem_kinds"]["trust_root_mismatch"] == 1 and doc["audit"]["admin_keyids"] == [real]


def test_a_pinned_admin_key_missing_from_the_trust_root_or_an_extra_one_in_it_fails(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    build_log(ledger)
    admin, other = ledger.admin.public_key, Ed25519Signer.generate()
    report = run_audit(ledger, admin_keys=[admin, other.public_key])
    assert report.problem_count == 1  # the extra pinned key signs nothing: the replay is the same
    first = report.first_problem
    assert first.kind == "trust_root_mismatch"
    assert (
        f"missing (pinned, not in the trust root): {other.keyid}" in first.message and "unexpected" not in first.message
    )
    code, out, _ = verify_cli(monkeypatch, capsys, ledger, *_pin_args(_admin_files(tmp_path, admin, other.public_key)))
    assert code == 1 and "FAILED: 1 problem" in out and other.keyid in out
    # A second admin key slipped into the trust root (no log entry records that) is unexpected.
    with superuser(ledger) as su:
        su.execute(
            "INSERT INTO ledger.trust_root (keyid, public_key, purpose, name) VALUES (%s, %s, 'admin', 'mallory')",
            (other.keyid, other.public_key),
        )
    assert run_audit(ledger).ok
    report = run_audit(ledger, admin_keys=[admin])
    assert report.problem_count == 1 and report.first_problem.kind == "trust_root_mismatch"
    assert f"unexpected (in the trust root, not pinned): {other.keyid}" in report.first_problem.message
    assert "missing" not in report.first_problem.message
    assert report.first_problem.found == ", ".join(sorted((keyid_of(admin), other.keyid)))
    assert run_audit(ledger, admin_keys=[other.public_key, admin]).ok


def test_bad_admin_key_files_are_refused_before_the_audit(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not a key\n", encoding="utf-8")
    private = tmp_path / "admin.key"
    private.write_bytes(b"-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n")
    cases = {
        "missing": (str(tmp_path / "nope.pub"), "does not exist"),
        "text": (str(text), "expected SubjectPublicKeyInfo PEM or raw 32 bytes, found 10 bytes of other data"),
        "private": (str(private), "not a readable PEM public key"),
        "directory": (str(tmp_path), "cannot read public key file"),
    }
    good = _admin_files(tmp_path, ledger.admin.public_key)[0]
    for name, (path, detail) in cases.items():
        code, out, err = verify_cli(monkeypatch, capsys, ledger, "--admin-key", good, "--admin-key", path)
        assert code == 1 and out == "", name
        assert err.startswith("provault: error [key_material]: ") and detail in err and path in err, (name, err)
        assert "verifying" not in err, name  # refused before the audit started
    with pytest.raises(KeyMaterialError, match="no admin keys were pinned"):
        run_audit(ledger, admin_keys=[])
    with pytest.raises(KeyMaterialError, match=r"pinned admin key \[0\]: expected a raw 32-byte Ed25519 public key"):
        run_audit(ledger, admin_keys=[b"short"])
