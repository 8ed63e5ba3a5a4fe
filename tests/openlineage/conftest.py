"""A real one-machine stack with its OpenLineage endpoint (embedded PostgreSQL and NATS), shared by a module's tests."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ledger.config import (
    ExplorerSettings,
    GrpcSettings,
    MetricsSettings,
    OpenLineageSettings,
    Settings,
    SigningSettings,
)
from ledger.db import connect
from ledger.launch import start_stack
from ledger.stack import Endpoints, Stack


@dataclass
class OlStack:
    settings: Settings
    endpoints: Endpoints
    stack: Stack

    @property
    def url(self) -> str:
        return dict((n, u) for n, u, _ in self.endpoints.services)["openlineage"]

    @property
    def dsn(self) -> str:
        return self.endpoints.postgres_dsn

    def entries(self, kind_prefix: str = "openlineage.") -> list[dict[str, Any]]:
        """The log's entries of these kinds: seq, kind and the sealed event's data."""
        with connect(self.dsn, autocommit=True) as conn:
            rows = conn.execute(
                "SELECT seq, kind, payload, envelope FROM ledger.entries WHERE kind LIKE %s ORDER BY seq",
                (kind_prefix + "%",),
            ).fetchall()
        out = []
        for seq, kind, payload, envelope in rows:
            raw = bytes(payload) if payload is not None else base64.b64decode(json.loads(bytes(envelope))["payload"])
            out.append({"seq": seq, "kind": kind, "event": json.loads(raw)})
        return out

    def projected(self, seq: int, timeout: float = 20.0) -> None:
        wait_until(lambda: self._position() >= seq, timeout, f"the projection to reach seq {seq}")

    def _position(self) -> int:
        with connect(self.dsn, autocommit=True) as conn:
            row = conn.execute("SELECT last_seq FROM prov.position").fetchone()
        return -1 if row is None or row[0] is None else row[0]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def post(url: str, data: bytes, *, headers: dict[str, str] | None = None, context=None) -> tuple[int, dict, Any]:
    """POST ``data``; (status, headers, decoded JSON body)."""
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(request, timeout=30, context=context) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


def stack_settings(data_dir: Path) -> Settings:
    return Settings(
        data_dir=data_dir,
        dev_mode=True,
        grpc=GrpcSettings(ledger_listen="127.0.0.1:0", query_listen="127.0.0.1:0"),
        openlineage=OpenLineageSettings(listen="127.0.0.1:0"),
        metrics=MetricsSettings(ledger_listen="127.0.0.1:0"),
        explorer=ExplorerSettings(listen="127.0.0.1:0"),
        signing=SigningSettings(checkpoint_interval_s=0.2),
    )


@pytest.fixture(scope="module")
def ol_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OlStack]:
    settings = stack_settings(tmp_path_factory.mktemp("olstack") / "data")
    stack = Stack(settings)
    try:
        endpoints, _ = start_stack(stack)
        yield OlStack(settings, endpoints, stack)
    finally:
        stack.stop()


def wait_delivered(ol: OlStack, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The log's OpenLineage entries, once there are ``count`` of them."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = ol.entries()
        return len(found) >= count

    wait_until(enough, timeout, f"{count} OpenLineage entries in the log")
    return found
