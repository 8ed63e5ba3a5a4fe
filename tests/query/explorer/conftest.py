"""The explorer tests' world: the query tests' story, plus a dataset whose label is markup, all projected."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ledgerkit import Ledger
from tests.query.explorer.explorerkit import Running, serving
from tests.query.projected import sign_and_project
from tests.query.provstory import Story, at

HOSTILE_LABEL = '<script>document.title="owned"</script><img src=x onerror="document.title=1">'
HOSTILE_ID = "sha256:" + "66" * 32


@pytest.fixture
def world(ledger: Ledger, logged_story: Story) -> Story:
    """Seqs 0-8 the story, seq 9 a dataset labelled with markup (its id: HOSTILE_ID); checkpoint at 10; projected."""
    hostile = logged_story.trainer.emit(
        "dataset.registered",
        {"entity": {HOSTILE_ID: {"prov:type": "provault:Dataset", "prov:label": HOSTILE_LABEL}}},
        time=at(30),
    )
    plan = ledger.append(hostile)
    assert [a.seq for a in plan.accepted] == [9], ledger.rejections()
    sign_and_project(ledger)
    return logged_story


@pytest.fixture
def explorer(ledger: Ledger, world: Story, tmp_path: Path) -> Iterator[Running]:
    with serving(ledger.dsn, tmp_path) as running:
        yield running
