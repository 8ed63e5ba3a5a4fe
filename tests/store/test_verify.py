"""`provault verify`: the independent audit finds each kind of tampering and names where."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest

from ledger.audit import LogRewritten, audit, verify_against_checkpoint
from ledger.cli import main
from ledger.cli._verify import ProgressBar
from ledger.core import merkle
from ledger.core.checkpoint import (
    Checkpoint,
    Note,
    NoteSignature,
    format_note,
    format_vkey,
    parse_note,
    parse_vkey,
    sign_checkpoint,
)
from ledger.core.envelope import PAYLOAD_TYPE, encode_envelope, parse_envelope, sign_envelope
from ledger.core.events import chain_hash, parse_event
from ledger.core.frontier import append_leaves
from ledger.core.errors import KeyMaterialError
from ledger.core.keys import Ed25519Signer, keyid_of, save_public_key
from ledger.core.producing import ProducerChain
from ledger.store import checkpoints
from ledger.db import connect
from tests.ledgerkit import ORIGIN, Ledger, dataset_prov

pytestmark = pytest.mark.postgres


@dataclass
class Built:
    a: ProducerChain
    b: ProducerChain
    c: ProducerChain


def _sign(lg: Ledger) -> None:
    assert checkpoints.sign_latest(lg.conn, lg.checkpoint_key, ORIGIN) is not None


def _build(lg: Ledger) -> Built:
    """13 entries, three producers, one revocation; checkpoints at sizes 0, 2, 7, 10 and 13."""
    a, reg_a = lg.producer_with_key("trainer@host-1")
    b, reg_b = lg.producer_with_key("pipeline@host-2", kinds=("dataset.*",), producers=("pipeline@*",), name="bob")
    lg.append(reg_a, reg_b)  # seqs 0, 1
    _sign(lg)
    lg.append(*(a.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(3)),
              *(b.emit("dataset.registered", dataset_prov(f"{i + 10:064x}")) for i in range(2)))  # 2..6; fmt: skip
    _sign(lg)
    plan = lg.append(lg.revocation(b.signer), *(a.emit("run.started", dataset_prov(f"{i + 20:064x}")) for i in range(2)),
                     b.emit("dataset.registered", dataset_prov("ee" * 32)))  # 7..9; b's last is refused; fmt: skip
    assert len(plan.accepted) == 3 and len(plan.refused) == 1
    _sign(lg)
    c, reg_c = lg.producer_with_key("server@host-3", name="carol")
    lg.append(reg_c, *(c.emit("predictions.logged", dataset_prov(f"{i + 30:064x}")) for i in range(2)))  # 10..12
    _sign(lg)
    return Built(a=a, b=b, c=c)


@contextmanager
def _superuser(lg: Ledger) -> Iterator[psycopg.Connection]:
    """A superuser session with the append-only triggers off, as an attacker with DB access has."""
    with psycopg.connect(lg.dsn, autocommit=True) as conn:
        conn.execute("SET session_replication_role = replica")
        yield conn


def _audit(lg: Ledger, **kw):
    with connect(lg.dsn, autocommit=True, role="provault_auditor") as conn:
        return audit(conn, **kw)


def _envelope(su: psycopg.Connection, seq: int) -> bytes:
    return bytes(su.execute("SELECT envelope FROM ledger.entries WHERE seq = %s", (seq,)).fetchone()[0])


def _put_envelope(su: psycopg.Connection, seq: int, raw: bytes, *, keyid: str | None = None) -> None:
    payload = parse_envelope(raw).payload
    su.execute(
        "UPDATE ledger.entries SET envelope = %s, leaf_hash = %s, payload_hash = %s, keyid = coalesce(%s, keyid) WHERE seq = %s",
        (raw, merkle.leaf_hash(raw), chain_hash(payload), keyid, seq),
    )


def _rebuild_tree(su: psycopg.Connection) -> list[bytes]:
    """Recompute every Merkle node and the log state from the stored leaf hashes."""
    leaves = [bytes(h) for (h,) in su.execute("SELECT leaf_hash FROM ledger.entries ORDER BY seq")]
    frontier, nodes = append_leaves(0, [], leaves)
    su.execute("DELETE FROM ledger.merkle_nodes")
    with su.cursor().copy("COPY ledger.merkle_nodes (level, idx, hash) FROM STDIN") as cp:
        for n in nodes:
            cp.write_row((n.level, n.index, n.hash))
    su.execute("UPDATE ledger.log_state SET size = %s, frontier = %s", (len(leaves), frontier))
    return leaves


def _resign(su: psycopg.Connection, lg: Ledger, leaves: list[bytes], sizes: tuple[int, ...]) -> None:
    """Replace every checkpoint with ones signed (with the real key) over the rebuilt tree."""
    su.execute("DELETE FROM ledger.checkpoints")
    for size in sizes:
        root = merkle.root_hash(leaves[:size])
        note = sign_checkpoint(Checkpoint(origin=ORIGIN, size=size, root_hash=root), ORIGIN, lg.checkpoint_key)
        su.execute("INSERT INTO ledger.checkpoints (tree_size, root_hash, note) VALUES (%s, %s, %s)", (size, root, note))


def _note(lg: Ledger, size: int) -> str:
    cp = checkpoints.at_size(lg.conn, size)
    assert cp is not None
    return cp.note


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], lg: Ledger, *args: str) -> tuple[int, str, str]:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", lg.dsn)
    code = main(["verify", *args])
    out, err = capsys.readouterr()
    return code, out, err


# --- a clean log ----------------------------------------------------------------------


def test_a_clean_log_verifies(ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    empty = _audit(ledger)
    assert empty.ok and (empty.entries_checked, empty.checkpoints_checked) == (0, 1) and empty.root_hash == merkle.EMPTY_ROOT
    _build(ledger)
    report = _audit(ledger, chunk=4)  # several chunks, checkpoints inside and at their edges
    assert report.ok and report.problems == () and report.first_problem is None
    assert (report.entries_checked, report.log_size, report.checkpoints_checked) == (13, 13, 5)
    assert report.nodes_checked == 13 + 6 + 3 + 1  # every complete subtree of 13 leaves
    assert report.root_hash == checkpoints.latest(ledger.conn).root_hash
    code, out, err = _cli(monkeypatch, capsys, ledger)
    assert code == 0, out
    assert "provault verify: OK" in out and "13 re-verified" in out and "5 checked" in out
    assert "read from the database" in out and "100%" in err
    code, out, _ = _cli(monkeypatch, capsys, ledger, "--json")
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


def test_one_edited_envelope_byte_is_named_by_seq(ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    _build(ledger)
    with _superuser(ledger) as su:
        raw = bytearray(_envelope(su, 4))
        at = raw.index(b'"payload":"') + 20
        raw[at] = ord("B") if raw[at] != ord("B") else ord("C")
        su.execute("UPDATE ledger.entries SET envelope = %s WHERE seq = 4", (bytes(raw),))
    report = _audit(ledger)
    first = report.first_problem
    assert first is not None and (first.kind, first.seq) == ("leaf_hash", 4)
    assert first.expected == merkle.leaf_hash(bytes(raw)).hex()
    code, out, _ = _cli(monkeypatch, capsys, ledger)
    assert code == 1
    assert "first divergence: seq 4: leaf hash mismatch" in out


def test_an_edit_with_a_matching_leaf_hash_shows_in_the_tree_and_checkpoints(ledger: Ledger) -> None:
    _build(ledger)
    with _superuser(ledger) as su:
        raw = bytearray(_envelope(su, 4))
        at = raw.index(b'"payload":"') + 20
        raw[at] = ord("B") if raw[at] != ord("B") else ord("C")
        su.execute("UPDATE ledger.entries SET envelope = %s, leaf_hash = %s WHERE seq = 4", (bytes(raw), merkle.leaf_hash(bytes(raw))))
    report = _audit(ledger)
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
    built = _build(ledger)
    rogue = Ed25519Signer.generate()
    with _superuser(ledger) as su:
        payload = parse_envelope(_envelope(su, 5)).payload
        _put_envelope(su, 5, encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, [rogue])), keyid=rogue.keyid)
        # seq 11 (carol's) re-signed with bob's key, which was revoked at seq 7
        payload = parse_envelope(_envelope(su, 11)).payload
        _put_envelope(su, 11, encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, [built.b.signer])), keyid=built.b.signer.keyid)
        _rebuild_tree(su)
    report = _audit(ledger)
    first = report.first_problem
    assert (first.kind, first.seq) == ("signature", 5)
    assert "unknown_key" in first.message and rogue.keyid in first.message
    revoked = next(p for p in report.problems if p.seq == 11)
    assert revoked.kind == "authorization" and "key_revoked" in revoked.message and "seq 7" in revoked.message
    kinds = dict(report.problem_kinds)
    assert not {"leaf_hash", "merkle_node", "merkle_node_missing", "log_state_frontier"} & set(kinds)
    assert kinds["checkpoint_root"] == 3  # sizes 7, 10 and 13 signed the original entries


def test_edited_missing_and_extra_merkle_nodes(ledger: Ledger) -> None:
    _build(ledger)
    with _superuser(ledger) as su:
        su.execute("UPDATE ledger.merkle_nodes SET hash = %s WHERE level = 1 AND idx = 2", (b"\x11" * 32,))
        su.execute("DELETE FROM ledger.merkle_nodes WHERE level = 0 AND idx = 9")
        su.execute("INSERT INTO ledger.merkle_nodes (level, idx, hash) VALUES (0, 50, %s), (3, 1, %s)", (b"\x22" * 32, b"\x33" * 32))
    report = _audit(ledger)
    first = report.first_problem
    assert (first.kind, first.node, first.found) == ("merkle_node", (1, 2), "11" * 32)
    assert "merkle node (level 1, idx 2)" in first.describe()
    missing = next(p for p in report.problems if p.kind == "merkle_node_missing")
    assert missing.node == (0, 9)
    assert sorted(p.node for p in report.problems if p.kind == "merkle_node_extra") == [(0, 50), (3, 1)]
    assert "checkpoint_consistency" in dict(report.problem_kinds)  # the proof 2 -> 7 reads node (1, 2)
    assert "leaf_hash" not in dict(report.problem_kinds) and "checkpoint_root" not in dict(report.problem_kinds)


def test_a_deleted_entry_breaks_the_seq_order(ledger: Ledger) -> None:
    _build(ledger)
    with _superuser(ledger) as su:
        su.execute("DELETE FROM ledger.entries WHERE seq = 5")
    report = _audit(ledger)
    first = report.first_problem
    assert (first.kind, first.seq, first.expected, first.found) == ("seq", 6, "seq 5", "seq 6")
    assert "seq 5 is missing" in first.message
    assert report.entries_checked == 12 and "log_state_size" in dict(report.problem_kinds)


def test_derived_state_must_match_the_replayed_log(ledger: Ledger) -> None:
    built = _build(ledger)
    with _superuser(ledger) as su:
        su.execute("UPDATE ledger.keys SET kinds = '{*}', revoked_seq = NULL WHERE keyid = %s", (built.b.signer.keyid,))
        su.execute("UPDATE ledger.log_state SET frontier[2] = %s", (b"\x44" * 32,))
    report = _audit(ledger)
    assert report.problem_count == 3
    assert [(p.kind, p.message) for p in report.problems[1:]] == [
        ("key_table", "ledger.keys.kinds differs from the replayed log"),
        ("key_table", "ledger.keys.revoked_seq differs from the replayed log"),
    ]
    assert report.problems[0].kind == "log_state_frontier" and "44" * 32 in report.problems[0].found


# --- checkpoints ------------------------------------------------------------------------


def test_a_deleted_checkpoint_is_fine_a_forged_one_is_not(ledger: Ledger) -> None:
    _build(ledger)
    with _superuser(ledger) as su:
        su.execute("DELETE FROM ledger.checkpoints WHERE tree_size = 7")
    report = _audit(ledger)
    assert report.ok and report.checkpoints_checked == 4
    note = parse_note(_note(ledger, 10))
    sig = note.signatures[0]
    forged = NoteSignature(name=sig.name, key_hash=sig.key_hash, signature=bytes([sig.signature[0] ^ 1]) + sig.signature[1:])
    with _superuser(ledger) as su:
        su.execute("UPDATE ledger.checkpoints SET note = %s WHERE tree_size = 10", (format_note(Note(text=note.text, signatures=(forged,))),))
    report = _audit(ledger)
    assert report.problem_count == 1
    assert (report.first_problem.kind, report.first_problem.tree_size) == ("checkpoint_signature", 10)
    assert "bad_signature" in report.first_problem.message


def test_a_checkpoint_key_given_by_the_auditor_is_used_and_compared(ledger: Ledger) -> None:
    _build(ledger)
    own = format_vkey(ORIGIN, ledger.checkpoint_key.public_key)
    report = _audit(ledger, checkpoint_key=parse_vkey(own))
    assert report.ok and report.key_source == "given" and report.checkpoints_checked == 5
    other = parse_vkey(format_vkey(ORIGIN, Ed25519Signer.generate().public_key))
    report = _audit(ledger, checkpoint_key=other)
    assert report.first_problem.kind == "trust_root" and report.first_problem.found == own
    assert dict(report.problem_kinds)["checkpoint_signature"] == 5


# --- pinned admin keys ------------------------------------------------------------------

KEY_EVENT_SEQS = (0, 1, 7, 10)
"""The entries of _build signed by the admin key: three registrations and one revocation."""


def _admin_files(tmp_path: Path, *keys: bytes) -> list[str]:
    """Each key written as ``ledger init --admin-key`` takes it: the first as PEM, the others raw."""
    return [str(save_public_key(pk, tmp_path / f"admin{i}.pub", raw=i > 0)) for i, pk in enumerate(keys)]


def _pin_args(files: list[str]) -> list[str]:
    return [arg for f in files for arg in ("--admin-key", f)]


def _replace_admin(lg: Ledger) -> Ed25519Signer:
    """A superuser who holds the checkpoint key swaps the trust root's admin key for their own, re-signs
    every key event with it, and rebuilds the tree and the checkpoints: a self-consistent database."""
    rogue = Ed25519Signer.generate()
    with _superuser(lg) as su:
        su.execute("UPDATE ledger.trust_root SET keyid = %s, public_key = %s WHERE purpose = 'admin'", (rogue.keyid, rogue.public_key))
        for seq in KEY_EVENT_SEQS:
            payload = parse_envelope(_envelope(su, seq)).payload
            _put_envelope(su, seq, encode_envelope(sign_envelope(PAYLOAD_TYPE, payload, [rogue])), keyid=rogue.keyid)
        _resign(su, lg, _rebuild_tree(su), (0, 2, 7, 10, 13))
    return rogue


def test_pinned_admin_keys_that_match_the_trust_root_verify(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _build(ledger)
    admin = ledger.admin.public_key
    report = _audit(ledger, admin_keys=[admin, admin])  # a key pinned twice is one key
    assert report.ok and report.admin_keys_pinned and report.admin_keyids == (keyid_of(admin),)
    assert report.entries_checked == 13
    pem, raw = _admin_files(tmp_path, admin, admin)
    for files in ([pem], [raw], [pem, raw]):
        code, out, _ = _cli(monkeypatch, capsys, ledger, *_pin_args(files))
        assert code == 0, out
        assert f"admin keys      pinned with --admin-key ({keyid_of(admin)[:16]}…)" in out
    code, out, _ = _cli(monkeypatch, capsys, ledger)
    assert code == 0 and "admin keys      NOT pinned: read from the database (ledger.trust_root)" in out
    assert "pin them with --admin-key" in out
    doc = json.loads(_cli(monkeypatch, capsys, ledger, "--json")[1])
    assert doc["audit"]["admin_keys_pinned"] is False and doc["audit"]["admin_keyids"] == [keyid_of(admin)]
    doc = json.loads(_cli(monkeypatch, capsys, ledger, "--json", "--admin-key", pem)[1])
    assert doc["ok"] is True and doc["audit"]["admin_keys_pinned"] is True


def test_a_replaced_admin_key_passes_unpinned_and_fails_pinned(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _build(ledger)
    rogue = _replace_admin(ledger)
    real = keyid_of(ledger.admin.public_key)
    unpinned = _audit(ledger)
    assert unpinned.ok and unpinned.admin_keyids == (rogue.keyid,)  # self-consistent: only the pinned key can tell
    report = _audit(ledger, admin_keys=[ledger.admin.public_key])
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
    assert _cli(monkeypatch, capsys, ledger)[0] == 0
    code, out, _ = _cli(monkeypatch, capsys, ledger, *_pin_args(files))
    assert code == 1
    assert "first divergence: ledger.trust_root: the admin keys stored in the database are not the admin keys you pinned" in out
    assert real in out and rogue.keyid in out
    code, out, _ = _cli(monkeypatch, capsys, ledger, "--json", *_pin_args(files))
    doc = json.loads(out)
    assert code == 1 and doc["ok"] is False
    assert doc["audit"]["first_problem"]["kind"] == "trust_root_mismatch"
    assert doc["audit"]["problem_kinds"]["trust_root_mismatch"] == 1 and doc["audit"]["admin_keyids"] == [real]


def test_a_pinned_admin_key_missing_from_the_trust_root_or_an_extra_one_in_it_fails(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _build(ledger)
    admin, other = ledger.admin.public_key, Ed25519Signer.generate()
    report = _audit(ledger, admin_keys=[admin, other.public_key])
    assert report.problem_count == 1  # the extra pinned key signs nothing: the replay is the same
    first = report.first_problem
    assert first.kind == "trust_root_mismatch"
    assert f"missing (pinned, not in the trust root): {other.keyid}" in first.message and "unexpected" not in first.message
    code, out, _ = _cli(monkeypatch, capsys, ledger, *_pin_args(_admin_files(tmp_path, admin, other.public_key)))
    assert code == 1 and "FAILED: 1 problem" in out and other.keyid in out
    # A second admin key slipped into the trust root (no log entry records that) is unexpected.
    with _superuser(ledger) as su:
        su.execute("INSERT INTO ledger.trust_root (keyid, public_key, purpose, name) VALUES (%s, %s, 'admin', 'mallory')",
                   (other.keyid, other.public_key))  # fmt: skip
    assert _audit(ledger).ok
    report = _audit(ledger, admin_keys=[admin])
    assert report.problem_count == 1 and report.first_problem.kind == "trust_root_mismatch"
    assert f"unexpected (in the trust root, not pinned): {other.keyid}" in report.first_problem.message
    assert "missing" not in report.first_problem.message
    assert report.first_problem.found == ", ".join(sorted((keyid_of(admin), other.keyid)))
    assert _audit(ledger, admin_keys=[other.public_key, admin]).ok


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
        code, out, err = _cli(monkeypatch, capsys, ledger, "--admin-key", good, "--admin-key", path)
        assert code == 1 and out == "", name
        assert err.startswith("provault: error [key_material]: ") and detail in err and path in err, (name, err)
        assert "verifying" not in err, name  # refused before the audit started
    with pytest.raises(KeyMaterialError, match="no admin keys were pinned"):
        _audit(ledger, admin_keys=[])
    with pytest.raises(KeyMaterialError, match=r"pinned admin key \[0\]: expected a raw 32-byte Ed25519 public key"):
        _audit(ledger, admin_keys=[b"short"])


# --- a saved checkpoint against today's log ----------------------------------------------


def test_a_saved_checkpoint_verifies_against_the_grown_log(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = _build(ledger)
    saved = tmp_path / "cp7.note"
    saved.write_text(_note(ledger, 7), encoding="utf-8")
    ledger.append(built.a.emit("run.completed", dataset_prov("cd" * 32)))
    _sign(ledger)
    code, out, _ = _cli(monkeypatch, capsys, ledger, "--checkpoint", str(saved))
    assert code == 0, out
    assert "size 7" in out and "consistent with the ledger's latest checkpoint, size 14" in out
    assert "read from the database (ledger.trust_root)" in out
    vkey = tmp_path / "log.vkey"
    vkey.write_text(format_vkey(ORIGIN, ledger.checkpoint_key.public_key) + "\n", encoding="utf-8")
    code, out, _ = _cli(monkeypatch, capsys, ledger, "--checkpoint", str(saved), "--key", str(vkey), "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] is True
    assert doc["checkpoint"]["key_source"] == "given" and doc["checkpoint"]["latest"]["size"] == 14
    assert doc["audit"]["checkpoint_key_source"] == "given"
    empty = tmp_path / "cp0.note"
    empty.write_text(_note(ledger, 0), encoding="utf-8")
    assert _cli(monkeypatch, capsys, ledger, "--checkpoint", str(empty))[0] == 0


def test_a_rewritten_history_fails_the_saved_checkpoint_loudly(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    built = _build(ledger)
    saved_note = _note(ledger, 7)
    saved = tmp_path / "cp7.note"
    saved.write_text(saved_note, encoding="utf-8")
    with _superuser(ledger) as su:
        # The attacker holds the producer's and the checkpoint key, rewrites seq 4 and rebuilds everything.
        original = parse_event(parse_envelope(_envelope(su, 4)).payload)
        chain = ProducerChain(original.producer.id, built.a.signer, position=original.producer)
        forged = chain.emit(original.kind, dataset_prov("66" * 32), event_id=original.id, time=original.time)
        _put_envelope(su, 4, forged.envelope)
        _resign(su, ledger, _rebuild_tree(su), (0, 13))
    assert _audit(ledger).ok  # self-consistent: only the auditor's saved checkpoint can tell
    with connect(ledger.dsn, autocommit=True) as conn, pytest.raises(LogRewritten, match="NOT consistent with your saved checkpoint"):
        verify_against_checkpoint(conn, saved_note)
    code, out, _ = _cli(monkeypatch, capsys, ledger, "--checkpoint", str(saved))
    assert code == 1
    assert "REFUSED [log_rewritten]" in out and "THE LOG WAS REWRITTEN" in out
    assert "provault verify: OK" in out  # the audit itself passed; the exit code comes from the checkpoint


def test_bad_saved_checkpoints_are_refused_precisely(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _build(ledger)
    note = parse_note(_note(ledger, 7))
    sig = note.signatures[0]
    bad_sig = format_note(Note(text=note.text, signatures=(NoteSignature(name=sig.name, key_hash=sig.key_hash, signature=b"\x00" * 64),)))
    other_key = Ed25519Signer.generate()
    root = merkle.root_hash([])
    other_origin = sign_checkpoint(Checkpoint(origin="other.example/log", size=0, root_hash=root), "other.example/log", other_key)
    too_big = sign_checkpoint(Checkpoint(origin=ORIGIN, size=1000, root_hash=root), ORIGIN, ledger.checkpoint_key)
    unknown = sign_checkpoint(Checkpoint(origin=ORIGIN, size=7, root_hash=root), ORIGIN, other_key)
    cases = {
        "bad_sig": (bad_sig, "REFUSED [bad_signature]", "does not verify"),
        "other_origin": (other_origin, "REFUSED [origin_mismatch]", "'other.example/log'"),
        "too_big": (too_big, "REFUSED [checkpoint_beyond_log]", "larger than the log, which holds 13"),
        "unknown": (unknown, "REFUSED [unknown_key]", "does not verify with the stored (ledger.trust_root) checkpoint key"),
        "garbage": ("not a note\n", "REFUSED [malformed_checkpoint]", "not a signed checkpoint note"),
    }
    for name, (text, status, detail) in cases.items():
        path = tmp_path / f"{name}.note"
        path.write_text(text, encoding="utf-8")
        code, out, _ = _cli(monkeypatch, capsys, ledger, "--checkpoint", str(path))
        assert code == 1, name
        assert status in out and detail in out, (name, out)
