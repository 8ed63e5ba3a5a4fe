"""The agent's sender thread: spooled events to the ledger, in spool order, surviving every error a transport raises.

What may succeed later (the ledger unreachable, a refused credential, a bug) is retried with backoff and the
events stay spooled; what never will (``Undeliverable``: the request itself is refused) is narrowed down to the
one event, which is set aside in ``undeliverable.jsonl`` beside the spool, with the reason, and reported, while
the rest keeps flowing.  The thread's event loop has an executor of its own that still runs at interpreter exit,
so the exit hook's flush can deliver (``concurrent.futures`` refuses new work once shutdown began).
"""

from __future__ import annotations

import asyncio
import base64
import concurrent.futures
import json
import logging
import os
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, Protocol

from ledger.core.errors import ProvaultError

from .spool import Record, Spool
from .transport import Transport, Undeliverable

log = logging.getLogger("provault.agent")

SEND_BATCH = 500
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
IDLE_WAIT_S = 0.2
UNDELIVERABLE_FILE = "undeliverable.jsonl"


class Stats(Protocol):
    lock: threading.Lock
    sent: int
    send_failures: int
    set_aside: int
    last_error: str | None


class Wakeup:
    """A signal any thread may give and the sender's event loop awaits without a thread of its own."""

    def __init__(self) -> None:
        self._flag = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._event: asyncio.Event | None = None

    def bind(self) -> None:
        """Attach to the running loop (the sender's); signals given before are kept."""
        self._event = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        if self._flag.is_set():
            self._event.set()

    def set(self) -> None:
        self._flag.set()
        loop, event = self._loop, self._event
        if loop is not None and event is not None:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop already closed: nobody waits any more
                pass

    async def wait(self, timeout: float) -> None:
        """Return at the signal or after ``timeout`` seconds, and clear it."""
        assert self._event is not None, "bind() first, from the loop"
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            pass
        self._flag.clear()
        self._event.clear()


class _ThreadPerCall(concurrent.futures.ThreadPoolExecutor):
    """Runs each call on a new thread: unlike a pool's ``submit`` it still works in exit hooks.

    (A ThreadPoolExecutor by type only because asyncio's default executor must be one.)"""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as e:
                future.set_exception(e)

        threading.Thread(target=run, name="provault-agent-io", daemon=True).start()
        return future


class Sender:
    """Takes batches from ``spool``, sends them over ``transport`` and acknowledges what was delivered.

    ``acknowledge(upto)`` saves the producer's chain position and acknowledges the spool up to index ``upto``
    (the agent's part, so spent segments are deleted only after the position is on disk).
    """

    def __init__(
        self, *, producer_id: str, spool: Spool, transport: Transport, stats: Stats, acknowledge: Callable[[int], None]
    ) -> None:
        self.producer_id = producer_id
        self.spool, self.transport, self.stats, self._acknowledge = spool, transport, stats, acknowledge
        self.stop = threading.Event()
        self.wake, self._stopping = Wakeup(), Wakeup()
        self._failing = False
        self.thread = threading.Thread(target=self._run, name=f"provault-agent-{producer_id}", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def close(self, timeout: float = 30.0) -> None:
        self.stop.set()
        self._stopping.set()
        self.wake.set()
        self.thread.join(timeout=timeout)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        loop.set_default_executor(_ThreadPerCall())
        try:
            loop.run_until_complete(self._loop())
        finally:
            loop.close()

    async def _loop(self) -> None:
        self.wake.bind()
        self._stopping.bind()
        delay, batch = RETRY_MIN_S, SEND_BATCH
        try:
            while not self.stop.is_set():
                records = self.spool.take(batch)
                if not records:
                    await self.wake.wait(IDLE_WAIT_S)
                    continue
                try:
                    self.spool.sync()
                    done = await self.transport.send(records)
                except Undeliverable as e:
                    self.spool.rewind()
                    if len(records) > 1:
                        batch = max(1, len(records) // 2)  # narrow it down to the event refused
                        continue
                    if self._retry_later(self._set_aside, records[0], e):
                        await self._stopping.wait(delay)
                    batch = SEND_BATCH
                    continue
                except Exception as e:  # TransportUnavailable, a refused credential, a full disk, a bug
                    self.spool.rewind()
                    self._note_failure(e)
                    await self._stopping.wait(delay)  # a backoff that close() cuts short
                    delay = min(delay * 2, RETRY_MAX_S)
                    continue
                delay = RETRY_MIN_S
                if self._retry_later(self._delivered, records[0].index + done):
                    await self._stopping.wait(delay)
                    continue
                if done < len(records):
                    self.spool.rewind()
        finally:
            try:
                await self.transport.close()
            except Exception:
                log.debug("closing the %s transport failed", self.transport.name, exc_info=True)

    def _retry_later(self, step: Callable[..., None], *args: Any) -> bool:
        """Run a bookkeeping step; on a disk error (full, read-only) rewind to resend later and say so."""
        try:
            step(*args)
        except OSError as e:
            self.spool.rewind()
            self._note_failure(e)
            return True
        return False

    def _delivered(self, upto: int) -> None:
        sent = upto - self.spool.cursor
        self._acknowledge(upto)
        with self.stats.lock:
            self.stats.sent += sent
        self._failing = False

    def _set_aside(self, record: Record, error: Undeliverable) -> None:
        """Keep the refused event beside the spool with the reason (fsynced), then go past it."""
        path = self.spool.dir / UNDELIVERABLE_FILE
        line = {
            "event_id": record.event_id,
            "reason": error.reason,
            "message": error.message,
            "set_aside_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "envelope_b64": base64.b64encode(record.envelope).decode("ascii"),
        }
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        self._acknowledge(record.index + 1)
        with self.stats.lock:
            self.stats.set_aside += 1
            self.stats.last_error = error.message
        log.error(
            "agent %s: event %s can never be delivered over %s (%s); it is set aside in %s and the rest goes on",
            self.producer_id,
            record.event_id,
            self.transport.name,
            error.message,
            path,
        )

    def _note_failure(self, e: BaseException) -> None:
        with self.stats.lock:
            self.stats.send_failures += 1
            self.stats.last_error = e.message if isinstance(e, ProvaultError) else str(e)
        if not isinstance(e, (ProvaultError, OSError)):
            log.error(
                "agent %s: sending over %s failed unexpectedly; retrying",
                self.producer_id,
                self.transport.name,
                exc_info=e,
            )
        elif not self._failing:
            log.warning("agent %s: cannot deliver yet (%s); events stay spooled and are retried", self.producer_id, e)
        self._failing = True
