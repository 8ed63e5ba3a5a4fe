"""Logging served predictions: O(1) on the request path, one signed event per batch.

:meth:`PredictionLogger.log` appends a small tuple to a bounded buffer and returns; a background thread seals
the buffer into ``predictions.logged`` events (``_batches``) and hands them to the agent, which signs and
spools them.  Durability, back-pressure policies and limits: docs/serving.md.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ledger.core.errors import InvalidArgument, ProvaultError, expected_found
from ledger.core.ids import is_content_id, new_event_id
from ledger.core.vocab import service_id

from ._batches import (
    COLUMNS,
    INLINE_OUTPUT_MAX,
    MAX_EVENT_ROW_BYTES,
    MAX_ID_LENGTH,
    PREDICTIONS_LOGGED,
    batch_prov,
    build_rows,
    canonical_json,
    input_digest_of,
    output_value,
    plan_chunks,
    unix_time_text,
)
from .runtime import Agent, AgentClosed
from .spool import SpoolFull

log = logging.getLogger("provault.agent.predictions")

POLICIES = ("block", "spool", "drop")

"""Estimated row bytes per event; a batch larger than this is split (payload limit: docs/events.md)."""
WARN_EVERY = 1000
RETRY_MIN_S = 0.2
RETRY_MAX_S = 5.0
_RETRYABLE = (SpoolFull, OSError)


class PredictionLoggerError(ProvaultError):
    reason = "prediction_logger"


class PredictionBacklogFull(PredictionLoggerError):
    """The buffer stayed full: the agent could not take batches (its spool is full or it is too slow)."""

    reason = "prediction_backlog_full"


class PredictionLoggerClosed(PredictionLoggerError):
    reason = "prediction_logger_closed"


class _Unsent(Exception):
    """Items the agent did not take (yet), and why."""

    def __init__(self, items: list[tuple], cause: BaseException) -> None:
        super().__init__(str(cause))
        self.items = items
        self.cause = cause


@dataclass
class PredictionStats:
    emitted: int = 0
    """Predictions in batches the agent accepted (durable)."""
    batches: int = 0
    dropped: int = 0
    """Predictions lost to the 'drop' policy, to an agent that dropped or refused their batch."""
    invalid: int = 0
    """Predictions whose id was unusable (empty or longer than MAX_ID_LENGTH); never logged."""
    undigestable: int = 0
    """Predictions logged without an input digest because the input was neither bytes, text, an array nor JSON."""
    duplicates: int = 0
    """Batches that held a prediction id more than once (split so each event names an id once)."""
    emit_failures: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, name: str, n: int = 1) -> int:
        with self.lock:
            value = getattr(self, name) + n
            setattr(self, name, value)
            return value


# --- the logger ---------------------------------------------------------------------------


def _check_settings(batch_max: int, batch_interval_s: float, backpressure: str, queue_size: int) -> None:
    problems = []
    if backpressure not in POLICIES:
        problems.append(expected_found("backpressure", "'block', 'spool' or 'drop'", repr(backpressure)))
    if batch_max < 1 or queue_size < 1:
        problems.append(expected_found("batch_max and queue_size", "at least 1", f"{batch_max} and {queue_size}"))
    if not batch_interval_s > 0:
        problems.append(expected_found("batch_interval_s", "> 0", batch_interval_s))
    if problems:
        raise InvalidArgument("; ".join(problems))


def _check_ids(deployment: str, model: str) -> None:
    if not isinstance(deployment, str) or not deployment.startswith("provault:deployment/"):
        raise InvalidArgument(
            expected_found("deployment", "provault:deployment/<name>/<uuid>", repr(deployment)[:80]),
            hint="pass the entity the model.deployed event generated: ledger.core.vocab.deployment_id(name, deploy_uuid)",
        )
    if not is_content_id(model):
        raise InvalidArgument(
            expected_found("model", "the model artifact's content id sha256:<64 hex>", repr(model)[:80]),
            hint="digest the artifact with agents.capture (or ledger.core.ids.content_id of its bytes)",
        )


class PredictionLogger:
    """Buffers predictions and emits them in signed ``predictions.logged`` batches through ``agent``.

    Settings left ``None`` come from ``agent.settings`` (``AgentSettings``).
    The logger does not own the agent: :meth:`close` flushes it but leaves it open.
    """

    def __init__(
        self,
        agent: Agent,
        *,
        deployment: str,
        model: str,
        service: str | None = None,
        batch_max: int | None = None,
        batch_interval_s: float | None = None,
        backpressure: str | None = None,
        queue_size: int | None = None,
        max_event_bytes: int = MAX_EVENT_ROW_BYTES,
    ) -> None:
        s = agent.settings
        self.batch_max = s.batch_max if batch_max is None else batch_max
        self.batch_interval_s = s.batch_interval_s if batch_interval_s is None else batch_interval_s
        self.backpressure = s.backpressure if backpressure is None else backpressure
        self.queue_size = s.queue_size if queue_size is None else queue_size
        _check_settings(self.batch_max, self.batch_interval_s, self.backpressure, self.queue_size)
        _check_ids(deployment, model)
        self.agent = agent
        self.deployment, self.model = deployment, model
        name = service or agent.producer_id
        self.service = name if name.startswith("provault:service/") else service_id(name)
        self.max_event_bytes = max_event_bytes
        self.stats = PredictionStats()
        self._buf: deque[tuple] = deque()
        self._capacity = self.queue_size  # 0 once closed: every log() then takes the slow path
        self._trigger = min(self.batch_max, self.queue_size)
        self._kicked = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._space = threading.Condition()
        self._seal_lock = threading.Lock()
        self._retry: list[tuple] = []  # taken from the buffer, not yet accepted by the agent
        self._taken = 0
        self._inflight = 0
        self._closed = False
        self._thread = threading.Thread(target=self._run, name=f"provault-predictions-{agent.producer_id}", daemon=True)
        self._thread.start()
        ref = weakref.ref(self)
        self._at_exit = lambda: (lg := ref()) is not None and lg.close()
        atexit.register(self._at_exit)
        self._orphaned_by_fork = False
        os.register_at_fork(after_in_child=lambda: (lg := ref()) is not None and lg._forked())

    # --- the caller's side -------------------------------------------------------------

    def log(
        self, prediction_id: str, input: Any = None, output: Any = None, *, input_digest: str | None = None
    ) -> None:
        """Record one prediction; O(1), no hashing or I/O here (see the module docs)."""
        buf = self._buf
        if len(buf) >= self._capacity:
            return self._full((prediction_id, time.time(), input, output, input_digest))
        buf.append((prediction_id, time.time(), input, output, input_digest))
        if len(buf) >= self._trigger and not self._kicked:
            self._kicked = True
            self._wake.set()
        return None

    @property
    def pending(self) -> int:
        """Predictions logged but not yet accepted by the agent."""
        return len(self._buf) + len(self._retry)

    @property
    def would_block(self) -> bool:
        """True when log() would wait now (policy 'block' and a full buffer)."""
        return self.backpressure == "block" and len(self._buf) >= self._capacity

    def flush(self, timeout: float | None = None) -> bool:
        """Seal and emit everything logged so far, then wait for the agent to deliver it.

        False if ``timeout`` passed first (what was not emitted stays buffered).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        if not self._seal_lock.acquire(timeout=-1 if timeout is None else max(timeout, 0)):
            return False
        try:
            target = self._taken + len(self._buf)
            delay = RETRY_MIN_S
            while self._retry or self._taken < target:
                try:
                    self._seal_next(min(self.batch_max, max(target - self._taken, 1)))
                    delay = RETRY_MIN_S
                except _RETRYABLE as e:
                    self._note_failure(e)
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        return False
                    time.sleep(delay if left is None else min(delay, left))
                    delay = min(delay * 2, RETRY_MAX_S)
        finally:
            self._seal_lock.release()
        while self._inflight:  # batches a 'spool' caller is emitting right now
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.005)
        left = None if deadline is None else max(deadline - time.monotonic(), 0)
        return self.agent.flush(left)

    def close(self, timeout: float | None = None) -> bool:
        """Refuse new predictions, seal and emit the buffered ones, flush the agent (left open)."""
        with self._space:
            if self._closed:
                return True
            self._closed = True
            self._capacity = 0
            self._space.notify_all()
        atexit.unregister(self._at_exit)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=self.agent.settings.publish_timeout_s + 5)
        done = self.flush(self.agent.settings.publish_timeout_s if timeout is None else timeout)
        if not done:
            log.warning(
                "prediction logger for %s closed with %d prediction(s) not yet delivered (%d still buffered)",
                self.deployment,
                self.agent.pending(),
                self.pending,
            )
        return done

    def _forked(self) -> None:
        """In a child process: refuse to log (the parent owns the buffer, the thread and the agent)."""
        self._orphaned_by_fork = True
        self._closed = True
        self._capacity = 0
        atexit.unregister(self._at_exit)

    def __enter__(self) -> PredictionLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- back-pressure ---------------------------------------------------------------------

    def _full(self, item: tuple) -> None:
        if self._orphaned_by_fork:
            raise PredictionLoggerClosed(
                f"prediction logger for {self.deployment} was made before this process forked; its thread and agent "
                "belong to the parent process",
                hint="create the agent and the PredictionLogger in each worker process, after the fork "
                "(e.g. gunicorn's post_fork hook, or lazily on the first request)",
            )
        if self._closed:
            raise PredictionLoggerClosed(
                f"prediction logger for {self.deployment} is closed; it logs no more predictions"
            )
        self._kick()
        if self.backpressure == "drop":
            self._drop(1, "the prediction buffer is full")
        elif self.backpressure == "spool":
            self._seal_here()
            self._buf.append(item)
        else:
            self._wait_for_room()
            self._buf.append(item)

    def _wait_for_room(self) -> None:
        timeout = self.agent.settings.publish_timeout_s
        deadline = time.monotonic() + timeout
        with self._space:
            while len(self._buf) >= self._capacity:
                if self._closed:
                    raise PredictionLoggerClosed(f"prediction logger for {self.deployment} was closed while waiting")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._backlog_error(f"waited {timeout:g} s (agent.publish_timeout_s) for room")
                self._kick()
                self._space.wait(min(left, 0.1))

    def _seal_here(self) -> None:
        """Policy 'spool': emit the oldest batch on this thread (never waiting for the batching thread)."""
        while len(self._buf) >= self._capacity and not self._closed:
            items = self._take(self.batch_max)
            if not items:
                return
            with self._space:
                self._inflight += 1
            try:
                self._emit_items(items)
            except _Unsent as u:
                self._buf.extendleft(reversed(u.items))  # back to the front, in order
                self._note_failure(u.cause)
                raise self._backlog_error("sealing a batch on the caller's thread failed") from u.cause
            finally:
                with self._space:
                    self._inflight -= 1

    def _backlog_error(self, what: str) -> PredictionBacklogFull:
        return PredictionBacklogFull(
            f"prediction buffer for {self.deployment} is full ({self.queue_size} predictions); {what}; "
            f"last agent error: {self.stats.last_error or 'none'}",
            hint="the agent cannot take batches fast enough (is its spool full? check connectivity to the ledger), "
            "or raise queue_size; backpressure='drop' or 'spool' never waits",
        )

    def _drop(self, n: int, why: str) -> None:
        total = self.stats.add("dropped", n)
        if (total - n) // WARN_EVERY != total // WARN_EVERY or total == n:
            log.warning("prediction logger for %s: %s; %d prediction(s) dropped so far", self.deployment, why, total)

    def _kick(self) -> None:
        self._kicked = True
        self._wake.set()

    # --- the batching thread -----------------------------------------------------------

    def _run(self) -> None:
        delay = RETRY_MIN_S
        while not self._stop.is_set():
            self._wake.clear()
            self._kicked = False
            wait = self._due()
            if wait > 0:
                self._wake.wait(wait)
                continue
            try:
                with self._seal_lock:
                    self._seal_next(self.batch_max)
                delay = RETRY_MIN_S
            except _RETRYABLE as e:
                self._note_failure(e)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
            except Exception:
                log.exception("prediction logger for %s: unexpected error while sealing a batch", self.deployment)

    def _due(self) -> float:
        """Seconds until the next batch is due (0: seal now)."""
        if self._retry:
            return 0.0
        n = len(self._buf)
        if n == 0:
            return self.batch_interval_s
        if n >= self._trigger:
            return 0.0
        try:
            oldest = self._buf[0][1]
        except IndexError:  # taken meanwhile by flush() or a 'spool' caller
            return 0.0
        return max(0.0, min(self.batch_interval_s, oldest + self.batch_interval_s - time.time()))

    def _take(self, limit: int) -> list[tuple]:
        buf = self._buf
        items = []
        try:
            for _ in range(limit):
                items.append(buf.popleft())
        except IndexError:
            pass
        if items:
            with self._space:
                self._taken += len(items)
                self._space.notify_all()
        return items

    def _seal_next(self, limit: int) -> None:
        """Emit the held-back items or the oldest ``limit`` buffered ones (the seal lock is held).

        On a retryable failure the items not yet accepted are kept for the next call and the error raised.
        """
        items, self._retry = (self._retry, []) if self._retry else (self._take(limit), [])
        try:
            self._emit_items(items)
        except _Unsent as u:
            self._retry = u.items
            raise u.cause from None

    def _emit_items(self, items: list[tuple]) -> None:
        """Build and emit the events for ``items`` in order; raise _Unsent with those not accepted
        when the agent may take them later (its spool is full, a disk error)."""
        if not items:
            return
        try:
            rows, ids, sizes, firsts = build_rows(items, self._invalid)
        except Exception as e:  # a bug, not the caller's data: count it, never lose silently
            self._lost(len(items), e, "the batch could not be built")
            raise
        chunks = plan_chunks(ids, sizes, batch_max=self.batch_max, max_bytes=self.max_event_bytes)
        if len(chunks) > -(-len(ids) // self.batch_max) and len(set(ids)) < len(ids):
            self._invalid(
                "duplicates", "a prediction id was logged more than once; its repeats went into separate events"
            )
        for a, b in chunks:
            try:
                self._emit(rows[a:b], [items[k] for k in firsts[a:b]])
            except _RETRYABLE as e:
                raise _Unsent([items[k] for k in firsts[a:]], e) from e
            except AgentClosed as e:
                self._lost(len(rows) - a, e, "the agent is closed")
                return
            except Exception as e:
                self._lost(b - a, e, "the agent refused the batch")
                log.exception("prediction logger for %s: batch refused", self.deployment)

    def _emit(self, rows: list[list], items: list[tuple]) -> None:
        times = [i[1] for i in items]
        start, end = unix_time_text(min(times)), unix_time_text(max(times))
        prov = batch_prov(
            new_event_id(),
            start=start,
            end=end,
            count=len(rows),
            deployment=self.deployment,
            model=self.model,
            service=self.service,
        )
        data = {"deployment": self.deployment, "model": self.model, "columns": list(COLUMNS), "rows": rows}
        event_id = self.agent.emit(PREDICTIONS_LOGGED, prov, data=data)
        if not event_id:  # the agent's own 'drop' policy: its spool is full
            self._drop(len(rows), "the agent's spool is full and its back-pressure policy is 'drop'")
            return
        with self.stats.lock:
            self.stats.emitted += len(rows)
            self.stats.batches += 1

    def _invalid(self, counter: str, why: str) -> None:
        n = self.stats.add(counter)
        if n == 1 or n % WARN_EVERY == 0:
            log.warning("prediction logger for %s: %s; %d such prediction(s) so far", self.deployment, why, n)

    def _lost(self, n: int, e: BaseException, why: str) -> None:
        with self.stats.lock:
            self.stats.dropped += n
            self.stats.last_error = str(e)
        log.error("prediction logger for %s: %d prediction(s) lost: %s (%s)", self.deployment, n, why, e)

    def _note_failure(self, e: BaseException) -> None:
        with self.stats.lock:
            self.stats.emit_failures += 1
            first = self.stats.emit_failures == 1
            self.stats.last_error = str(e)
        if first:
            log.warning(
                "prediction logger for %s: the agent cannot take batches yet (%s); retrying, predictions stay buffered",
                self.deployment,
                e,
            )


__all__ = [
    "COLUMNS",
    "INLINE_OUTPUT_MAX",
    "MAX_ID_LENGTH",
    "PREDICTIONS_LOGGED",
    "PredictionBacklogFull",
    "PredictionLogger",
    "PredictionLoggerClosed",
    "PredictionLoggerError",
    "PredictionStats",
    "batch_prov",
    "build_rows",
    "canonical_json",
    "input_digest_of",
    "output_value",
    "plan_chunks",
    "unix_time_text",
]
