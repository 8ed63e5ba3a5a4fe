"""Publishing signed events to a test JetStream, and waiting for the ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence

import nats

from ledger.config import NatsSettings
from ledger.core.producing import Sealed
from ledger.transport import ensure_stream, subject_for


async def _publish(url: str, settings: NatsSettings, items: Sequence[tuple[str, bytes, str]]) -> None:
    nc = await nats.connect(url, connect_timeout=5)
    try:
        js = nc.jetstream()
        await ensure_stream(js, settings)
        for producer_id, data, msg_id in items:
            await js.publish_async(subject_for(settings, producer_id), data, headers={"Nats-Msg-Id": msg_id})
        await js.publish_async_completed()
    finally:
        await nc.close()


def publish(
    url: str, settings: NatsSettings, events: Sequence[Sealed], *, msg_ids: Sequence[str] | None = None
) -> None:
    ids = msg_ids or [e.event_id for e in events]
    asyncio.run(
        _publish(url, settings, [(e.event.producer.id, e.envelope, i) for e, i in zip(events, ids, strict=True)])
    )


def publish_raw(url: str, settings: NatsSettings, payloads: Sequence[bytes], *, producer_id: str = "raw") -> None:
    asyncio.run(
        _publish(url, settings, [(producer_id, p, f"raw-{i}-{time.time_ns()}") for i, p in enumerate(payloads)])
    )


def wait_for(condition: Callable[[], bool], *, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
