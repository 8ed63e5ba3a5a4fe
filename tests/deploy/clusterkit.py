"""A 3-node NATS JetStream cluster on loopback, and publishers that retry like an agent's spool."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nats
from nats.js.errors import Error as JetStreamError

from ledger.config import NatsSettings
from ledger.core.producing import Sealed
from ledger.embedded import EmbeddedNats, free_port
from ledger.transport import ensure_stream, subject_for

CLUSTER_NAME = "provault-test"
READY_TIMEOUT_S = 30.0
PUBLISH_TIMEOUT_S = 2.0
RETRY_PAUSE_S = 0.1


def start_cluster(root: Path, size: int = 3) -> list[EmbeddedNats]:
    """``size`` JetStream servers on 127.0.0.1, routed to each other, stores under ``root``."""
    route_ports = [free_port() for _ in range(size)]
    routes = [f"nats://127.0.0.1:{p}" for p in route_ports]
    nodes = [
        EmbeddedNats(
            root / f"n{i}",
            server_name=f"n{i}",
            cluster=(CLUSTER_NAME, route_ports[i], tuple(r for j, r in enumerate(routes) if j != i)),
        )
        for i in range(size)
    ]
    started: list[EmbeddedNats] = []
    try:
        for node in nodes:
            node.start()
            started.append(node)
    except BaseException:
        for node in started:
            node.stop()
        raise
    return nodes


async def _create_stream(urls: Sequence[str], settings: NatsSettings) -> str:
    """Create the stream once the cluster has a JetStream meta leader; return the stream leader's name."""
    nc = await nats.connect(list(urls), connect_timeout=2)
    try:
        js = nc.jetstream(timeout=0.5)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            try:
                info = await ensure_stream(js, settings)
                if info.cluster is not None and info.cluster.leader:
                    return info.cluster.leader
            except (TimeoutError, nats.errors.Error, JetStreamError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(RETRY_PAUSE_S)
    finally:
        await nc.close()


def create_stream(urls: Sequence[str], settings: NatsSettings) -> str:
    return asyncio.run(_create_stream(urls, settings))


@dataclass
class PublishStats:
    acked: int = 0
    failures: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    killed_at: int | None = None
    seconds: float = 0.0


async def _send_in_order(js, settings: NatsSettings, events: Sequence[Sealed], stats: PublishStats) -> None:
    """Publish one producer's events in order, each until JetStream acks it.

    A failed publish is retried with the same ``Nats-Msg-Id``, as an agent's
    spool resends an event it has no acknowledgement for: if the first try was
    stored after all, JetStream (inside its duplicate window) or the ledger (by
    event id) drops the copy.
    """
    for sealed in events:
        subject = subject_for(settings, sealed.event.producer.id)
        while True:
            try:
                await js.publish(
                    subject,
                    sealed.envelope,
                    timeout=PUBLISH_TIMEOUT_S,
                    stream=settings.stream,
                    headers={"Nats-Msg-Id": sealed.event_id},
                )
                break
            except (TimeoutError, nats.errors.Error, JetStreamError, OSError) as e:
                stats.failures += 1
                stats.errors[type(e).__name__] = stats.errors.get(type(e).__name__, 0) + 1
                await asyncio.sleep(RETRY_PAUSE_S)
        stats.acked += 1


async def _publish(
    urls: Sequence[str],
    settings: NatsSettings,
    streams: Sequence[Sequence[Sealed]],
    kill_after: int,
    kill: Callable[[], None],
) -> PublishStats:
    stats = PublishStats()

    async def quiet(e: Exception) -> None:
        pass

    started = time.monotonic()
    nc = await nats.connect(
        list(urls), connect_timeout=2, max_reconnect_attempts=-1, reconnect_time_wait=0.2, error_cb=quiet
    )
    try:
        js = nc.jetstream(timeout=PUBLISH_TIMEOUT_S)

        async def killer() -> None:
            while stats.acked < kill_after:
                await asyncio.sleep(0.005)
            stats.killed_at = stats.acked
            kill()

        await asyncio.gather(killer(), *(_send_in_order(js, settings, events, stats) for events in streams))
    finally:
        await nc.close()
    stats.seconds = time.monotonic() - started
    return stats


def publish_while_killing(
    urls: Sequence[str],
    settings: NatsSettings,
    streams: Sequence[Sequence[Sealed]],
    *,
    kill_after: int,
    kill: Callable[[], None],
) -> PublishStats:
    """Publish several producers' events concurrently; call ``kill`` once ``kill_after`` are acked."""
    return asyncio.run(_publish(urls, settings, streams, kill_after, kill))
