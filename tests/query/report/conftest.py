"""A story in a real ledger, checkpointed and projected, and the `provault` command run in-process against it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.cli import main
from ledger.core.checkpoint import format_vkey
from ledger.core.keys import save_public_key
from ledger.db import connect
from ledger.store import checkpoints
from query import projector
from tests.ledgerkit import ORIGIN, Ledger
from tests.query.provstory import Story

Cli = Callable[..., tuple[int, str, str]]


def sign_and_project(ledger: Ledger) -> None:
    assert ledger.conn is not None
    checkpoints.sign_latest(ledger.conn, ledger.checkpoint_key, ORIGIN)
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        projector.project(c)


@pytest.fixture
def story(ledger: Ledger, logged_story: Story) -> Story:
    """Keys registered (seqs 0-2), the six story events (seqs 3-8), a checkpoint at size 9, projected."""
    sign_and_project(ledger)
    return logged_story


@pytest.fixture
def cli(ledger: Ledger, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", ledger.dsn)

    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(a) for a in argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture
def keys(ledger: Ledger, tmp_path: Path) -> tuple[Path, Path]:
    """The checkpoint verifier key and the admin public key, as an auditor keeps them."""
    vkey = tmp_path / "log.vkey"
    vkey.write_text(format_vkey(ORIGIN, ledger.checkpoint_key.public_key) + "\n")
    return vkey, save_public_key(ledger.admin.public_key, tmp_path / "admin.pub")
