"""The agent's durable outbox: every sealed event is written here before it is sent.

Layout of a spool directory::

    seg-00000000000000000000.log   records 0.. (rotated at SEGMENT_BYTES)
    seg-00000000000000004096.log   records 4096..
    cursor                         index of the first record not yet acknowledged

A segment starts with the 8-byte magic ``PVSPOOL1``; each record is::

    u32 length (big-endian) | u32 CRC-32 of the body | body
    body = 36-byte event id (ASCII) | envelope bytes

A record is written with one ``write`` on the caller's thread, so once
:meth:`Spool.append` returns the event survives the process being killed
(the kernel holds the bytes); :meth:`Spool.sync` (group commit, called by the
sender) makes it survive power loss too.

Damage is never skipped silently.  A CRC or length error before the last
record raises :class:`SpoolCorrupted` naming the file, offset and record; an
incomplete last record (a write cut short by power loss or a full disk) is
moved to ``torn-<offset>.bin`` for inspection and reported in
:attr:`Spool.torn`, since no caller was ever told it was stored.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ledger.core.errors import ProvaultError

MAGIC = b"PVSPOOL1"
HEADER = struct.Struct(">II")
ID_LEN = 36
SEGMENT_BYTES = 16 << 20
MAX_RECORD = 8 << 20


class SpoolError(ProvaultError):
    reason = "spool_error"


class SpoolCorrupted(SpoolError):
    reason = "spool_corrupted"


class SpoolFull(SpoolError):
    reason = "spool_full"


@dataclass(frozen=True, slots=True, kw_only=True)
class Record:
    index: int
    event_id: str
    envelope: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class TornTail:
    segment: str
    offset: int
    saved_as: str


def _encode(event_id: str, envelope: bytes) -> bytes:
    body = event_id.encode("ascii") + envelope
    if len(event_id) != ID_LEN:
        raise SpoolError(f"event id must be {ID_LEN} characters, found {len(event_id)}")
    return HEADER.pack(len(body), zlib.crc32(body)) + body


class Spool:
    """Append-only segments plus a cursor; one writer per directory (a lock file enforces it)."""

    def __init__(self, directory: Path, *, max_bytes: int = 1 << 30) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.torn: list[TornTail] = []
        self._lock = threading.Lock()
        self._lockfile = _exclusive_lock(self.dir / ".lock")
        self.cursor = self._read_cursor()
        self._read: tuple[int, int, int] | None = None
        self._segments = self._scan()  # first index -> path, in order
        self.next_index = self._recover()
        self._fd = self._open_tail()
        self.bytes = sum(p.stat().st_size for p in self._segments.values())

    # --- writing -------------------------------------------------------------

    def append(self, event_id: str, envelope: bytes) -> int:
        """Write one record (durable against a process kill on return); return its index."""
        rec = _encode(event_id, envelope)
        with self._lock:
            if self.bytes + len(rec) > self.max_bytes:
                raise SpoolFull(
                    f"spool {self.dir} holds {self.bytes} bytes; adding {len(rec)} would pass its limit of {self.max_bytes}",
                    hint="the ledger has been unreachable for long: restore connectivity, or raise agent.spool_max_bytes",
                )
            if self._tail_size + len(rec) > SEGMENT_BYTES and self._tail_size > len(MAGIC):
                self._rotate()
            try:
                _write_all(self._fd, rec)
            except OSError as e:
                self._undo_partial_write()
                raise SpoolFull(
                    f"cannot write to spool {self.dir}: {e.strerror or e} (the event was not stored)",
                    hint="free disk space (or raise the file-size limit); events already spooled are intact",
                ) from None
            self._tail_size += len(rec)
            self.bytes += len(rec)
            index = self.next_index
            self.next_index += 1
            return index

    def _undo_partial_write(self) -> None:
        """Cut off whatever part of a failed record reached the file, so the segment stays readable."""
        try:
            os.ftruncate(self._fd, self._tail_size)
        except OSError:  # nothing more can be done here; recovery sets a torn tail aside on the next open
            pass

    def sync(self) -> None:
        """Make every appended record survive power loss (fsync of the tail segment)."""
        with self._lock:
            os.fsync(self._fd)

    # --- reading and acknowledging ---------------------------------------------

    def take(self, limit: int) -> list[Record]:
        """The next up-to-``limit`` records not yet handed out, in order.

        Records handed out stay in the spool until :meth:`acknowledge`;
        :meth:`rewind` hands them out again (after a failed send).
        """
        with self._lock:
            if self._read is None or self._read[0] < self.cursor:
                self._read = self._locate(self.cursor)
            elif self._read[1] not in self._segments:  # acknowledge() deleted the segment we had read to the end of
                self._read = self._locate(self._read[0])
            out: list[Record] = []
            while len(out) < limit:
                index, first, offset = self._read
                if index >= self.next_index:
                    break
                records, offset = _read_records(self._segments[first], offset, index, limit - len(out))
                if records:
                    out += records
                    self._read = (records[-1].index + 1, first, offset)
                    continue
                nxt = min((s for s in self._segments if s > first), default=None)
                if nxt is None:
                    break
                self._read = (index, nxt, len(MAGIC))
            return out

    def rewind(self) -> None:
        """Hand out everything not yet acknowledged again, from the cursor."""
        with self._lock:
            self._read = None

    def _locate(self, index: int) -> tuple[int, int, int]:
        """(index, segment, byte offset) of record ``index``, by scanning its segment."""
        first = max((s for s in self._segments if s <= index), default=min(self._segments))
        offset, at = len(MAGIC), first
        with open(self._segments[first], "rb") as f:
            while at < index:
                f.seek(offset)
                head = f.read(HEADER.size)
                if len(head) < HEADER.size:
                    break
                length, _ = HEADER.unpack(head)
                offset += HEADER.size + length
                at += 1
        return (index, first, offset)

    def pending_count(self) -> int:
        return self.next_index - self.cursor

    def acknowledge(self, upto: int) -> None:
        """Records before index ``upto`` reached the ledger: move the cursor, drop spent segments."""
        with self._lock:
            if not self.cursor <= upto <= self.next_index:
                raise SpoolError(f"acknowledge({upto}) is outside the pending range {self.cursor}..{self.next_index}")
            _atomic_write(self.dir / "cursor", str(upto).encode())
            self.cursor = upto
            starts = sorted(self._segments)
            for first, nxt in zip(starts, starts[1:], strict=False):
                if nxt <= upto:
                    path = self._segments.pop(first)
                    self.bytes -= path.stat().st_size
                    path.unlink()

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.fsync(self._fd)
                os.close(self._fd)
                self._fd = -1
        _release(self._lockfile)

    def last_record(self) -> Record | None:
        """The newest record still in the spool (the agent recovers its chain position from it)."""
        if self.next_index == 0 or not self._segments:
            return None
        first = max(self._segments)
        last = None
        for rec in self._iter_segment(first, self._segments[first]):
            last = rec
        return last

    # --- internals ---------------------------------------------------------------

    def _read_cursor(self) -> int:
        path = self.dir / "cursor"
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            return 0
        if not text.isdigit():
            raise SpoolCorrupted(f"spool cursor {path} holds {text[:40]!r}, expected a record index")
        return int(text)

    def _scan(self) -> dict[int, Path]:
        segs = {}
        for p in sorted(self.dir.glob("seg-*.log")):
            stem = p.stem.removeprefix("seg-")
            if not stem.isdigit():
                raise SpoolCorrupted(f"unexpected file {p.name} in spool {self.dir}")
            segs[int(stem)] = p
        return dict(sorted(segs.items()))

    def _recover(self) -> int:
        """Validate every segment; quarantine a torn tail; return the next record index."""
        if not self._segments:
            return self.cursor
        if min(self._segments) > self.cursor:
            raise SpoolCorrupted(
                f"spool {self.dir}: records {self.cursor}..{min(self._segments) - 1} are missing "
                "(a segment file was deleted before its records were acknowledged)"
            )
        index = min(self._segments)
        starts = list(self._segments)
        for n, first in enumerate(starts):
            if first != index:
                raise SpoolCorrupted(
                    f"spool {self.dir}: segment {self._segments[first].name} should start at record {index}"
                )
            is_last = n == len(starts) - 1
            for _ in self._iter_segment(first, self._segments[first], repair_tail=is_last):
                index += 1
        return index

    def _iter_segment(self, first: int, path: Path, *, repair_tail: bool = False) -> Iterator[Record]:
        data = path.read_bytes()
        if data[: len(MAGIC)] != MAGIC:
            if repair_tail and len(data) < len(MAGIC) and MAGIC.startswith(data):
                self._quarantine(path, 0, data)
                return
            raise SpoolCorrupted(f"spool segment {path} does not start with {MAGIC!r}")
        pos, index = len(MAGIC), first
        while pos < len(data):
            problem = _check_record(data, pos)
            if problem == "incomplete" and repair_tail:
                self._quarantine(path, pos, data[pos:])
                return
            if problem:
                raise SpoolCorrupted(
                    f"spool segment {path} is damaged at byte {pos} (record {index}): {problem}",
                    hint="do not delete the spool: copy it aside for inspection; the events before this point are intact",
                )
            length, _ = HEADER.unpack_from(data, pos)
            body = data[pos + HEADER.size : pos + HEADER.size + length]
            yield Record(index=index, event_id=body[:ID_LEN].decode("ascii"), envelope=body[ID_LEN:])
            pos += HEADER.size + length
            index += 1

    def _quarantine(self, path: Path, offset: int, tail: bytes) -> None:
        saved = self.dir / f"torn-{path.stem}-{offset}.bin"
        saved.write_bytes(tail)
        with open(path, "r+b") as f:
            f.truncate(offset if offset else 0)
            if offset == 0:
                f.write(MAGIC)
            os.fsync(f.fileno())
        self.torn.append(TornTail(segment=path.name, offset=offset, saved_as=saved.name))

    def _open_tail(self) -> int:
        if not self._segments:
            self._segments[self.next_index] = self.dir / f"seg-{self.next_index:020d}.log"
            _atomic_write(self._segments[self.next_index], MAGIC)
        tail = self._segments[max(self._segments)]
        fd = os.open(tail, os.O_WRONLY | os.O_APPEND)
        self._tail_size = os.fstat(fd).st_size
        return fd

    def _rotate(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        path = self.dir / f"seg-{self.next_index:020d}.log"
        _atomic_write(path, MAGIC)
        self._segments[self.next_index] = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        self._tail_size = len(MAGIC)


def _read_records(path: Path, offset: int, index: int, limit: int, chunk: int = 4 << 20) -> tuple[list[Record], int]:
    """Complete records from ``offset`` (already validated at open), up to ``limit``."""
    out: list[Record] = []
    with open(path, "rb") as f:
        f.seek(offset)
        data = f.read(chunk)
        pos = 0
        while len(out) < limit and pos + HEADER.size <= len(data):
            length, _ = HEADER.unpack_from(data, pos)
            if pos + HEADER.size + length > len(data):
                if not out:  # a record larger than the chunk: read exactly it
                    f.seek(offset + pos)
                    data = data[:pos] + f.read(HEADER.size + length)
                    continue
                break
            body = data[pos + HEADER.size : pos + HEADER.size + length]
            out.append(Record(index=index + len(out), event_id=body[:ID_LEN].decode("ascii"), envelope=body[ID_LEN:]))
            pos += HEADER.size + length
    return out, offset + pos


def _check_record(data: bytes, pos: int) -> str | None:
    if pos + HEADER.size > len(data):
        return "incomplete"
    length, crc = HEADER.unpack_from(data, pos)
    if length < ID_LEN or length > MAX_RECORD:
        return f"record length {length} is impossible (expected {ID_LEN}..{MAX_RECORD})"
    if pos + HEADER.size + length > len(data):
        return "incomplete"
    body = data[pos + HEADER.size : pos + HEADER.size + length]
    if zlib.crc32(body) != crc:
        return f"CRC-32 mismatch (stored {crc:08x}, computed {zlib.crc32(body):08x})"
    return None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _exclusive_lock(path: Path) -> int:
    import fcntl  # noqa: PLC0415 - POSIX only

    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise SpoolError(
            f"spool {path.parent} is in use by another process", hint="give each process its own producer id"
        ) from None
    return fd


def _release(fd: int) -> None:
    import fcntl  # noqa: PLC0415

    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
    except OSError:
        pass
