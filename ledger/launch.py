"""Starting the whole one-machine stack: what ``provault up`` and ``provault demo`` share.

Embedded PostgreSQL and NATS JetStream under the data directory (unless a DSN
/ URL is configured), migration and ``ledger init``, the ledger service
(ingest, checkpointer, LedgerService), then what the ``provault.stack`` entry
points contribute (the query side: the projector and QueryService), then
``stack.json`` saying where everything listens.  Every started piece is handed
to the :class:`~ledger.stack.Stack`, which stops them in reverse order; the
ledger service is stopped through ``LedgerRuntime.stop()``, which signs a
last checkpoint and closes the appender.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ledger import metrics, plugins
from ledger.bootstrap import initialise
from ledger.core.errors import ServerStartError
from ledger.service.runtime import LedgerRuntime
from ledger.stack import Endpoints, Stack, read_stack_file, write_stack_file


class LedgerService:
    """A started :class:`LedgerRuntime` as one stack service."""

    name = "ledger"
    log = Path("(stderr)")
    depends_on = frozenset({"postgres", "nats"})

    def __init__(self, runtime: LedgerRuntime) -> None:
        self.runtime = runtime

    def running(self) -> bool:
        return all(svc.running() for svc in self.runtime.services())

    def set_serving(self, serving: bool, *, cause: str = "embedded") -> None:
        if self.runtime.grpc is not None:
            self.runtime.grpc.set_serving(serving, cause=cause)

    def stop(self) -> None:
        self.runtime.stop()


def refuse_if_up(settings) -> None:
    """Refuse before starting anything when a live stack owns the data dir."""
    info = read_stack_file(settings.data_dir)
    if info is not None:
        raise ServerStartError(
            f"a provault stack (pid {info.get('pid')}) is already running on {settings.data_dir}",
            hint="stop that `provault up` (Ctrl-C) first, or use another --data-dir",
        )


def start_stack(stack: Stack) -> tuple[Endpoints, list[str]]:
    """Start everything; every started piece is in ``stack`` (stop it even on error)."""
    settings = stack.settings
    endpoints = stack.start()
    changes = initialise(settings, endpoints.postgres_dsn, [])
    runtime = LedgerRuntime(settings, dsn=endpoints.postgres_dsn, nats_url=endpoints.nats_url)
    runtime.start()  # stops what it started when it fails
    stack.add(LedgerService(runtime))
    endpoints = dataclasses.replace(endpoints, ledger_grpc=runtime.grpc_address)
    for start in plugins.contributions(plugins.STACK):
        endpoints = start(stack, endpoints)
    exporter = metrics.server_for(settings, "ledger_listen")
    if exporter is not None:
        exporter.start()
        stack.add(exporter)
        endpoints = dataclasses.replace(
            endpoints,
            services=(*endpoints.services, ("metrics", exporter.url, "Prometheus metrics of the whole stack")),
        )
    write_stack_file(settings.data_dir, endpoints)
    return endpoints, changes
