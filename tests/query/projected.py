"""A test ledger made ready for answers: its latest checkpoint signed, the projection caught up."""

from __future__ import annotations

from ledger.db import connect
from ledger.store import checkpoints
from query import projector
from tests.ledgerkit import ORIGIN, Ledger


def sign_and_project(ledger: Ledger) -> None:
    assert ledger.conn is not None
    checkpoints.sign_latest(ledger.conn, ledger.checkpoint_key, ORIGIN)
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        projector.project(c)
