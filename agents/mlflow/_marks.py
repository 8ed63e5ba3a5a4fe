"""What the MLflow integration has recorded, so the import and webhook retries add nothing twice.

A small SQLite file beside the producers' chain state
(``<data_dir>/producers/mlflow-recorded.sqlite``), shared by the plugin, the
webhook receiver and the import of one data directory (SQLite serialises
their writes).  A mark is written after its event is spooled, never before:
a crash in between lets the next import record that event again, which
describes the same nodes and so does not double the graph.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

from ledger.core.events import format_time

MARKS_FILE = "mlflow-recorded.sqlite"


class Marks:
    """``key -> (event id, value)``; thread-safe."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / MARKS_FILE
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")  # the spool makes events durable; a lost mark costs a repeat
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS marks (key TEXT PRIMARY KEY, event_id TEXT NOT NULL, value TEXT, at TEXT NOT NULL)"
        )
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[str, str | None] | None:
        with self._lock:
            row = self._db.execute("SELECT event_id, value FROM marks WHERE key = ?", (key,)).fetchone()
        return None if row is None else (row[0], row[1])

    def has(self, key: str) -> bool:
        return self.get(key) is not None

    def value(self, key: str) -> str | None:
        found = self.get(key)
        return None if found is None else found[1]

    def known(self, keys: list[str]) -> set[str]:
        """Which of ``keys`` are marked (one query per 500 keys)."""
        out: set[str] = set()
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                out.update(k for (k,) in self._db.execute(f"SELECT key FROM marks WHERE key IN ({marks})", chunk))
        return out

    def put(self, key: str, event_id: str, value: str | None = None) -> None:
        self.put_many([(key, event_id, value)])

    def put_many(self, rows: list[tuple[str, str, str | None]]) -> None:
        if not rows:
            return
        at = format_time(datetime.now(UTC))
        with self._lock, self._db:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR REPLACE INTO marks (key, event_id, value, at) VALUES (?, ?, ?, ?)",
                [(k, e, v, at) for k, e, v in rows],
            )

    def add_if_new(self, key: str, event_id: str) -> bool:
        """Mark ``key`` unless it is marked already; True when this call marked it."""
        at = format_time(datetime.now(UTC))
        with self._lock:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO marks (key, event_id, value, at) VALUES (?, ?, NULL, ?)", (key, event_id, at)
            )
            return cur.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._db.close()
