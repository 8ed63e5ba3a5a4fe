"""A story in a real ledger, checkpointed and projected, and the `provault` command run in-process against it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from ledger.cli import main
from ledger.core.checkpoint import format_vkey
from ledger.core.keys import save_public_key
from ledger.store import checkpoints
from tests.ledgerkit import ORIGIN, Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story, at, xsd_time

Cli = Callable[..., tuple[int, str, str]]


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


QUARANTINE = "provault:quarantine/019cade2-0000-7000-8000-000000000009"
ENVIRONMENT = "sha256:" + "e0" * 32


@pytest.fixture
def lifecycle(ledger: Ledger, logged_story: Story) -> Story:
    """The story (seqs 0-8, checkpointed at size 9), then the run's parameters and environment (9), the model quarantined (10) and
    the serving key revoked (11); checkpointed at size 12 and projected."""
    s, i = logged_story, logged_story.ids
    assert ledger.conn is not None
    checkpoints.sign_latest(ledger.conn, ledger.checkpoint_key, ORIGIN)
    env = s.trainer.emit(
        "run.environment",
        {
            "activity": {i.run: {"provault:params": '{"epochs":3,"lr":0.01}'}},
            "entity": {ENVIRONMENT: {"prov:type": "provault:Environment", "prov:label": "python 3.12, torch 2.4"}},
            "used": {"_:u1": {"prov:activity": i.run, "prov:entity": ENVIRONMENT}},
        },
        time=at(3),
    )
    quarantined = s.deployer.emit(
        "model.quarantined",
        {
            "activity": {QUARANTINE: {"prov:type": "provault:Quarantine", "prov:label": "bias found in audit"}},
            "entity": {i.model: {}},
            "wasInvalidatedBy": {
                "_:i1": {"prov:entity": i.model, "prov:activity": QUARANTINE, "prov:time": xsd_time(at(60))}
            },
            "wasAssociatedWith": {"_:w1": {"prov:activity": QUARANTINE, "prov:agent": i.deployer}},
        },
        time=at(60),
    )
    plan = ledger.append(env, quarantined, ledger.revocation(s.server.signer, effective_from=at(52)))
    assert [a.seq for a in plan.accepted] == [9, 10, 11], ledger.rejections()
    sign_and_project(ledger)
    return s
