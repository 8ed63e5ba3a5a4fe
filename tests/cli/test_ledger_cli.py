"""The ledger's command line: `db migrate`, `ledger init`, `keys`, `verify`, and docs/ledger.md.

Commands run in-process through ``ledger.cli.main([...])``; the key commands
run against one real ``provault up`` shared by this module (it takes a few
seconds to start), each test with keys of its own so the order does not matter.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import signal
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from ledger.cli import build_parser, main
from ledger.config import NatsSettings
from ledger.core.keys import Ed25519Signer, keyid_of, load_private_key, load_public_key, save_private_key
from ledger.core.producing import ProducerChain
from ledger.service.checkpointer import due
from tests.cli.test_up import _start_up, _stop
from tests.ledgerkit import dataset_prov
from tests.service.natskit import publish, wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs"
LEDGER_DOC = DOCS / "ledger.md"


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trust_root(dsn: str) -> list[tuple[str, str, str]]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT keyid, purpose, name FROM ledger.trust_root ORDER BY purpose, keyid").fetchall()


# --- the checkpointer's policy ------------------------------------------------------


@pytest.mark.parametrize(
    ("size", "last_size", "last_time", "now", "expected"),
    [
        pytest.param(1100, 100, 50.0, 50.1, True, id="grown-by-every"),
        pytest.param(1099, 100, 50.0, 50.1, False, id="grown-less-than-every-interval-not-elapsed"),
        pytest.param(101, 100, 50.0, 51.0, True, id="grown-a-little-interval-elapsed"),
        pytest.param(100, 100, 50.0, 500.0, False, id="not-grown-however-long"),
        pytest.param(0, -1, 0.0, 12345.0, True, id="no-checkpoint-yet-as-the-checkpointer-starts"),
    ],
)
def test_checkpoint_due_policy(size: int, last_size: int, last_time: float, now: float, expected: bool) -> None:
    assert due(size, last_size, last_time, now, every=1000, interval_s=1.0) is expected


# --- provault db migrate -------------------------------------------------------------


@pytest.mark.postgres
def test_db_migrate_applies_once(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", pg_dsn)
    assert main(["db", "migrate"]) == 0
    assert capsys.readouterr().out.strip().splitlines() == [
        "applied ledger V001 ledger",
        "applied ledger V002 entries_store_the_payload",
        "applied prov V001 prov",
        "applied prov V002 derived_rows_unchecked",
        "applied prov V003 projector_may_analyze",
        "applied prov V004 edges_by_plan",
    ]
    assert main(["db", "migrate"]) == 0
    assert capsys.readouterr().out.strip() == "schema is up to date"


def test_db_migrate_without_a_server_says_so(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = _closed_port()
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", f"postgresql://provault:s3cret-pw@127.0.0.1:{port}/ledger")
    assert main(["db", "migrate"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith(
        f"provault: error [storage_unavailable]: cannot connect to PostgreSQL at 127.0.0.1:{port}/ledger"
    )
    assert "hint: is the server running?" in err
    assert "Traceback" not in err and "psycopg" not in err
    assert "s3cret-pw" not in err, "the password must never be printed"


# --- provault ledger init --------------------------------------------------------------


@pytest.mark.postgres
def test_ledger_init_creates_keys_and_trust_root_once(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", pg_dsn)
    data = tmp_path / "data"
    assert main(["ledger", "init", "--data-dir", str(data)]) == 0
    out = capsys.readouterr().out
    ck, admin = data / "keys" / "checkpoint.key", data / "keys" / "admin.key"
    assert _mode(ck) == 0o600 and _mode(admin) == 0o600
    assert (data / "keys" / "checkpoint.key.pub").exists() and (data / "keys" / "admin.key.pub").exists()
    ck_id, admin_id = load_private_key(ck).keyid, load_private_key(admin).keyid
    assert _trust_root(pg_dsn) == [(admin_id, "admin", "admin"), (ck_id, "checkpoint", "provault.local/log")]
    for line in (
        "applied ledger V001 ledger",
        "applied ledger V002 entries_store_the_payload",
        f"created checkpoint key {ck}",
        f"created admin key {admin}",
        f"checkpoint key {ck_id} for origin provault.local/log",
        f"admin key {admin_id} (admin)",
    ):
        assert line in out.splitlines()
    with psycopg.connect(pg_dsn) as conn:
        assert conn.execute("SELECT tree_size FROM ledger.checkpoints").fetchall() == [(0,)], "the empty tree is signed"

    assert main(["ledger", "init", "--data-dir", str(data)]) == 0
    assert capsys.readouterr().out.strip() == "ledger already initialised; nothing changed"
    assert load_private_key(ck).keyid == ck_id and len(_trust_root(pg_dsn)) == 2


@pytest.mark.postgres
def test_ledger_init_with_an_admin_public_key(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", pg_dsn)
    assert main(["keys", "new", str(tmp_path / "ops.key")]) == 0
    ops = keyid_of(load_public_key(tmp_path / "ops.key.pub"))
    data = tmp_path / "data"
    assert main(["ledger", "init", "--data-dir", str(data), "--admin-key", str(tmp_path / "ops.key.pub")]) == 0
    assert f"admin key {ops} (ops.key)" in capsys.readouterr().out
    assert not (data / "keys" / "admin.key").exists()
    assert [(k, n) for k, p, n in _trust_root(pg_dsn) if p == "admin"] == [(ops, "ops.key")]


@pytest.mark.postgres
def test_ledger_init_refuses_another_checkpoint_key_or_origin(
    tmp_path: Path, pg_dsn: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", pg_dsn)
    data = str(tmp_path / "data")
    assert main(["ledger", "init", "--data-dir", data]) == 0
    before = _trust_root(pg_dsn)
    assert main(["keys", "new", str(tmp_path / "other.key")]) == 0
    capsys.readouterr()

    monkeypatch.setenv("PROVAULT_SIGNING_CHECKPOINT_KEY", str(tmp_path / "other.key"))
    assert main(["ledger", "init", "--data-dir", data]) == 1
    err = capsys.readouterr().err
    assert err.startswith("provault: error [trust_conflict]: this ledger's checkpoints are signed by key ")
    assert "hint: use the original checkpoint key file" in err

    monkeypatch.delenv("PROVAULT_SIGNING_CHECKPOINT_KEY")
    monkeypatch.setenv("PROVAULT_SIGNING_ORIGIN", "elsewhere.example/log")
    assert main(["ledger", "init", "--data-dir", data]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        "provault: error [trust_conflict]: this ledger's origin is 'provault.local/log'; "
        "refusing to sign checkpoints as 'elsewhere.example/log'"
    )
    assert _trust_root(pg_dsn) == before, "a refused init changes nothing"


# --- provault keys new ---------------------------------------------------------------


def test_keys_new_writes_a_pair_and_refuses_to_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "k" / "trainer.key"
    assert main(["keys", "new", str(path)]) == 0
    out = capsys.readouterr().out
    keyid = load_private_key(path).keyid
    assert _mode(path) == 0o600
    assert keyid_of(load_public_key(f"{path}.pub")) == keyid
    assert out.splitlines() == [f"created {path} (private, mode 0600) and {path}.pub", f"keyid {keyid}"]

    assert main(["keys", "new", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"refusing to overwrite existing key file {path}" in err
    assert load_private_key(path).keyid == keyid, "the existing key is untouched"


def test_keys_register_without_a_running_ledger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """No stack.json and no --ledger: the configured address, where nothing listens."""
    data = tmp_path / "data"
    save_private_key(Ed25519Signer.generate(), data / "keys" / "admin.key")
    save_private_key(Ed25519Signer.generate(), tmp_path / "p.key")
    port = _closed_port()
    monkeypatch.setenv("PROVAULT_GRPC_LEDGER_LISTEN", f"127.0.0.1:{port}")
    code = main(["keys", "register", str(tmp_path / "p.key"), "--identity", "service:trainer", "--data-dir", str(data)])
    assert code == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"provault: error [command_failed]: could not reach the ledger: ledger at 127.0.0.1:{port} is not reachable (UNAVAILABLE)"
    )
    assert "is sent first by the next `provault keys` command; delete that file to cancel it" in err
    assert len(list((data / "outbox").glob("*.json"))) == 1


# --- keys and verify against a running stack --------------------------------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, dict]]:
    """One `provault up` for the module: (data dir, stack.json)."""
    data = tmp_path_factory.mktemp("ledger-cli") / "state"
    proc, info = _start_up(data)
    try:
        yield data, info
    finally:
        out = _stop(proc, signal.SIGINT)
        assert proc.returncode == 0, out


def _new_key(tmp_path: Path, name: str) -> tuple[Path, Ed25519Signer]:
    signer = Ed25519Signer.generate()
    return save_private_key(signer, tmp_path / name), signer


@pytest.mark.postgres
@pytest.mark.nats
def test_keys_register_refuses_a_bad_identity(stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = stack
    path, _ = _new_key(tmp_path, "p.key")
    assert main(["keys", "register", str(path), "--identity", "alice", "--data-dir", str(data)]) == 1
    assert capsys.readouterr().err.strip() == (
        "provault: error [command_failed]: --identity: expected TYPE:NAME with TYPE one of person, service, host, found 'alice'"
    )


@pytest.mark.postgres
@pytest.mark.nats
def test_key_lifecycle_register_list_revoke(stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, info = stack
    dd = ["--data-dir", str(data)]
    path, key = _new_key(tmp_path, "trainer.key")

    assert main(["keys", "register", str(path), "--identity", "service:trainer-7", "--kinds", "dataset.*", *dd]) == 0
    out = capsys.readouterr().out
    assert re.fullmatch(rf"registered key {key.keyid} \(event [0-9a-f-]{{36}}, log seq \d+\)\n", out), out

    assert main(["keys", "list", *dd]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(key.keyid[:16]))
    assert re.match(rf"{key.keyid[:16]}  producer\s+service:trainer-7\s+seq \d+\s+active$", row), row

    assert main(["keys", "list", "--json", *dd]) == 0
    rows = {r["keyid"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[key.keyid]["status"] == "active" and rows[key.keyid]["kinds"] == ["dataset.*"]
    assert rows[load_private_key(data / "keys" / "admin.key").keyid]["role"] == "trust-root admin"

    assert main(["keys", "revoke", key.keyid, "--reason", "leaked", *dd]) == 0
    m = re.fullmatch(rf"revoked key {key.keyid} \(event [0-9a-f-]{{36}}, log seq (\d+)\)\n", capsys.readouterr().out)
    assert m
    assert main(["keys", "list", *dd]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(key.keyid[:16]))
    assert f"revoked at seq {m[1]} (from " in row and row.endswith(": leaked)")

    event = ProducerChain("trainer-7@host", key).emit("dataset.registered", dataset_prov())
    publish(info["nats_url"], NatsSettings(), [event])

    def rejected() -> list[tuple[str, str]]:
        with psycopg.connect(info["postgres_dsn"]) as conn:
            return conn.execute(
                "SELECT reason, message FROM ledger.rejections WHERE event_id = %s", (event.event_id,)
            ).fetchall()

    wait_for(lambda: bool(rejected()), timeout=30, what="the revoked key's event in ledger.rejections")
    [(reason, message)] = rejected()
    assert reason == "key_revoked" and f"revoked at log seq {m[1]}" in message


@pytest.mark.postgres
@pytest.mark.nats
def test_keys_revoke_of_an_unknown_key_is_refused_by_the_ledger(stack, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = stack
    unknown = Ed25519Signer.generate().keyid
    assert main(["keys", "revoke", unknown, "--reason", "typo", "--data-dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f"provault: error [command_failed]: the ledger refused the event [invalid_event]: cannot revoke key {unknown}: "
        "it is not registered"
    ), err


@pytest.mark.postgres
@pytest.mark.nats
def test_verify_json_against_the_running_stack(stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = stack
    path, _ = _new_key(tmp_path, "auditee.key")
    assert main(["keys", "register", str(path), "--identity", "host:gpu-7", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["verify", "--json", "--data-dir", str(data)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is True
    assert doc["audit"]["problem_count"] == 0 and doc["audit"]["origin"] == "provault.local/log"
    assert doc["audit"]["entries_checked"] >= 1 and doc["audit"]["entries_checked"] == doc["audit"]["log_size"]
    assert doc["audit"]["checkpoint_key_source"] == "trust_root"


# --- docs/ledger.md: its commands parse with the real CLI ----------------------------------------

_BASH = re.compile(r"^```bash\n(.*?)^```$", re.S | re.M)
_ASSIGNMENT = re.compile(r"^export [A-Z_][A-Z0-9_]*=\S+$")


def test_saved_checkpoint_and_vkey_verify_later(stack, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data, _ = stack
    note, vkey = tmp_path / "checkpoint.note", tmp_path / "log.vkey"
    assert main(["checkpoint", "--data-dir", str(data), "--out", str(note)]) == 0
    assert main(["checkpoint", "--data-dir", str(data), "--vkey", "--out", str(vkey)]) == 0
    assert note.read_text().startswith("provault.local/log\n")
    assert vkey.read_text().startswith("provault.local/log+")
    key_path, _ = _new_key(tmp_path, "later")
    assert main(["keys", "register", str(key_path), "--identity", "person:later", "--data-dir", str(data)]) == 0
    capsys.readouterr()
    assert main(["verify", "--data-dir", str(data), "--checkpoint", str(note), "--key", str(vkey)]) == 0
    assert "OK" in capsys.readouterr().out


def _doc_command_lines() -> list[str]:
    """Every command line of the ```bash blocks (backslash continuations joined, comments dropped)."""
    lines: list[str] = []
    for block in _BASH.findall(LEDGER_DOC.read_text(encoding="utf-8")):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                lines.append(line)
    return lines


def _subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    """Every runnable command path of the parser, e.g. ('keys', 'register')."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix}
    return {path for name, p in subs[0].choices.items() for path in _subcommands(p, (*prefix, name))}


def test_ledger_doc_commands_parse_with_the_cli() -> None:
    lines = _doc_command_lines()
    commands = [ln for ln in lines if ln.startswith("provault ")]
    assert len(commands) >= 10
    others = [ln for ln in lines if not ln.startswith("provault ") and not _ASSIGNMENT.match(ln)]
    assert others == [], "```bash blocks in docs/ledger.md hold only `provault ...` commands and `export NAME=value`"
    shown: set[tuple[str, ...]] = set()
    for line in commands:
        argv = shlex.split(line)[1:]
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:  # argparse exits on an unknown option or a missing argument
            pytest.fail(f"docs/ledger.md: `{line}` does not parse with the CLI (exit {e.code})")
        assert callable(getattr(args, "run", None)), line
        action = getattr(args, f"{args.command}_command", None)
        shown.add((args.command,) if action is None else (args.command, action))
    ledger_commands = {p for p in _subcommands(build_parser()) if p[0] in LEDGER_COMMANDS}
    missing = {" ".join(p) for p in ledger_commands} - {" ".join(p) for p in shown}
    assert missing == set(), f"docs/ledger.md shows no example of: {sorted(missing)}"


LEDGER_COMMANDS = {"up", "db", "ledger", "keys", "verify", "checkpoint", "health"}
"""The commands docs/ledger.md documents; agents and query commands have their own pages."""
