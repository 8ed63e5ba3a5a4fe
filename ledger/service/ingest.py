"""JetStream ingest: fetch, verify in parallel, append in one transaction, then ack.

Per batch, in this order:

1. fetch up to ``batch_size`` messages from the durable pull consumer;
2. check them (parse, signature, event contract) on worker processes with a
   snapshot of the public keys;
3. plan and write the batch in one PostgreSQL transaction (entries, Merkle
   nodes, rejections, producer chains, key changes) and commit;
4. only then acknowledge every message of the batch.

A checked event must have arrived on its producer's own subject
(``<subject_prefix>.<producer token>``): NATS permissions confine each agent
user to the subjects of its producer ids (ledger/natsauth.py), so an event
signed for one producer but published by another's agent is refused as
``wrong_subject``.

A crash before 3 commits loses nothing (JetStream redelivers); a crash between
3 and 4 duplicates nothing (the redelivered events are already in the log by
event id, and rejections are unique by stream sequence).  Stage 2 of the next
batch overlaps stage 3 of the current one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import nats
from nats.errors import TimeoutError as NatsTimeout
from nats.js.errors import FetchTimeoutError, NotFoundError

from ledger import metrics
from ledger.config import Settings
from ledger.core.admission import Checked, Limits, Refused, check_submission
from ledger.core.errors import ProvaultError, ServerStartError, StorageUnavailable, TransportUnavailable, UnknownKey
from ledger.natsauth import connect_options, is_refusal
from ledger.transport import CONSUMER, WRONG_SUBJECT, consumer_config, ensure_stream, nats_servers, subject_for

from . import failpoints
from .appender import Appender

log = logging.getLogger("provault.ingest")

CONNECT_TIMEOUT_S = 15.0
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0


async def fresh_consumer(js, stream: str) -> None:
    """Start from the oldest unacknowledged message, in stream order.

    After a crash JetStream would redeliver the unacknowledged messages of the
    old consumer only when their ack wait expires, while new ones flow at once,
    so a producer's later events could be committed before its earlier ones.
    The stream is a work queue (acknowledged messages are gone), so a new
    consumer simply starts at the first message not yet recorded.  One ingest
    per stream (one sequencer per log) is the deployment rule that makes this
    safe.
    """
    try:
        await js.delete_consumer(stream, CONSUMER)
    except NotFoundError:
        pass


def _die_with_parent() -> None:
    """Worker initialiser: on Linux, ask the kernel to kill us if the ledger process dies.

    Without it a crashed (SIGKILLed) ledger leaves its verification workers behind.
    """
    try:
        import ctypes  # noqa: PLC0415
        import signal  # noqa: PLC0415

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: workers exit when their pipe closes
        pass


def check_chunk(
    raws: Sequence[bytes], public_keys: dict[str, bytes], now: datetime, limits: Limits
) -> list[Checked | Refused]:
    """Worker-process entry point: stateless checks of a chunk of messages."""
    return [check_submission(r, public_keys, now=now, limits=limits) for r in raws]


def limits_from(settings: Settings) -> Limits:
    from datetime import timedelta  # noqa: PLC0415

    return Limits(
        max_envelope_bytes=settings.nats.max_msg_size,
        max_payload_bytes=settings.ingest.max_payload_bytes,
        max_clock_skew=timedelta(seconds=settings.ingest.max_clock_skew_s),
    )


@dataclass
class IngestStats:
    batches: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    retries: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, accepted: int, duplicates: int, rejected: int) -> None:
        with self.lock:
            self.batches += 1
            self.accepted += accepted
            self.duplicates += duplicates
            self.rejected += rejected


async def _put(queue: asyncio.Queue, item: object, consumer: asyncio.Task) -> bool:
    """Put ``item`` unless the consumer has ended (then a full queue would block forever)."""
    while True:
        try:
            queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            if consumer.done():
                return False
            await asyncio.sleep(0.01)


async def _close(queue: asyncio.Queue, consumer: asyncio.Task | None) -> None:
    """Send the end-of-stream marker unless the consumer already ended (a full queue must not hang us)."""
    while True:
        try:
            queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            if consumer is None or consumer.done():
                return
            await asyncio.sleep(0.01)


class JetStreamIngest:
    """The ingest loop; run it with :meth:`run` inside an event loop."""

    def __init__(self, settings: Settings, appender: Appender, nats_url: str, *, workers: int | None = None) -> None:
        self.settings = settings
        self.appender = appender
        self.url = nats_url
        self.limits = limits_from(settings)
        n = settings.ingest.workers if workers is None else workers
        self.workers = n or (os.cpu_count() or 1)
        self.stats = IngestStats()
        self.ready = threading.Event()
        self.connect_options = connect_options(settings.nats)  # a bad seed file or CA fails here, before any thread
        self.refusal: str | None = None
        """The last authorization / permissions error NATS sent the ledger's connection."""
        self.subscription = None
        """The pull subscription on the stream, once running."""
        self.connection = None
        """The NATS connection, once connected (it reconnects by itself)."""

    def nats_connected(self) -> bool:
        """Whether the ledger's NATS connection is up now (read by the health probe)."""
        nc = self.connection
        return nc is not None and nc.is_connected

    async def run(self, stop: asyncio.Event) -> None:
        with ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_die_with_parent) as pool:
            nc = self.connection = await self._connect()
            try:
                sub = self.subscription = await self._subscribe(nc)
                self.ready.set()
                await self._pipeline(sub, pool, stop)
            finally:
                await self._close(nc)

    async def _subscribe(self, nc):
        """The stream as configured, a fresh durable consumer, and its pull subscription."""
        js = nc.jetstream()
        try:
            await ensure_stream(js, self.settings.nats)
            await fresh_consumer(js, self.settings.nats.stream)
            return await js.pull_subscribe(
                f"{self.settings.nats.subject_prefix}.>",
                durable=CONSUMER,
                stream=self.settings.nats.stream,
                config=consumer_config(
                    ack_wait_s=self.settings.ingest.ack_wait_s, max_ack_pending=self.settings.ingest.batch_size * 4
                ),
            )
        except (TimeoutError, nats.errors.Error) as e:
            if self.refusal is None:
                raise
            raise TransportUnavailable(
                f"NATS at {self.url} refused the ledger's requests ({self.refusal}); the ledger cannot ingest",
                hint="nats.nkey_seed_file must be the seed of a user with the ledger role for this stream "
                f"(`provault nats user add NAME --role ledger`, nats.stream = {self.settings.nats.stream})",
            ) from e

    async def _connect(self):
        """Connect once within CONNECT_TIMEOUT_S (a clear error), then reconnect forever."""

        async def quiet(e: Exception) -> None:
            if is_refusal(e):
                self.refusal = str(e)
            log.warning("NATS connection problem: %s", str(e) or type(e).__name__)

        try:
            return await asyncio.wait_for(
                nats.connect(
                    servers=nats_servers(self.url),
                    name="provault-ledger",
                    max_reconnect_attempts=-1,
                    reconnect_time_wait=0.5,
                    connect_timeout=2,
                    allow_reconnect=True,
                    error_cb=quiet,
                    **self.connect_options,
                ),
                timeout=CONNECT_TIMEOUT_S,
            )
        except (TimeoutError, OSError, nats.errors.Error) as e:
            if is_refusal(e) or self.refusal:
                raise TransportUnavailable(
                    f"NATS at {self.url} refused the ledger's credentials ({self.refusal or e}); the ledger cannot ingest",
                    hint="check nats.nkey_seed_file, and that its user is in the servers' authorization block "
                    "(`provault nats server-config`, then reload NATS)",
                ) from None
            raise TransportUnavailable(
                f"NATS at {self.url} is not reachable ({type(e).__name__}); the ledger cannot ingest",
                hint="start NATS (or `provault up`), or fix nats.url",
            ) from None

    @staticmethod
    async def _close(nc) -> None:
        """Flush the acks already sent, then close (a drain would wait for the pull subscription)."""
        if nc.is_connected:
            try:
                await nc.flush(timeout=5)
            except (TimeoutError, nats.errors.Error) as e:
                log.warning("could not flush acknowledgements before closing: %s", e)
        await nc.close()

    async def _pipeline(self, sub, pool: ProcessPoolExecutor, stop: asyncio.Event) -> None:
        """Three stages joined by small queues: fetch -> check -> write and ack.

        Fetching the next batch, checking another and committing a third
        overlap; order is kept because each stage handles batches in turn.
        """
        fetched: asyncio.Queue = asyncio.Queue(maxsize=2)
        checked: asyncio.Queue = asyncio.Queue(maxsize=2)
        writer = asyncio.create_task(self._write_loop(checked, stop))
        checker = asyncio.create_task(self._check_loop(pool, fetched, checked, writer))
        try:
            while not stop.is_set() and not writer.done() and not checker.done():
                msgs = await self._fetch(sub)
                if msgs and not await _put(fetched, msgs, checker):
                    break
        finally:
            await _close(fetched, checker)
            await checker
            await writer

    async def _check_loop(
        self, pool: ProcessPoolExecutor, inbox: asyncio.Queue, outbox: asyncio.Queue, writer: asyncio.Task
    ) -> None:
        try:
            while (msgs := await inbox.get()) is not None:
                checked = self.bind_subjects([m.subject for m in msgs], await self._check(pool, [m.data for m in msgs]))
                if not await _put(outbox, (msgs, checked), writer):
                    return  # the writer ended (stopping): unacknowledged batches are redelivered
        finally:
            await _close(outbox, writer)

    async def _fetch(self, sub) -> list:
        try:
            msgs = await sub.fetch(self.settings.ingest.batch_size, timeout=self.settings.ingest.fetch_timeout_s)
        except (TimeoutError, FetchTimeoutError, NatsTimeout):
            metrics.INGEST_BACKLOG.set(0)
            return []
        except nats.errors.Error as e:
            log.warning("fetch from JetStream failed: %s; retrying", e)
            await asyncio.sleep(RETRY_MIN_S)
            return []
        if msgs:
            metrics.INGEST_BACKLOG.set(msgs[-1].metadata.num_pending)
        return self.from_stream(msgs)

    def from_stream(self, msgs: list) -> list:
        """Only the messages JetStream delivered from the stream.

        Anyone may publish with a reply subject of their choosing, and JetStream
        then sends its publish acknowledgement there: aimed at the ledger's
        inbox, it arrives among the fetched messages. Those have no
        ``$JS.ACK.<stream>.<consumer>.`` reply; they are dropped (and cannot be
        acknowledged), never checked or recorded.
        """
        ack_prefix = f"$JS.ACK.{self.settings.nats.stream}.{CONSUMER}."
        subject_prefix = f"{self.settings.nats.subject_prefix}."
        genuine, stray = [], []
        for m in msgs:
            (
                genuine if (m.reply or "").startswith(ack_prefix) and m.subject.startswith(subject_prefix) else stray
            ).append(m)
        if stray:
            log.warning(
                "dropped %d message(s) on the ledger's inbox that did not come from the stream (subject %r, %d bytes): "
                "someone published with the ledger's inbox as reply subject",
                len(stray),
                stray[0].subject[:120],
                len(stray[0].data),
            )
        return genuine

    async def _check(self, pool: ProcessPoolExecutor, raws: list[bytes]) -> list[Checked | Refused]:
        loop = asyncio.get_running_loop()
        keys = await asyncio.to_thread(self._public_keys_with_retry)
        now = datetime.now(UTC)
        size = -(-len(raws) // self.workers)
        chunks = [raws[i : i + size] for i in range(0, len(raws), size)]
        parts = await asyncio.gather(
            *(loop.run_in_executor(pool, check_chunk, c, keys, now, self.limits) for c in chunks)
        )
        return [item for part in parts for item in part]

    def bind_subjects(self, subjects: Sequence[str], items: list[Checked | Refused]) -> list[Checked | Refused]:
        """Refuse an event that did not arrive on its own producer's subject.

        Checked events, and those refused only for an unknown key: stage 2
        checks those again once a key registered earlier in the same batch is
        known, and would otherwise admit them unbound.
        """
        out: list[Checked | Refused] = []
        for subject, it in zip(subjects, items, strict=True):
            if isinstance(it, Checked):
                pid, keyid, event_id = it.event.producer.id, it.keyid, it.event_id
            elif it.reason == UnknownKey.reason and it.producer_id is not None:
                pid, keyid, event_id = it.producer_id, it.keyid, it.event_id
            else:
                out.append(it)
                continue
            if subject != (want := subject_for(self.settings.nats, pid)):
                it = Refused(
                    raw=it.raw,
                    reason=WRONG_SUBJECT,
                    event_id=event_id,
                    keyid=keyid,
                    producer_id=pid,
                    message=f"an event of producer {pid!r} arrived on subject {subject!r}; "
                    f"it must be published on its producer's subject {want!r}",
                )
            out.append(it)
        return out

    def _public_keys_with_retry(self) -> dict[str, bytes]:
        delay = RETRY_MIN_S
        while True:
            try:
                return self.appender.public_keys()
            except StorageUnavailable as e:
                self._note_retry(e, delay)
                threading.Event().wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    async def _write_loop(self, queue: asyncio.Queue, stop: asyncio.Event) -> None:
        while (job := await queue.get()) is not None:
            msgs, checked = job
            seqs = [m.metadata.sequence.stream for m in msgs]
            plan = await self._append_with_retry(checked, seqs, stop)
            if plan is None:
                return  # stopping before the batch committed: JetStream redelivers it
            failpoints.hit("ingest.after_commit")
            for m in msgs:
                await m.ack()
            failpoints.hit("ingest.after_ack")
            self.stats.add(len(plan.accepted), len(plan.duplicates), len(plan.refused))

    async def _append_with_retry(self, checked, seqs, stop: asyncio.Event):
        delay = RETRY_MIN_S
        while not stop.is_set():
            failpoints.hit("ingest.before_commit")
            try:
                return await asyncio.to_thread(self.appender.append_checked, checked, source="nats", stream_seqs=seqs)
            except StorageUnavailable as e:
                self._note_retry(e, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        return None

    def _note_retry(self, e: ProvaultError, delay: float) -> None:
        self.stats.retries += 1
        self.stats.last_error = e.message
        log.warning("ledger write failed (%s); retrying in %.1f s", e.message, delay)


class IngestService:
    """Runs :class:`JetStreamIngest` on its own thread and event loop."""

    name = "ingest"

    def __init__(self, ingest: JetStreamIngest, log_path: Path | None = None) -> None:
        self.ingest = ingest
        self.log = log_path or Path("(stderr)")
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self.error: BaseException | None = None

    def start(self, *, ready_timeout: float = 60.0) -> None:
        self._thread = threading.Thread(target=self._main, name="provault-ingest", daemon=True)
        self._thread.start()
        deadline = ready_timeout
        while not self.ingest.ready.wait(0.1):
            deadline -= 0.1
            if self.error is not None or deadline <= 0 or not self._thread.is_alive():
                self.stop()
                if isinstance(self.error, ProvaultError):
                    raise self.error
                raise ServerStartError(
                    f"ingest did not start within {ready_timeout:.0f} s: {self.error or 'timed out'}"
                )

    def _main(self) -> None:
        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            await self.ingest.run(self._stop)

        try:
            asyncio.run(main())
        except BaseException as e:
            self.error = e
            log.error("ingest stopped: %s", e)

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self.running():
            try:
                self._loop.call_soon_threadsafe(self._stop.set)
            except RuntimeError:  # the loop closed meanwhile: the thread is already ending on its own
                pass
        if self._thread is not None:
            self._thread.join(timeout=30)
