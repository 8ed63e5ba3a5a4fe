from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ledgerkit import Ledger


@pytest.fixture
def ledger(pg_dsn: str) -> Iterator[Ledger]:
    lg = Ledger(pg_dsn)
    try:
        yield lg
    finally:
        lg.close()
