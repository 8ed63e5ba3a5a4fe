"""The digest cache: file digests remembered by path, size, mtime and inode in a small JSON file."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import threading
import time
from pathlib import Path

from ledger.core.errors import expected_found
from ledger.core.ids import is_content_id

from ._common import StrPath, _stat_key, log

# --- the digest cache ---------------------------------------------------------

CACHE_FORMAT = "provault-digest-cache/1"


class DigestCache:
    """Remembers file digests by (absolute path, size, mtime_ns, inode) in a small JSON file.

    A file whose signature is unchanged is not read again, so re-digesting an
    unchanged 10 GB file costs one ``stat``.  Files modified within
    ``racy_seconds`` of being digested are not remembered: a write in the
    same timestamp tick could otherwise go unseen (git's "racily clean" case).

    The file is replaced atomically (temporary file + rename) after merging
    with what is on disk, so concurrent writers can lose each other's
    entries (a later miss) but never leave a torn file.  A corrupt or
    unreadable cache file is ignored with a warning and rebuilt.  ``hits`` and
    ``misses`` count lookups in this process.
    """

    def __init__(self, path: StrPath, *, max_entries: int = 100_000, racy_seconds: float = 2.0) -> None:
        self.path = os.path.abspath(path)
        self.max_entries = max_entries
        self.racy_ns = int(racy_seconds * 1e9)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._entries = self._load(warn=True)
        self._new: dict[str, list[int | str]] = {}

    @classmethod
    def default(cls) -> DigestCache:
        """The per-user cache (``digests.json`` in the platform's user cache directory)."""
        from platformdirs import user_cache_dir  # noqa: PLC0415 - only needed here

        return cls(Path(user_cache_dir("provault")) / "digests.json")

    def own_files(self) -> frozenset[str]:
        return frozenset({self.path})

    def get(self, path: str, st: os.stat_result) -> str | None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and tuple(entry[:3]) == _stat_key(st):
                self.hits += 1
                return str(entry[3])
            self.misses += 1
            return None

    def put(self, path: str, st: os.stat_result, digest: str) -> None:
        if time.time_ns() - st.st_mtime_ns < self.racy_ns:
            return
        with self._lock:
            value: list[int | str] = [*_stat_key(st), digest]
            self._entries.pop(path, None)
            self._entries[path] = value
            self._new[path] = value

    def save(self) -> None:
        """Merge new entries into the file on disk; a failure to write is logged, never raised."""
        with self._lock:
            if not self._new:
                return
            merged = self._load(warn=False)
            for key, value in self._new.items():
                merged.pop(key, None)
                merged[key] = value
            while len(merged) > self.max_entries:
                del merged[next(iter(merged))]
            try:
                self._write(merged)
            except OSError as e:
                log.warning(
                    "cannot write digest cache %s (%s); digests are still correct, only slower next time", self.path, e
                )
                return
            self._entries, self._new = merged, {}

    def _write(self, entries: dict[str, list[int | str]]) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"format": CACHE_FORMAT, "entries": entries}, out, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _load(self, *, warn: bool) -> dict[str, list[int | str]]:
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            return self._corrupt(f"{type(e).__name__}: {e}", warn)
        if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or not isinstance(doc.get("entries"), dict):
            found = repr(doc.get("format")) if isinstance(doc, dict) else type(doc).__name__
            return self._corrupt(expected_found("format", CACHE_FORMAT, found), warn)
        entries = {k: v for k, v in doc["entries"].items() if _valid_entry(v)}
        if len(entries) != len(doc["entries"]):
            self._corrupt(f"{len(doc['entries']) - len(entries)} malformed entries dropped", warn)
        return entries

    def _corrupt(self, why: str, warn: bool) -> dict[str, list[int | str]]:
        if warn:
            log.warning("ignoring digest cache %s (%s); it will be rebuilt", self.path, why)
        return {}


def _valid_entry(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(n, int) and not isinstance(n, bool) for n in value[:3])
        and is_content_id(value[3])
    )
