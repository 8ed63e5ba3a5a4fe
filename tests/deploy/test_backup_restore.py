"""Backup and restore as docs/operations.md describes it: pg_dump, pg_restore, then verify against a saved checkpoint.

A restored copy passes ``provault verify --checkpoint`` with a checkpoint saved
before the backup; a copy restored from a backup older than a saved
checkpoint fails it (the log was rolled back), which is why operators keep
checkpoints outside the database.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from ledger.cli import main
from ledger.embedded import postgres_bin_dir
from ledger.store import checkpoints
from tests.ledgerkit import ORIGIN, Ledger, dataset_prov

pytestmark = [pytest.mark.postgres]


@pytest.fixture
def restore_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """An empty database to restore into."""
    name = f"r_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _tool(name: str, *args: str) -> None:
    res = subprocess.run([str(postgres_bin_dir() / name), *args], capture_output=True, text=True, check=False)
    assert res.returncode == 0, f"{name}: {res.stderr}"


def _grow(ledger: Ledger, n: int) -> None:
    chain, reg = ledger.producer_with_key(f"trainer@{uuid.uuid4().hex[:6]}")
    ledger.append(reg, *(chain.emit("dataset.registered", dataset_prov(uuid.uuid4().hex * 2)) for _ in range(n)))
    assert ledger.conn is not None
    checkpoints.sign_latest(ledger.conn, ledger.checkpoint_key, ORIGIN)


def _verify(monkeypatch: pytest.MonkeyPatch, dsn: str, note: Path, vkey: Path) -> int:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", dsn)
    return main(["verify", "--checkpoint", str(note), "--key", str(vkey)])


def test_a_restored_backup_verifies_against_a_saved_checkpoint_and_a_rollback_does_not(
    ledger: Ledger, restore_dsn: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with psycopg.connect(ledger.dsn) as conn:
        server = conn.info.server_version // 10000
    tools = int(
        subprocess.run([str(postgres_bin_dir() / "pg_dump"), "--version"], capture_output=True, text=True, check=True)
        .stdout.split()[-1]
        .split(".")[0]
    )
    if server > tools:
        pytest.skip(f"pg_dump {tools} cannot dump a PostgreSQL {server} server")
    _grow(ledger, 20)
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", ledger.dsn)
    note, vkey, dump = tmp_path / "checkpoint.note", tmp_path / "log.vkey", tmp_path / "provault.dump"
    assert main(["checkpoint", "--out", str(note)]) == 0
    assert main(["checkpoint", "--vkey", "--out", str(vkey)]) == 0
    _tool("pg_dump", "--format=custom", f"--file={dump}", f"--dbname={ledger.dsn}")

    _grow(ledger, 5)  # the ledger moves on after the backup
    later = tmp_path / "later.note"
    assert main(["checkpoint", "--out", str(later)]) == 0

    _tool("pg_restore", "--exit-on-error", f"--dbname={restore_dsn}", str(dump))
    assert _verify(monkeypatch, restore_dsn, note, vkey) == 0
    assert _verify(monkeypatch, restore_dsn, later, vkey) == 1, "a backup older than a saved checkpoint is a rollback"
