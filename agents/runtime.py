"""The producer runtime: seal, spool, send -- without ever holding up the host program.

:meth:`Agent.emit` signs an event with the producer's key, continues the
producer's hash chain, writes the envelope to the spool and returns the event
id.  That is all the caller's thread does (one signature, one ``write``); the
event survives the process being killed from then on.  A background thread
sends spooled events in order over the configured transport, acknowledges
them in the spool once delivered, fsyncs in groups, and retries with backoff
while the ledger is unreachable, for as long as the spool has room.

On start the chain position is the later of the saved position and the last
spooled event, so a crash between spooling and saving cannot fork the chain.
"""

from __future__ import annotations

import asyncio
import atexit
import getpass
import logging
import socket
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.chainfile import ChainFile
from ledger.client import ClientCredentials
from ledger.config import AgentSettings, Settings
from ledger.core.envelope import parse_envelope
from ledger.core.errors import KeyMaterialError, ProvaultError
from ledger.core.events import Producer, parse_event
from ledger.core.keys import Signer, load_private_key
from ledger.core.producing import ProducerChain
from ledger.stack import read_stack_file, resolve_nats_url
from ledger.transport import subject_token

from . import metrics as agent_metrics
from ._sender import Sender
from .spool import Spool, SpoolFull
from .transport import GrpcTransport, NatsTransport, Transport

log = logging.getLogger("provault.agent")


class AgentClosed(ProvaultError):
    reason = "agent_closed"


@dataclass
class AgentStats:
    emitted: int = 0
    sent: int = 0
    dropped: int = 0
    send_failures: int = 0
    set_aside: int = 0
    """Events the ledger refused in a way resending cannot change, kept in the spool's undeliverable.jsonl."""
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)


def default_producer_id() -> str:
    program = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else "python"
    return f"{getpass.getuser()}@{socket.gethostname()}/{program or 'python'}"


def recover_position(saved: Producer, spool: Spool) -> Producer:
    """The later of the saved chain position and the one after the last spooled event."""
    last = spool.last_record()
    if last is None:
        return saved
    env = parse_envelope(last.envelope)
    after = parse_event(env.payload).producer.next(env.payload)
    return after if after.seq > saved.seq else saved


