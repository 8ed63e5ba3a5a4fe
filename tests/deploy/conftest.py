"""Fixtures shared by the deploy tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .natskit import nats_users


@pytest.fixture(scope="module")
def users(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A ledger user and an agent user, made with the real `provault nats` CLI."""
    return nats_users(tmp_path_factory.mktemp("nats-users"))
