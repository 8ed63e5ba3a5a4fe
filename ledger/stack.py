"""The one-machine stack behind ``provault up``.

Starts embedded PostgreSQL and NATS JetStream under the data directory unless
an external DSN / URL is configured, records where everything listens in
``<data_dir>/stack.json`` (so other ``provault`` commands on this machine find
it), and stops everything it started, in reverse order, through the handles
that started it.

The embedded servers' ports are chosen once, at the first start, and kept in
``<data_dir>/ports.json``: a later ``provault up`` listens where the agents
and tools configured from the first one still point (``postgres.port`` /
``nats.port``, when set, win and are kept instead).
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
from ledger.embedded import EmbeddedNats, EmbeddedPostgres, port_free

STACK_FILE = "stack.json"
PORTS_FILE = "ports.json"


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
    services: tuple[tuple[str, str, str], ...] = ()
    """What the ``provault.stack`` contributions serve besides gRPC: (name, URL, what it is), printed by ``up``."""

    def to_json(self) -> dict[str, object]:
        return {
            "postgres_dsn": self.postgres_dsn,
            "nats_url": self.nats_url,
            "ledger_grpc": self.ledger_grpc,
            "query_grpc": self.query_grpc,
            "embedded": list(self.embedded),
            "services": {name: url for name, url, _ in self.services},
            "pid": os.getpid(),
            "started": time.time(),
        }


@dataclass
class Stack:
    """Running pieces of ``provault up``; ``stop()`` undoes ``start()``."""

    settings: Settings
    endpoints: Endpoints | None = None
    children: dict[str, EmbeddedPostgres | EmbeddedNats] = field(default_factory=dict)
    """The embedded servers this stack started, by dependency name ("postgres", "nats")."""
    _started: list[Service] = field(default_factory=list)

    def start(self) -> Endpoints:
        data = self.settings.data_dir
        data.mkdir(parents=True, exist_ok=True)
        saved = read_ports(data)
        try:
            dsn = self.settings.postgres.dsn
            if dsn is None:
                pg = EmbeddedPostgres(
                    data / "postgres", port=_port(data, "postgres", self.settings.postgres.port, saved)
                )
                dsn = pg.start()
                self._started.append(pg)
                self.children["postgres"] = pg
            url = self.settings.nats.url
            if url is None:
                nats = EmbeddedNats(data / "nats", port=_port(data, "nats", self.settings.nats.port, saved))
                url = nats.start()
                self._started.append(nats)
                self.children["nats"] = nats
        except BaseException:
            self.stop()
            raise
        if self.children:
            write_ports(data, {**saved, **{name: child.port for name, child in self.children.items()}})
        self.endpoints = Endpoints(postgres_dsn=dsn, nats_url=url, embedded=tuple(self.children))
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


def read_ports(data_dir: Path) -> dict[str, int]:
    """The embedded servers' ports saved at the first start ({} before it)."""
    path = data_dir / PORTS_FILE
    try:
        ports = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise ServerStartError(f"{path} cannot be read: {e}", hint="fix it, or delete it to pick new ports") from None
    if not isinstance(ports, dict) or not all(
        k in ("postgres", "nats") and isinstance(v, int) and 0 < v < 65536 for k, v in ports.items()
    ):
        raise ServerStartError(
            f'{path} is not {{"postgres": PORT, "nats": PORT}}: {json.dumps(ports)[:200]}',
            hint="fix it, or delete it to pick new ports",
        )
    return ports


def write_ports(data_dir: Path, ports: dict[str, int]) -> None:
    path = data_dir / PORTS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(ports, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _port(data_dir: Path, name: str, configured: int, saved: dict[str, int]) -> int:
    """The port to start ``name`` on: the configured one, else the saved one (checked free), else 0 (pick)."""
    if configured:
        return configured
    port = saved.get(name, 0)
    if port and not port_free(port):
        raise ServerStartError(
            f"{name} listens on 127.0.0.1:{port} in this data dir (kept in {data_dir / PORTS_FILE} since its "
            "first start), and another process is listening there now",
            hint=(
                f"stop that process (a server an earlier `provault up` left running? see {data_dir / name}), "
                f"or delete {data_dir / PORTS_FILE} to pick new ports and point agents at the new ones"
            ),
        )
    return port


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
