"""The one-machine stack behind ``provault up``.

Starts embedded PostgreSQL and NATS JetStream under the data directory unless
an external DSN / URL is configured, records where everything listens in
``<data_dir>/stack.json`` (so other ``provault`` commands on this machine find
it), and stops everything it started, in reverse order, through the handles
that started it.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from ledger.config import Settings
from ledger.core.errors import ServerStartError
from ledger.embedded import EmbeddedNats, EmbeddedPostgres

STACK_FILE = "stack.json"


class Service(Protocol):
    """Something the stack starts and stops (servers, ledger, projector...)."""

    name: str
    log: Path

    def running(self) -> bool: ...

    def stop(self) -> None: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class Endpoints:
    postgres_dsn: str
    nats_url: str
    ledger_grpc: str | None = None
    query_grpc: str | None = None
    embedded: tuple[str, ...] = ()
    """Which of postgres / nats this stack started itself."""

    def to_json(self) -> dict[str, object]:
        return {
            "postgres_dsn": self.postgres_dsn,
            "nats_url": self.nats_url,
            "ledger_grpc": self.ledger_grpc,
            "query_grpc": self.query_grpc,
            "embedded": list(self.embedded),
            "pid": os.getpid(),
            "started": time.time(),
        }


@dataclass
class Stack:
    """Running pieces of ``provault up``; ``stop()`` undoes ``start()``."""

    settings: Settings
    endpoints: Endpoints | None = None
    _started: list[Service] = field(default_factory=list)

    def start(self) -> Endpoints:
        data = self.settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        embedded: list[str] = []
        try:
            dsn = self.settings.postgres.dsn
            if dsn is None:
                pg = EmbeddedPostgres(data / "postgres", port=self.settings.postgres.port)
                dsn = pg.start()
                self._started.append(pg)
                embedded.append("postgres")
            url = self.settings.nats.url
            if url is None:
                nats = EmbeddedNats(data / "nats", port=self.settings.nats.port)
                url = nats.start()
                self._started.append(nats)
                embedded.append("nats")
        except BaseException:
            self.stop()
            raise
        self.endpoints = Endpoints(postgres_dsn=dsn, nats_url=url, embedded=tuple(embedded))
        write_stack_file(data, self.endpoints)
        return self.endpoints

    def add(self, service: Service) -> None:
        """Hand a started service to the stack so ``stop()`` stops it first."""
        self._started.append(service)

    def services(self) -> tuple[Service, ...]:
        return tuple(self._started)

    def stop(self) -> None:
        errors: list[str] = []
        while self._started:
            svc = self._started.pop()
            try:
                svc.stop()
            except Exception as e:
                errors.append(f"{type(svc).__name__}: {e}")
        remove_own_stack_file(self.settings.data_dir)
        if errors:
            raise ServerStartError("some services did not stop cleanly: " + "; ".join(errors))


def write_stack_file(data_dir: Path, endpoints: Endpoints) -> None:
    """Write where the stack listens; owner-only, since an external DSN may hold a password."""
    path = data_dir / STACK_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(json.dumps(endpoints.to_json(), indent=2) + "\n")
    os.replace(tmp, path)


def redact_dsn(dsn: str) -> str:
    """A DSN safe to print: any password replaced by '***'."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", re.sub(r"(password=)\S+", r"\1***", dsn))


def remove_own_stack_file(data_dir: Path) -> None:
    """Remove ``stack.json`` if this process wrote it (never another live stack's)."""
    path = data_dir / STACK_FILE
    try:
        owner = json.loads(path.read_text(encoding="utf-8")).get("pid")
    except (FileNotFoundError, ValueError, AttributeError):
        return
    if owner == os.getpid():
        path.unlink(missing_ok=True)


def read_stack_file(data_dir: Path) -> dict[str, object] | None:
    """The running stack's endpoints, or None when no live ``provault up`` owns the dir."""
    path = data_dir / STACK_FILE
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
        os.kill(int(info["pid"]), 0)
    except (FileNotFoundError, ValueError, KeyError, TypeError, ProcessLookupError, PermissionError):
        return None
    return info if isinstance(info, dict) else None


def resolve_postgres_dsn(settings: Settings) -> str:
    """The configured DSN, else the one of a running ``provault up``; else a clear error."""
    if settings.postgres.dsn:
        return settings.postgres.dsn
    info = read_stack_file(settings.data_dir)
    if info and isinstance(info.get("postgres_dsn"), str):
        return str(info["postgres_dsn"])
    raise ServerStartError(
        f"no PostgreSQL configured and no running `provault up` found in {settings.data_dir}",
        hint="start `provault up` (same --data-dir), or set PROVAULT_POSTGRES_DSN",
    )


def resolve_nats_url(settings: Settings) -> str:
    if settings.nats.url:
        return settings.nats.url
    info = read_stack_file(settings.data_dir)
    if info and isinstance(info.get("nats_url"), str):
        return str(info["nats_url"])
    raise ServerStartError(
        f"no NATS configured and no running `provault up` found in {settings.data_dir}",
        hint="start `provault up` (same --data-dir), or set PROVAULT_NATS_URL",
    )
