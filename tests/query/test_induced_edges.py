"""Both shapes of the induced-edges query (node by node for small answers, one hash join for large) answer alike."""

from __future__ import annotations

import pytest

from ledger.db import connect
from query import projector, traverse
from query.traverse import _walk
from tests.ledgerkit import Ledger
from tests.query.provstory import Story

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("direction", ["upstream", "downstream", "both"])
def test_small_and_large_answer_shapes_give_the_same_edges(
    ledger: Ledger, logged_story: Story, direction: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        projector.project(c)
    starts = {
        "upstream": "provault:prediction/req-1",
        "downstream": logged_story.ids.dataset,
        "both": logged_story.ids.run,
    }
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as c:
        answers = []
        for few in (10_000, 0):  # every answer "small", then every answer "large"
            monkeypatch.setattr(_walk, "FEW_NODES", few)
            answers.append(traverse.trace(c, starts[direction], direction=direction))
    small, large = answers
    assert len(small.edges) >= 3
    assert small.edges == large.edges and small.nodes == large.nodes and small.seqs == large.seqs
