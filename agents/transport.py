"""How an agent's spooled events reach the ledger: JetStream, or gRPC where NATS is not allowed.

Both take a batch of (event id, envelope) in spool order and return how many
from the front were delivered; the sender acknowledges exactly those in the
spool.  A transport raises :class:`~ledger.core.errors.TransportUnavailable`
when it cannot deliver at all, or any other error when the ledger refused the
call (a bad credential, say): the events stay spooled and are retried with
backoff.  It raises :class:`Undeliverable` only when the request itself is
refused, so resending the same batch can never succeed; the sender then
narrows the batch down to the one event and sets it aside.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Protocol

import grpc
import nats
import nats.errors
import nats.js.errors

from ledger.client import ClientCredentials, LedgerClient, RemoteError
from ledger.config import NatsSettings
from ledger.core.errors import ProvaultError, TransportUnavailable
from ledger.natsauth import connect_options, is_refusal
from ledger.transport import nats_servers, subject_for

from .spool import Record

log = logging.getLogger("provault.agent")

# gRPC statuses that refuse the request itself: the same batch will never be accepted.
PERMANENT_CODES = frozenset(
    {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE, grpc.StatusCode.RESOURCE_EXHAUSTED}
)


class Undeliverable(ProvaultError):
    """The ledger refused the batch in a way resending it cannot change (the request itself is wrong)."""

    reason = "undeliverable"


class Transport(Protocol):
    name: str

    async def send(self, records: Sequence[Record]) -> int: ...

    async def close(self) -> None: ...


class NatsTransport:
    """Publish to JetStream with ``Nats-Msg-Id`` = event id and wait for the stream's acks.

    With ``nats.nkey_seed_file`` the agent connects as its own NATS user
    (ledger/natsauth.py), which may publish only on its producers' subjects.
    NATS reports a refused publish asynchronously and the acknowledgement then
    never comes: the refusal is kept and named in the TransportUnavailable
    raised for the timed-out batch, so a misconfigured agent says why.
    """

    name = "nats"

    def __init__(
        self, url: str | Callable[[], str], settings: NatsSettings, producer_id: str, *, timeout_s: float
    ) -> None:
        self._locate = url if callable(url) else lambda: url
        """Where NATS is, asked at every connect: an agent started before ``provault up`` spools until it runs."""
        self.url: str | None = None if callable(url) else url
        self.subject = subject_for(settings, producer_id)
        self.stream = settings.stream
        self.timeout_s = timeout_s
        self.connect_options = connect_options(settings)  # a bad seed file or CA is a ConfigError here, at start
        self.refusal: str | None = None
        """The last permissions / authorization error NATS sent this client."""
        self._nc: nats.NATS | None = None

    async def _connect(self) -> nats.NATS:
        if self._nc is not None and self._nc.is_connected:
            return self._nc
        if self._nc is not None:
            await self._drop()

        async def note(e: Exception) -> None:
            if is_refusal(e):
                self.refusal = str(e)
                log.error("NATS refused this agent: %s", e)
            else:
                log.debug("NATS connection problem: %s", e)

        try:
            self.url = self._locate()
        except ProvaultError as e:
            raise TransportUnavailable(e.message, hint=e.hint) from None
        try:
            self._nc = await asyncio.wait_for(
                nats.connect(
                    servers=nats_servers(self.url),
                    connect_timeout=self.timeout_s,
                    max_reconnect_attempts=0,
                    allow_reconnect=False,
                    name="provault-agent",
                    error_cb=note,
                    **self.connect_options,
                ),
                timeout=self.timeout_s,
            )
        except (TimeoutError, OSError, nats.errors.Error) as e:
            if is_refusal(e):
                raise TransportUnavailable(
                    f"NATS at {self.url} refused this agent's credentials ({e})",
                    hint="check nats.nkey_seed_file and that its user is in the servers' authorization block (`provault nats server-config`)",
                ) from None
            raise TransportUnavailable(f"NATS at {self.url} is not reachable ({type(e).__name__})") from None
        return self._nc

    async def send(self, records: Sequence[Record]) -> int:
        nc = await self._connect()
        too_big = next((i for i, r in enumerate(records) if len(r.envelope) > nc.max_payload), None)
        if too_big == 0:
            r = records[0]
            raise Undeliverable(
                f"event {r.event_id} is {len(r.envelope)} bytes, above the {nc.max_payload}-byte message limit of "
                f"NATS at {self.url}",
                hint="raise max_payload on the NATS servers, or send smaller events",
            )
        records = records[:too_big]  # the ones before an event too large to publish
        js = nc.jetstream(publish_async_max_pending=max(len(records), 1))
        futures = []
        try:
            for r in records:
                futures.append(
                    await js.publish_async(
                        self.subject, r.envelope, stream=self.stream, headers={"Nats-Msg-Id": r.event_id}
                    )
                )
            done = 0
            for f in futures:
                await asyncio.wait_for(f, timeout=self.timeout_s)
                done += 1
            return done
        except (TimeoutError, nats.errors.Error, nats.js.errors.Error, OSError) as e:
            await self._drop()
            delivered = sum(1 for _ in _prefix_done(futures))
            for f in futures:  # collect the outcomes we will not use, so none is reported as lost
                if not f.done():
                    f.cancel()
            await asyncio.gather(*futures, return_exceptions=True)
            if delivered:
                return delivered
            if self.refusal is not None:
                refusal, self.refusal = self.refusal, None
                raise TransportUnavailable(
                    f"NATS at {self.url} refused to let this agent publish on {self.subject} ({refusal})",
                    hint=f"the agent's NATS user must be created for this producer: `provault nats user add NAME --role agent --producer ID` "
                    f"publishes on {self.subject} only",
                ) from None
            raise TransportUnavailable(
                f"publishing to JetStream at {self.url} failed ({type(e).__name__}: {e})"
            ) from None

    async def _drop(self) -> None:
        nc, self._nc = self._nc, None
        if nc is not None:
            try:
                await nc.close()
            except Exception:
                pass

    async def close(self) -> None:
        await self._drop()


def _prefix_done(futures: list) -> list:
    """The leading futures that completed with an ack (in order)."""
    out = []
    for f in futures:
        if not f.done() or f.cancelled() or f.exception() is not None:
            break
        out.append(f)
    return out


class GrpcTransport:
    """Append over LedgerService for hosts where NATS is not allowed.

    ``credentials`` (a producer token or client certificate, usually
    ``ClientCredentials.from_settings(settings.grpc)``) are needed unless the
    ledger runs in dev mode.
    """

    name = "grpc"

    def __init__(self, target: str, *, timeout_s: float, credentials: ClientCredentials | None = None) -> None:
        self.target = target
        self._client = LedgerClient.with_credentials(target, credentials or ClientCredentials(), timeout_s=timeout_s)
        self.rejected: list[tuple[str, str, str]] = []

    async def send(self, records: Sequence[Record]) -> int:
        try:
            outcomes = await asyncio.to_thread(self._client.append_many, [r.envelope for r in records])
        except RemoteError as e:
            if e.code in PERMANENT_CODES:
                raise Undeliverable(f"ledger at {self.target} refused the request: {e.message}") from None
            raise
        for r, o in zip(records, outcomes, strict=True):
            if o.status == "rejected":
                # The ledger recorded it in its rejections table; resending cannot help.
                self.rejected.append((r.event_id, o.reason, o.message))
                log.error("ledger refused event %s [%s]: %s", r.event_id, o.reason, o.message)
        return len(outcomes)

    async def close(self) -> None:
        self._client.close()
