"""Fixtures the query tests share: the story in the log, and an auditor's connection."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest

from ledger.db import connect
from query.projector import migrate_prov
from tests.ledgerkit import Ledger
from tests.query.provstory import Story, build_story


@pytest.fixture
def logged_story(ledger: Ledger) -> Story:
    """The story's keys registered (seqs 0-2) and its six events appended (seqs 3-8); the PROV tables exist, empty."""
    migrate_prov(ledger.dsn)
    s = build_story()
    regs = [
        ledger.registration(c.signer, name=n)
        for c, n in ((s.trainer, "alice"), (s.deployer, "bob"), (s.server, "serving"))
    ]
    plan = ledger.append(*regs, *s.events)
    assert [a.seq for a in plan.accepted] == list(range(9)), ledger.rejections()
    return s


@pytest.fixture
def aconn(ledger: Ledger) -> Iterator[psycopg.Connection]:
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as c:
        yield c
