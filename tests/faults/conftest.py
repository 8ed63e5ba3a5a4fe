"""Fixtures of the fault tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ledger.embedded import EmbeddedPostgres, free_port


@pytest.fixture
def own_postgres(tmp_path: Path) -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL of this test's own, which it may stop and start again (the session's shared one must not be)."""
    server = EmbeddedPostgres(tmp_path / "pg", port=free_port(), durable=False)
    server.start()
    try:
        yield server
    finally:
        server.stop()
