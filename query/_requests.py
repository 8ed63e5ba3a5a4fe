"""What QueryService accepts: checked request fields, as-of points and page tokens.

Each check raises ``InvalidArgument`` naming the field, what it must be and what came; the servicer calls
them once per request and passes plain values on."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import psycopg

from ledger.core.errors import InvalidArgument, expected_found
from ledger.grpckit.server import MAX_DB_INT
from ledger.grpckit.status import NotCovered, NotFound
from provault.v1 import query_pb2

from . import traverse
from .wire import NODE_TYPES, enum_name

MAX_ID_CHARS = 4_096


def refuse_nul(message: Any, path: str = "request") -> None:
    """INVALID_ARGUMENT for a U+0000 in any string field (no stored id or text can contain one)."""
    for field, value in message.ListFields():
        where = f"{path}.{field.name}"
        values = value if field.is_repeated else [value]
        for v in values:
            if isinstance(v, str) and "\x00" in v:
                raise InvalidArgument(f"{where}: contains a NUL character (U+0000); no id or text in the ledger does")
            if hasattr(v, "ListFields"):
                refuse_nul(v, where)


# --- request fields ------------------------------------------------------------------------


def text_field(value: str, what: str, limit: int = MAX_ID_CHARS) -> str:
    if not value:
        raise InvalidArgument(f"{what}: expected a non-empty string, found an empty field")
    if len(value) > limit:
        raise InvalidArgument(expected_found(what, f"at most {limit} characters (the cap)", f"{len(value)} characters"))
    return value


def capped(value: int, what: str, default: int, cap: int) -> int:
    if value == 0:
        return default
    if value > cap:
        raise InvalidArgument(
            expected_found(what, f"at most {cap} (the server's cap; 0 for the default {default})", value)
        )
    return value


def as_of_point(request: Any) -> tuple[int | None, datetime | None]:
    """The ``as_of`` of a request, checked: ``(seq, None)``, ``(None, time)``, or ``(None, None)`` when absent."""
    if not request.HasField("as_of"):
        return None, None
    point = request.as_of.WhichOneof("point")
    if point is None:
        raise InvalidArgument("as_of: expected exactly one of seq or time, found neither")
    if point == "seq":
        if request.as_of.seq > MAX_DB_INT:
            raise InvalidArgument(expected_found("as_of.seq", f"a seq in 0..{MAX_DB_INT}", request.as_of.seq))
        return request.as_of.seq, None
    return None, request.as_of.time.ToDatetime(tzinfo=UTC)


def resolve_as_of(conn: psycopg.Connection, request: Any) -> int:
    """The seq a request's ``as_of`` names; the projection's position when absent."""
    return resolve_point(conn, *as_of_point(request))


def resolve_point(conn: psycopg.Connection, seq: int | None, when: datetime | None) -> int:
    """The seq of a point in history given as a seq or a time; the projection's position when neither."""
    if seq is not None:
        return traverse.pin_as_of(conn, seq)
    if when is None:
        seq = traverse.position(conn)
        if seq < 0:
            raise NotCovered("nothing is projected yet", hint="retry once the projector has read the log")
        return seq
    seq = traverse.resolve_as_of(conn, time=when)
    if seq is None or seq < 0:
        raise NotFound(f"as_of {when.isoformat()} is before the first entry of the log: nothing existed yet")
    return seq


# --- page tokens ---------------------------------------------------------------------------

_TOKEN_PREFIX = "pv1."


def fingerprint(request: Any) -> str:
    """A digest of every request field but the page token."""
    copy = type(request)()
    copy.CopyFrom(request)
    copy.ClearField("page_token")
    return hashlib.sha256(copy.SerializeToString(deterministic=True)).hexdigest()[:24]


def encode_token(kind: str, fingerprint: str, **fields: Any) -> str:
    body = json.dumps({"k": kind, "f": fingerprint, **fields}, separators=(",", ":"), sort_keys=True).encode()
    return _TOKEN_PREFIX + base64.urlsafe_b64encode(body).decode().rstrip("=")


def decode_token(token: str, kind: str, fingerprint: str) -> dict[str, Any]:
    """The fields of a page token of ``kind`` for a request with ``fingerprint``; INVALID_ARGUMENT otherwise."""
    bad = InvalidArgument(
        expected_found("page_token", "the next_page_token of a previous response", repr(token[:40])),
        hint="start again with an empty page_token",
    )
    if not token.startswith(_TOKEN_PREFIX) or len(token) > 4096:
        raise bad
    body = token[len(_TOKEN_PREFIX) :]
    try:
        fields = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (ValueError, binascii.Error):
        raise bad from None
    if not isinstance(fields, dict) or fields.get("k") != kind or not isinstance(fields.get("s"), int):
        raise bad
    if fields["s"] < 0 or not isinstance(fields.get("a"), str | None):
        raise bad
    if fields.get("f") != fingerprint:
        raise InvalidArgument(
            "page_token: expected the same request fields as the page it came from, found different ones",
            hint="pass the token back with otherwise identical fields, or start again without it",
        )
    return fields


def token_offset(value: Any) -> int:
    if not isinstance(value, int) or value < 0:
        raise InvalidArgument(expected_found("page_token", "a trace token", "a token without a valid offset"))
    return value


def node_type_name(value: int) -> str | None:
    names = {v: k for k, v in NODE_TYPES.items()}
    if value not in names:
        raise InvalidArgument(expected_found("type", "a NodeType", enum_name(query_pb2.NodeType, value)))
    return names[value]
