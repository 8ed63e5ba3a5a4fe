"""JetStream naming and stream limits, shared by agents and the ledger.

Every event travels on ``<subject_prefix>.<producer token>`` of the stream
``PROVAULT`` with ``Nats-Msg-Id`` = event id, so JetStream drops a re-publish
inside its duplicate window and the ledger drops any later one by event id.
Per-producer subjects let NATS permissions confine an agent to its own
subjects.

The stream is a work queue: a message leaves the stream only when the ledger
acknowledges it, which it does only after the transaction that recorded it
(as an entry or as a rejection) committed.  ``discard=new`` makes a full
stream refuse new messages (agents then spool locally) rather than drop old
ones that the ledger has not recorded yet.
"""

from __future__ import annotations

import logging
import re

from nats.js import api
from nats.js.client import JetStreamContext
from nats.js.errors import NotFoundError

from ledger.config import NatsSettings
from ledger.core.errors import ConfigError, TransportUnavailable

log = logging.getLogger("provault.transport")

CONSUMER = "provault-ledger"
WRONG_SUBJECT = "wrong_subject"
"""The rejection reason of an event that did not arrive on its own producer's subject."""
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def nats_servers(url: str) -> list[str]:
    """The server URLs in ``nats.url`` (a cluster is named as a comma-separated list)."""
    return [u.strip() for u in url.split(",") if u.strip()]


def subject_token(producer_id: str) -> str:
    """A NATS-safe, injective token for a producer id ('.', '*', '>' and the rest escaped)."""
    return _UNSAFE.sub(lambda m: "~" + m.group().encode().hex(), producer_id)


def subject_for(settings: NatsSettings, producer_id: str) -> str:
    return f"{settings.subject_prefix}.{subject_token(producer_id)}"


def stream_config(settings: NatsSettings) -> api.StreamConfig:
    return api.StreamConfig(
        name=settings.stream,
        subjects=[f"{settings.subject_prefix}.>"],
        retention=api.RetentionPolicy.WORK_QUEUE,
        storage=api.StorageType.FILE,
        discard=api.DiscardPolicy.NEW,
        max_msg_size=settings.max_msg_size,
        max_bytes=settings.max_bytes,
        duplicate_window=settings.duplicate_window_s,
        num_replicas=settings.replicas,
        deny_delete=True,
        deny_purge=True,
        # Explicit, so that ensure_stream puts back any limit someone changed (the ledger's NATS
        # user may update the stream): no age or count limit may drop an unrecorded event.
        max_age=0.0,
        max_msgs=-1,
        max_msgs_per_subject=-1,
        allow_rollup_hdrs=False,
        allow_direct=False,
        sealed=False,
    )


_FIXED = ("retention", "storage", "sealed")
_TUNABLE = (
    "subjects",
    "discard",
    "max_msg_size",
    "max_bytes",
    "duplicate_window",
    "num_replicas",
    "deny_delete",
    "deny_purge",
    "max_age",
    "max_msgs",
    "max_msgs_per_subject",
    "allow_rollup_hdrs",
    "allow_direct",
)


async def ensure_stream(js: JetStreamContext, settings: NatsSettings) -> api.StreamInfo:
    """Create the stream, or bring an existing one to the configured limits."""
    want = stream_config(settings)
    try:
        info = await js.stream_info(settings.stream)
    except NotFoundError:
        return await js.add_stream(want)
    have = info.config
    fixed = [f for f in _FIXED if getattr(have, f) != getattr(want, f)]
    if fixed:
        raise ConfigError(
            [f"stream {settings.stream}: {f} is {getattr(have, f)}, provault needs {getattr(want, f)}" for f in fixed],
            hint="these cannot change on a live stream; create it anew (after the ledger has drained it)",
        )
    changed = [f for f in _TUNABLE if getattr(have, f) != getattr(want, f)]
    if changed:
        log.warning(
            "stream %s: bringing %s back to the configured values (was %s)",
            settings.stream,
            ", ".join(changed),
            ", ".join(f"{f}={getattr(have, f)!r}" for f in changed),
        )
        return await js.update_stream(want)
    return info


def consumer_config(*, ack_wait_s: float, max_ack_pending: int) -> api.ConsumerConfig:
    return api.ConsumerConfig(
        durable_name=CONSUMER,
        ack_policy=api.AckPolicy.EXPLICIT,
        deliver_policy=api.DeliverPolicy.ALL,
        ack_wait=ack_wait_s,
        max_ack_pending=max_ack_pending,
        max_deliver=-1,
    )


def unavailable(url: str, e: BaseException) -> TransportUnavailable:
    return TransportUnavailable(
        f"NATS at {url} is not reachable: {type(e).__name__}",
        hint="is the server running? check PROVAULT_NATS_URL, or start `provault up`",
    )
