"""Keeping ``provault up`` running through an embedded server's crash.

The embedded PostgreSQL and NATS are child processes; when one exits, the
:class:`Supervisor` says so, marks the gRPC services that depend on it
NOT_SERVING (grpc.health.v1), restarts it on the same port and data after a
backoff, and marks them SERVING again once it is back.  The in-process
services (ingest, checkpointer, projector, the gRPC servers) reconnect by
themselves; one of them stopping is a defect, not an outage, and stops the
stack as before.

:class:`RestartPolicy` is the pure part: the delay before each attempt and
when to give up (a server that cannot stay up for ``stable_after_s``
``max_attempts`` times in a row is broken, and the stack stops with the
server's log named rather than restart it forever).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ledger.core.errors import ProvaultError, ServerStartError


@dataclass(frozen=True, slots=True, kw_only=True)
class RestartPolicy:
    first_delay_s: float = 0.5
    max_delay_s: float = 30.0
    stable_after_s: float = 60.0
    """A server that ran this long since its last restart starts again from ``first_delay_s``."""
    max_attempts: int = 10
    """Restarts in a row (none of them stable) before the stack gives up."""

    def delay(self, attempt: int) -> float:
        """Seconds to wait before restart ``attempt`` (1, 2, ...): doubling from the first delay, capped."""
        return min(self.max_delay_s, self.first_delay_s * 2 ** max(0, attempt - 1))


class Child(Protocol):
    """An embedded server the stack started: EmbeddedPostgres, EmbeddedNats."""

    name: str
    log: Path

    def running(self) -> bool: ...

    def restart(self) -> str: ...


@dataclass(slots=True)
class _Watch:
    name: str
    child: Child
    attempts: int = 0
    """Restarts in a row without a stable run."""
    down: bool = False
    next_try: float = 0.0
    up_since: float = 0.0


@dataclass
class Supervisor:
    """One :meth:`check` per poll: restart what is down and due, keep health true, fail on what cannot be kept up."""

    children: Mapping[str, Child]
    services: Callable[[], Sequence[Any]]
    """The stack's services, the children among them; those with ``depends_on`` and ``set_serving`` get health."""
    policy: RestartPolicy = field(default_factory=RestartPolicy)
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = lambda line: print(f"provault: {line}", file=sys.stderr, flush=True)
    _watches: list[_Watch] = field(init=False)
    _not_serving: set[int] = field(default_factory=set, init=False)
    """The services (by id) reported NOT_SERVING; the others are SERVING, as servers start."""

    def __post_init__(self) -> None:
        now = self.clock()
        self._watches = [_Watch(name, child, up_since=now) for name, child in self.children.items()]

    @property
    def down(self) -> frozenset[str]:
        """The embedded servers down now."""
        return frozenset(w.name for w in self._watches if w.down)

    def check(self) -> None:
        now = self.clock()
        changed = False
        for w in self._watches:
            changed |= self._watch(w, now)
        if changed:
            self._report_health()
        children = {id(c) for c in self.children.values()}
        for svc in self.services():
            if id(svc) not in children and not svc.running():
                raise ServerStartError(f"{svc.name} stopped unexpectedly", hint=f"see its log: {svc.log}")

    def _watch(self, w: _Watch, now: float) -> bool:
        """Advance one server's state; True when it went down or came back."""
        if not w.down:
            if w.child.running():
                if w.attempts and now - w.up_since >= self.policy.stable_after_s:
                    w.attempts = 0
                return False
            w.down = True
            self._schedule(w, now, f"{w.child.name} stopped unexpectedly")
            return True
        if now < w.next_try:
            return False
        try:
            address = w.child.restart()
        except ProvaultError as e:
            self._schedule(w, now, f"{w.child.name} did not start again ({e.message})")
            return False
        w.down, w.up_since = False, now
        self.say(f"{w.child.name} is running again on {address}")
        return True

    def _schedule(self, w: _Watch, now: float, what: str) -> None:
        w.attempts += 1
        if w.attempts > self.policy.max_attempts:
            raise ServerStartError(
                f"{what}; giving up after {self.policy.max_attempts} restarts in a row, none of which "
                f"stayed up {self.policy.stable_after_s:g} s",
                hint=f"see its log: {w.child.log}",
            )
        delay = self.policy.delay(w.attempts)
        w.next_try = now + delay
        self.say(f"{what}; restarting it in {delay:g} s (attempt {w.attempts}; log: {w.child.log})")

    def _report_health(self) -> None:
        down = self.down
        for svc in self.services():
            needs = getattr(svc, "depends_on", None)
            if not needs or not hasattr(svc, "set_serving"):
                continue
            serving = not (needs & down)
            if serving == (id(svc) in self._not_serving):  # changed
                svc.set_serving(serving)
                (self._not_serving.discard if serving else self._not_serving.add)(id(svc))