class Agent:
    """One producer: identity, chain, spool and a sender thread."""

    def __init__(
        self,
        *,
        producer_id: str,
        signer: Signer,
        spool_dir: Path,
        state_dir: Path,
        transport: Transport,
        settings: AgentSettings | None = None,
    ) -> None:
        self.settings = settings or AgentSettings()
        self.producer_id = producer_id
        self.transport = transport
        self.stats = AgentStats()
        self._state = ChainFile(state_dir, producer_id)
        try:
            self.spool = Spool(spool_dir, max_bytes=self.settings.spool_max_bytes)
        except BaseException:
            self._state.close()
            raise
        for torn in self.spool.torn:
            log.warning(
                "spool %s: an incomplete last record in %s at byte %d was set aside as %s",
                spool_dir,
                torn.segment,
                torn.offset,
                torn.saved_as,
            )
        self._chain = ProducerChain(producer_id, signer, position=recover_position(self._state.load(), self.spool))
        self._lock = threading.Lock()
        self._closed = False
        self._described: set[str] = set()
        self._sender = Sender(
            producer_id=producer_id,
            spool=self.spool,
            transport=transport,
            stats=self.stats,
            acknowledge=self._acknowledge,
        )
        self._sender.start()
        agent_metrics.track(self)

    # --- the caller's side -------------------------------------------------------------

    def first_description(self, content_id: str) -> bool:
        """True the first time it is asked about ``content_id``: this agent's event is to describe it in full.

        Later events of this agent's chain name the content by its id; the
        description stays in the earlier event (the node's first mention),
        which the spool delivers before them.
        """
        with self._lock:
            if content_id in self._described:
                return False
            self._described.add(content_id)
            return True

    @property
    def position(self) -> Producer:
        return self._chain.position

    def emit(
        self, kind: str, prov: Mapping[str, Any], *, data: Mapping[str, Any] | None = None, time: datetime | None = None
    ) -> str:
        """Sign, chain and spool one event; return its id (durable against a process kill)."""
        deadline = _monotonic() + self.settings.publish_timeout_s
        while True:
            with self._lock:
                if self._closed:
                    raise AgentClosed(f"agent {self.producer_id} is closed; events can no longer be emitted")
                before = self._chain.position
                sealed = self._chain.emit(kind, prov, data=data, time=time)
                try:
                    self.spool.append(sealed.event_id, sealed.envelope)
                except (SpoolFull, OSError):
                    self._chain.position = before  # nothing was emitted: no gap in the chain
                    if self.settings.backpressure == "drop":
                        return self._dropped(kind)
                    if _monotonic() >= deadline:
                        raise
                else:
                    with self.stats.lock:
                        self.stats.emitted += 1
                    self._sender.wake.set()
                    return sealed.event_id
            self._sender.wake.set()
            self._sender.stop.wait(0.05)

    async def emit_async(self, kind: str, prov: Mapping[str, Any], *, data: Mapping[str, Any] | None = None) -> str:
        """:meth:`emit` for asyncio code (runs in a worker thread so the loop never waits on disk)."""
        return await asyncio.to_thread(self.emit, kind, prov, data=data)

    def _dropped(self, kind: str) -> str:
        with self.stats.lock:
            self.stats.dropped += 1
            n = self.stats.dropped
        if n == 1 or n % 1000 == 0:
            log.warning("agent %s: spool full, dropped %d event(s) so far (latest: %s)", self.producer_id, n, kind)
        return ""

    def pending(self) -> int:
        return self.spool.pending_count()

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every spooled event was delivered; False if ``timeout`` passed first."""
        deadline = None if timeout is None else _monotonic() + timeout
        self._sender.wake.set()
        while self.spool.pending_count():
            if deadline is not None and _monotonic() >= deadline:
                return False
            if not self._sender.thread.is_alive():
                return False
            time.sleep(0.02)
        return True

    async def flush_async(self, timeout: float | None = None) -> bool:
        return await asyncio.to_thread(self.flush, timeout)

    def close(self, timeout: float | None = None) -> bool:
        """Stop accepting events, try to deliver what is spooled, and release the spool.

        Undelivered events stay in the spool and are sent by the next agent
        with this producer id and spool.
        """
        with self._lock:
            if self._closed:
                return True
            self._closed = True
        agent_metrics.untrack(self)
        delivered = self.flush(self.settings.publish_timeout_s if timeout is None else timeout)
        self._sender.close(timeout=30)
        self._state.save(self._chain.position)
        self.spool.close()
        self._state.close()
        if not delivered:
            log.warning(
                "agent %s closed with %d event(s) still spooled in %s",
                self.producer_id,
                self.spool.pending_count(),
                self.spool.dir,
            )
        return delivered

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _acknowledge(self, upto: int) -> None:
        """The sender delivered (or set aside) the spool up to ``upto``: save the position, then acknowledge."""
        with self._lock:
            position = self._chain.position
        self._state.save(position)  # before spent segments are deleted
        self.spool.acknowledge(upto)


def _monotonic() -> float:
    return time.monotonic()


# --- building an agent from configuration -------------------------------------------------


def producer_key_path(settings: Settings) -> Path:
    if settings.agent.key_file:
        return Path(settings.agent.key_file).expanduser()
    return settings.data_dir / "keys" / "producer.key"


def load_producer_key(settings: Settings) -> Signer:
    path = producer_key_path(settings)
    if not path.exists():
        raise KeyMaterialError(
            f"producer key {path} does not exist",
            hint=f"create it with `provault keys new {path}` and register it with `provault keys register {path}.pub ...`",
        )
    return load_private_key(path)


def transport_from(settings: Settings, producer_id: str) -> Transport:
    a = settings.agent
    if a.transport == "grpc":
        target = a.ledger_target
        if not target:
            info = read_stack_file(settings.data_dir)
            target = str(info["ledger_grpc"]) if info and info.get("ledger_grpc") else settings.grpc.ledger_listen
        return GrpcTransport(
            target, timeout_s=a.publish_timeout_s, credentials=ClientCredentials.from_settings(settings.grpc)
        )
    # Resolved at each connect, not now: with no NATS configured and no `provault up` running, events spool
    # (and the transport's error says why) until the stack is up, as they do while NATS is down.
    url = settings.nats.url or (lambda: resolve_nats_url(settings))
    return NatsTransport(url, settings.nats, producer_id, timeout_s=a.publish_timeout_s)


def agent_from_settings(settings: Settings, *, producer_id: str | None = None, signer: Signer | None = None) -> Agent:
    pid = producer_id or settings.agent.producer_id or default_producer_id()
    spool_dir = (
        Path(settings.agent.spool_dir).expanduser()
        if settings.agent.spool_dir
        else settings.data_dir / "spool" / subject_token(pid)
    )
    agent_metrics.serve_if_configured(settings)  # a bad address fails before anything runs
    return Agent(
        producer_id=pid,
        signer=signer or load_producer_key(settings),
        spool_dir=spool_dir,
        state_dir=settings.data_dir / "producers",
        transport=transport_from(settings, pid),
        settings=settings.agent,
    )


_default: Agent | None = None
_default_lock = threading.Lock()


def default_agent(settings: Settings | None = None) -> Agent:
    """The process-wide agent, built once from configuration and closed at exit."""
    global _default
    with _default_lock:
        if _default is None:
            from ledger.config import load_settings  # noqa: PLC0415

            _default = agent_from_settings(settings or load_settings())
            atexit.register(_default.close)
        return _default
