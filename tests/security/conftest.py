"""Fixtures of the bad-input tests: a seeded ledger behind a real LedgerService."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.ledgerkit import Ledger
from tests.security.securitykit import Served, own_database, serving


@pytest.fixture
def served(ledger: Ledger) -> Iterator[Served]:
    """For tests that append: a ledger of their own."""
    with serving(ledger) as s:
        yield s


@pytest.fixture(scope="module")
def shared(pg_admin_dsn: str) -> Iterator[Served]:
    """For tests whose inputs must all be refused: one server for the module (each test checks before and after)."""
    with own_database(pg_admin_dsn) as lg, serving(lg) as s:
        yield s
