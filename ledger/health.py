"""Health that follows the servers a process needs: PostgreSQL for both gRPC servers, NATS for the ledger.

A :class:`DependencyProbe` checks each dependency every ``interval_s``; while
one fails, the gRPC services that need it report NOT_SERVING (cause
``"dependencies"``; the supervisor of ``provault up`` reports under its own
cause, and a service serves only while no cause holds it down),
``provault_dependency_up`` is 0, and the log says so once; when the check
passes again, everything goes back by itself.

The checks are plain callables that raise (or return a reason) on failure:
:class:`PostgresCheck` keeps one connection whose every probe is bounded by
libpq's connect and TCP user timeouts, so an unplugged network cannot hang
it; the ledger's NATS check reads its ingest connection's state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import psycopg

from ledger import metrics
from ledger.background import BackgroundService
from ledger.db import describe

logger = logging.getLogger("provault.health")

CAUSE = "dependencies"

Check = Callable[[], str | None]
"""None while healthy; otherwise why not (or it raises)."""


class Servable(Protocol):
    """A gRPC service, or a stack service around one; ``depends_on`` (optional) names the checks it needs."""

    def set_serving(self, serving: bool, *, cause: str = ...) -> None: ...


class PostgresCheck:
    """``SELECT 1`` on a kept connection, reconnecting after a failure; every step bounded by ``timeout_s``."""

    def __init__(self, dsn: str, *, timeout_s: float) -> None:
        self.dsn = dsn
        self.timeout_s = timeout_s
        self._conn: psycopg.Connection | None = None

    def __call__(self) -> str | None:
        timeout_ms = max(1, int(self.timeout_s * 1000))
        try:
            if self._conn is None or self._conn.closed or self._conn.broken:
                self._conn = psycopg.connect(
                    self.dsn,
                    autocommit=True,
                    connect_timeout=max(1, round(self.timeout_s)),
                    tcp_user_timeout=timeout_ms,
                    options=f"-c statement_timeout={timeout_ms}",
                    application_name="provault-health",
                )
            self._conn.execute("SELECT 1").fetchone()
            return None
        except psycopg.Error as e:
            self.close()
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            return f"PostgreSQL at {describe(self.dsn)}: {first}"

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


class DependencyProbe(BackgroundService):
    """Checks ``checks`` every ``interval_s`` and turns ``targets``' health with them.

    A target serves while none of the checks it ``depends_on`` fails (all of them, if it names none).
    """

    name = "health"

    def __init__(
        self,
        checks: Mapping[str, Check],
        targets: Callable[[], Sequence[Servable]],
        *,
        interval_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.checks = dict(checks)
        self.targets = targets
        self.interval_s = interval_s
        self.failing: dict[str, str] = {}
        """Dependency -> why it is unreachable, for those that are now."""
        self._reported: dict[int, bool] = {}
        """What each target (by id) was last told."""

    def probe(self) -> None:
        """One round: run every check, update the gauges, the log and the targets' health."""
        for name, check in self.checks.items():
            try:
                problem = check()
            except Exception as e:  # a check that raises is a failing check, never a dead probe
                problem = f"{type(e).__name__}: {e}"
            was = self.failing.get(name)
            if problem is None:
                if was is not None:
                    logger.info("%s is reachable again", name, extra={"dependency": name})
                    del self.failing[name]
            elif was is None:
                logger.warning("%s is unreachable: %s", name, problem, extra={"dependency": name})
                self.failing[name] = problem
            metrics.DEPENDENCY_UP.labels(name).set(0 if problem else 1)
        failing = frozenset(self.failing)
        for target in self.targets():
            needs = getattr(target, "depends_on", None) or frozenset(self.checks)
            serving = not (needs & failing)
            if self._reported.get(id(target)) != serving:
                target.set_serving(serving, cause=CAUSE)
                self._reported[id(target)] = serving

    def _main(self) -> None:
        self.probe()
        while not self._stop.wait(self.interval_s):
            self.probe()
        for check in self.checks.values():
            close = getattr(check, "close", None)
            if close is not None:
                close()


def probe_for(settings, checks: Mapping[str, Check], targets: Callable[[], Sequence[Servable]]) -> DependencyProbe:
    """A probe at the ``[health]`` settings' interval, not started."""
    return DependencyProbe(checks, targets, interval_s=settings.health.probe_interval_s)
