"""A producer's chain position, kept on local disk across processes and reboots.

One JSON file per producer id under ``<data_dir>/producers/``, written
atomically (temp file, fsync, rename, fsync of the directory) and guarded by
an exclusive ``flock`` so two processes on one host cannot fork the chain.
"""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path

from ledger.core.errors import ProvaultError
from ledger.core.events import Producer
from ledger.transport import subject_token


class ChainStateError(ProvaultError):
    reason = "chain_state"


class ChainFile:
    """Load, lock and persist one producer's position."""

    def __init__(self, directory: Path, producer_id: str) -> None:
        self.producer_id = producer_id
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / f"{subject_token(producer_id)}.json"
        self._lock_fd = os.open(directory / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ChainStateError(
                f"producer {producer_id} is in use by another process on this host ({self.path})",
                hint="give each process its own producer id",
            ) from None

    def load(self) -> Producer:
        try:
            doc = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return Producer.first(self.producer_id)
        except (OSError, ValueError) as e:
            raise ChainStateError(
                f"producer state file {self.path} is unreadable or corrupt ({type(e).__name__})",
                hint="do not delete it: restore it from backup, or start a new producer id",
            ) from None
        if not isinstance(doc, dict) or doc.get("id") != self.producer_id:
            raise ChainStateError(
                f"producer state file {self.path} belongs to {doc.get('id') if isinstance(doc, dict) else '?'!r}, not {self.producer_id!r}"
            )
        try:
            return Producer(id=doc["id"], seq=doc["seq"], prev=doc["prev"])
        except (KeyError, ProvaultError) as e:
            raise ChainStateError(f"producer state file {self.path} is invalid: {e}") from None

    def save(self, position: Producer) -> None:
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        data = json.dumps({"id": position.id, "seq": position.seq, "prev": position.prev}).encode()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            view = memoryview(data)
            while view:  # a short write (disk full) must never be renamed over the saved position
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        if self._lock_fd >= 0:
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
            self._lock_fd = -1

    def __enter__(self) -> ChainFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
