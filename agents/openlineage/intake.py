"""Sealing accepted OpenLineage events durably, once each: what the HTTP endpoint and ``import`` share.

:class:`Intake` owns one :class:`~agents.runtime.Agent` (the endpoint's
producer identity, chain and spool) and an index of the content digests it
has sealed (SQLite, beside the producer's chain state).  Requests queue to
one writer thread, which takes them in groups: for each, the digest is looked
up (a repeat answers with the first event's id), the event is signed and
spooled; then the spool is fsynced once and the new digests are committed,
and only then does each caller get its answer.  A caller that got an answer
has its event on disk; an error means nothing was kept.

The index is shared by the endpoint and ``provault openlineage import`` on
the same data directory (SQLite serialises their writes).  It is committed after the spool is synced, never before, so a crash
loses no event; a crash between the two lets the next re-post of those
events be sealed a second time (two log entries that project to the same
statements).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.core.errors import ProvaultError
from ledger.core.events import format_time
from ledger.core.fastjson import dumps as json_dumps
from ledger.core.vocab import OPENLINEAGE_DATASET, OPENLINEAGE_JOB, OPENLINEAGE_RUN

from ..runtime import Agent
from ..spool import SpoolFull
from ._prov import to_prov
from ._spec import BadOpenLineage, Checked

log = logging.getLogger("provault.openlineage")

_OL_KINDS = {OPENLINEAGE_RUN: "RunEvent", OPENLINEAGE_JOB: "JobEvent", OPENLINEAGE_DATASET: "DatasetEvent"}
INDEX_FILE = "openlineage-sealed.sqlite"
"""The digests sealed by every OpenLineage intake of a data directory (the endpoint and imports share it)."""
GROUP_MAX = 256
"""Requests sealed per fsync at most."""
_ENVELOPE_OVERHEAD = 2048
"""Bytes of an encoded event beyond its ``prov`` and ``data`` (ids, producer, prefixes), with room to spare."""


class NotKept(ProvaultError):
    """The event could not be made durable (spool full or unwritable): nothing was kept, a retry is safe."""

    reason = "not_kept"


@dataclass(frozen=True, slots=True)
class Credential:
    """Who sent an event: a token's id and name, or ``dev-mode``."""

    id: str
    name: str = ""

    def to_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


DEV_MODE = Credential("dev-mode", "provault up (no authentication)")


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    """``accepted`` or ``duplicate``."""
    event_id: str
    flags: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "event_id": self.event_id, "flags": list(self.flags)}


@dataclass(slots=True)
class _Request:
    checked: Checked
    prov: dict[str, Any]
    data: dict[str, Any]
    received: datetime
    future: concurrent.futures.Future


class Intake:
    """One writer of OpenLineage events into the endpoint's spool; thread-safe, closes its agent."""

    def __init__(self, agent: Agent, *, index_dir: Path, max_payload_bytes: int) -> None:
        self.agent = agent
        self.max_payload_bytes = max_payload_bytes
        index_dir.mkdir(parents=True, exist_ok=True)
        self.index_path = index_dir / INDEX_FILE
        self._db = sqlite3.connect(self.index_path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        # The spool's fsync makes each event durable; the index only spares a re-post a second entry, so its
        # commits need not wait for the disk (WAL + NORMAL: a power loss may forget the last few digests).
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sealed (digest TEXT PRIMARY KEY, event_id TEXT NOT NULL, received TEXT NOT NULL)"
        )
        self._queue: queue.Queue[_Request | None] = queue.Queue()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="openlineage-intake", daemon=True)
        self._thread.start()

    # --- callers -----------------------------------------------------------------

    def prepare(self, checked: Checked, credential: Credential) -> _Request:
        """The PROV document and sealed data of an event; 413 when the sealed event would pass the payload limit."""
        received = datetime.now(UTC)
        prov = to_prov(checked)
        data = {
            "openlineage": {
                "kind": _OL_KINDS[checked.kind],
                "raw": checked.text,
                "sha256": checked.raw_sha256,
                "digest": checked.digest,
                "credential": credential.to_json(),
                "received": format_time(received),
                "flags": list(checked.flags),
            }
        }
        size = len(json_dumps(prov)) + len(json_dumps(data)) + _ENVELOPE_OVERHEAD
        if size > self.max_payload_bytes:
            raise BadOpenLineage(
                "$",
                "size",
                f"the sealed event would take about {size} bytes, over the ledger's payload limit of "
                f"{self.max_payload_bytes} (ingest.max_payload_bytes); split the event's facets or raise the limit",
                status=413,
            )
        return _Request(checked, prov, data, received, concurrent.futures.Future())

    def submit(self, checked: Checked, credential: Credential, timeout: float | None = None) -> Outcome:
        """Seal one checked event (blocking until it is durable or refused)."""
        request = self.prepare(checked, credential)
        self._put(request)
        return request.future.result(timeout)

    async def submit_async(self, checked: Checked, credential: Credential) -> Outcome:
        request = self.prepare(checked, credential)
        self._put(request)
        return await asyncio.wrap_future(request.future)

    def _put(self, request: _Request) -> None:
        if self._closed:
            raise NotKept("the OpenLineage intake is closed")
        self._queue.put(request)

    def close(self, timeout: float | None = None) -> bool:
        """Seal what is queued, stop the writer, close the index and the agent (which delivers what it can)."""
        if not self._closed:
            self._closed = True
            self._queue.put(None)
            self._thread.join(30)
            self._db.close()
        return self.agent.close(timeout)

    def seen(self, digest: str) -> str | None:
        """The id of the event sealed with this content digest, if any."""
        return self._seen_among([digest]).get(digest)

    # --- the writer --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            group = [first]
            while len(group) < GROUP_MAX:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._queue.put(None)
                    break
                group.append(nxt)
            try:
                self._seal(group)
            except BaseException as e:
                log.exception("openlineage intake: a group of %d events failed", len(group))
                for r in group:
                    if not r.future.done():
                        r.future.set_exception(NotKept(f"the event was not kept: {e}"))

    def _seen_among(self, digests: list[str]) -> dict[str, str]:
        marks = ",".join("?" * len(digests))
        return dict(self._db.execute(f"SELECT digest, event_id FROM sealed WHERE digest IN ({marks})", digests))

    def _seal(self, group: list[_Request]) -> None:
        done: list[tuple[_Request, Outcome]] = []
        new: dict[str, tuple[str, str]] = {}
        known = self._seen_among([r.checked.digest for r in group])
        for r in group:
            digest = r.checked.digest
            first = new.get(digest, (None,))[0] or known.get(digest)
            if first is not None:
                done.append((r, Outcome("duplicate", first, r.checked.flags)))
                continue
            try:
                event_id = self.agent.emit(r.checked.kind, r.prov, data=r.data, time=r.received)
            except (SpoolFull, OSError) as e:
                r.future.set_exception(NotKept(f"the spool cannot take the event: {e}"))
                continue
            if not event_id:  # backpressure "drop": nothing was spooled
                r.future.set_exception(NotKept("the spool is full and agent.backpressure is 'drop'"))
                continue
            new[digest] = (event_id, format_time(r.received))
            done.append((r, Outcome("accepted", event_id, r.checked.flags)))
        if new:
            self.agent.spool.sync()
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR IGNORE INTO sealed (digest, event_id, received) VALUES (?, ?, ?)",
                    [(d, e, t) for d, (e, t) in new.items()],
                )
        for r, outcome in done:
            r.future.set_result(outcome)
