"""Identifiers: UUIDv7 event ids and ``sha256:<hex>`` content ids.

Event ids are UUIDv7 (RFC 9562 §5.7): a 48-bit Unix timestamp in
milliseconds, the version nibble 7, the RFC variant bits ``10`` and 74 bits
that are random at the start of each millisecond.  Within one process ids are
strictly increasing: when the clock has not advanced (or went backwards) the
74-bit tail is incremented by a random step instead of redrawn (RFC 9562
§6.2, method 2), and on the rare overflow the timestamp is carried forward.

Content ids name bytes, not places: ``sha256:`` followed by the 64 lowercase
hex digits of the SHA-256 of the content.  Two agents hashing the same file
derive the same id without talking to each other (DESIGN contract 1).
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import BinaryIO

from .errors import InvalidIdentifier, expected_found

# --- UUIDv7 -----------------------------------------------------------------

_UUID7_TEXT = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TAIL_BITS = 74  # rand_a (12) + rand_b (62)
_TAIL_LIMIT = 1 << _TAIL_BITS
_STEP_BITS = 32  # a random increment of up to 2**32 within one millisecond


def _assemble_uuid7(unix_ms: int, tail: int) -> uuid.UUID:
    rand_a = tail >> 62
    rand_b = tail & ((1 << 62) - 1)
    value = (unix_ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | rand_a << 64 | 0b10 << 62 | rand_b
    return uuid.UUID(int=value)


class Uuid7Generator:
    """Monotonic UUIDv7 source; thread-safe.  Clock and randomness are injectable for tests."""

    def __init__(
        self,
        *,
        clock_ms: Callable[[], int] | None = None,
        randbits: Callable[[int], int] = secrets.randbits,
    ) -> None:
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._randbits = randbits
        self._lock = threading.Lock()
        self._last_ms = -1
        self._tail = 0

    def next(self) -> uuid.UUID:
        with self._lock:
            now = self._clock_ms()
            if now > self._last_ms:
                # A new millisecond: fresh randomness, top bit clear to leave room to count.
                self._last_ms, self._tail = now, self._randbits(_TAIL_BITS - 1)
            else:
                self._tail += 1 + self._randbits(_STEP_BITS)
                if self._tail >= _TAIL_LIMIT:
                    self._last_ms, self._tail = self._last_ms + 1, self._randbits(_TAIL_BITS - 1)
            return _assemble_uuid7(self._last_ms, self._tail)


_GENERATOR = Uuid7Generator()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def new_event_id() -> str:
    """A fresh UUIDv7 in canonical lowercase hyphenated form."""
    return str(_GENERATOR.next())


def parse_uuid7(text: object) -> uuid.UUID:
    """Parse a canonical (lowercase, hyphenated) RFC 9562 version-7 UUID or raise InvalidIdentifier."""
    if not isinstance(text, str):
        raise InvalidIdentifier(expected_found("UUIDv7", "a string", type(text).__name__))
    if not _UUID7_TEXT.fullmatch(text):
        raise InvalidIdentifier(
            expected_found(
                "UUIDv7", "canonical lowercase form like 0190c8a2-7b1e-7c3d-9a4f-1b2c3d4e5f60", repr(text[:64])
            ),
            hint="write the UUID as 36 lowercase characters with hyphens, no braces or urn: prefix",
        )
    u = uuid.UUID(text)
    if u.variant != uuid.RFC_4122:
        raise InvalidIdentifier(expected_found(f"UUID variant of {text}", "the RFC 9562 variant (bits 10)", u.variant))
    if u.version != 7:
        raise InvalidIdentifier(
            expected_found(f"UUID version of {text}", 7, u.version),
            hint="event ids are UUIDv7; generate them with new_event_id()",
        )
    return u


def uuid7_time(u: uuid.UUID | str) -> datetime:
    """The UTC instant (millisecond precision) embedded in a UUIDv7."""
    value = parse_uuid7(u) if isinstance(u, str) else parse_uuid7(str(u))
    return _EPOCH + timedelta(milliseconds=value.int >> 80)


# --- content ids --------------------------------------------------------------

CONTENT_ID_PREFIX = "sha256:"
_CONTENT_ID = re.compile(r"sha256:[0-9a-f]{64}")


def content_id(data: bytes) -> str:
    """``sha256:<64 lowercase hex>`` of ``data``."""
    return CONTENT_ID_PREFIX + hashlib.sha256(data).hexdigest()


def is_content_id(text: object) -> bool:
    return isinstance(text, str) and _CONTENT_ID.fullmatch(text) is not None


def parse_content_id(text: object) -> bytes:
    """The 32-byte digest named by a content id, or InvalidIdentifier saying what is wrong."""
    if not isinstance(text, str):
        raise InvalidIdentifier(expected_found("content id", "a string", type(text).__name__))
    if not text.startswith(CONTENT_ID_PREFIX):
        raise InvalidIdentifier(
            expected_found("content id", "the prefix 'sha256:'", repr(text[:72])),
            hint="content ids are 'sha256:' followed by 64 lowercase hex digits",
        )
    digest = text[len(CONTENT_ID_PREFIX) :]
    if len(digest) != 64:
        raise InvalidIdentifier(expected_found("content id digest length", "64 hex digits", len(digest)))
    if not _CONTENT_ID.fullmatch(text):
        raise InvalidIdentifier(
            expected_found("content id digest", "lowercase hex digits 0-9a-f", repr(digest)),
            hint="lowercase the digest; other characters are not allowed",
        )
    return bytes.fromhex(digest)


class Sha256Digester:
    """Incremental SHA-256 for streaming files into a content id."""

    __slots__ = ("_hash",)

    def __init__(self, data: bytes = b"") -> None:
        self._hash = hashlib.sha256(data)

    def update(self, data: bytes) -> Sha256Digester:
        self._hash.update(data)
        return self

    def update_from(self, stream: BinaryIO, *, chunk_size: int = 1 << 20) -> Sha256Digester:
        """Read ``stream`` to its end in chunks."""
        while chunk := stream.read(chunk_size):
            self._hash.update(chunk)
        return self

    def digest(self) -> bytes:
        return self._hash.digest()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()

    def content_id(self) -> str:
        return CONTENT_ID_PREFIX + self._hash.hexdigest()
