"""Bundle files: the canonical proto3 JSON or deterministic binary encoding, and nothing else."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import json_format
from google.protobuf.message import DecodeError as ProtobufDecodeError

from ledger.core.errors import (
    expected_found,
)
from provault.v1 import query_pb2

from ._errors import MalformedBundle, _at

BUNDLE_FORMAT = "provault.audit-bundle.v1"
MAX_BUNDLE_BYTES = 1 << 30

# --- serialization -------------------------------------------------------------------


def encode_bundle(bundle: query_pb2.AuditBundle, *, binary: bool = False) -> bytes:
    """The canonical bytes of a bundle: proto3 JSON (default) or deterministic binary."""
    if binary:
        return bundle.SerializeToString(deterministic=True)
    doc = json_format.MessageToDict(bundle)
    return (json.dumps(doc, separators=(",", ":"), ensure_ascii=True) + "\n").encode("ascii")


def decode_bundle(data: bytes) -> query_pb2.AuditBundle:
    """Parse bundle bytes (JSON if they start with ``{``, else binary); refuse non-canonical ones.

    Errors are :class:`MalformedBundle` located at step 0, place ``file``.
    """
    with _at(0, "file"):
        return _decode(data)


def _decode(data: bytes) -> query_pb2.AuditBundle:
    if not isinstance(data, (bytes, bytearray)):
        raise MalformedBundle(expected_found("bundle", "bytes", type(data).__name__))
    data = bytes(data)
    if len(data) > MAX_BUNDLE_BYTES:
        raise MalformedBundle(expected_found("bundle size", f"at most {MAX_BUNDLE_BYTES} bytes", len(data)))
    binary = not data.startswith(b"{")
    bundle = _parse_binary(data) if binary else _parse_json(data)
    canonical = encode_bundle(bundle, binary=binary)
    if canonical != data:
        raise MalformedBundle(
            f"the bundle file is not in canonical form: {_first_difference(data, canonical, binary)}",
            hint="bundle files are written by `provault bundle`; a file that was edited, re-formatted or damaged "
            "is refused, because every byte of a bundle must be accounted for",
        )
    return bundle


def _parse_json(data: bytes) -> query_pb2.AuditBundle:
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError as e:
        raise MalformedBundle(f"bundle JSON: byte {e.start} is not ASCII (0x{data[e.start]:02x})") from None
    bundle = query_pb2.AuditBundle()
    try:
        json_format.Parse(text, bundle)
    except (json_format.ParseError, ValueError, RecursionError, TypeError) as e:
        raise MalformedBundle(f"bundle JSON does not parse as an AuditBundle: {str(e)[:300]}") from None
    return bundle


def _parse_binary(data: bytes) -> query_pb2.AuditBundle:
    bundle = query_pb2.AuditBundle()
    try:
        bundle.ParseFromString(data)
    except (ProtobufDecodeError, ValueError, RecursionError) as e:
        raise MalformedBundle(
            f"bundle is neither JSON (first byte 0x{data[:1].hex() or 'none'}, expected '{{') "
            f"nor a binary AuditBundle: {str(e)[:200]}"
        ) from None
    bundle.DiscardUnknownFields()  # unknown fields make the canonical encoding differ: refused
    return bundle


def _first_difference(data: bytes, canonical: bytes, binary: bool) -> str:
    i = next(
        (n for n, (a, b) in enumerate(zip(data, canonical, strict=False)) if a != b), min(len(data), len(canonical))
    )
    if binary:
        return (
            f"byte {i} differs from the canonical encoding of what it parses to ({len(data)} vs {len(canonical)} bytes)"
        )
    found, want = data[max(i - 24, 0) : i + 16], canonical[max(i - 24, 0) : i + 16]
    return f"byte {i} differs from the canonical encoding of what it parses to: found {found!r}, expected {want!r}"


def write_bundle(bundle: query_pb2.AuditBundle, path: str | Path, *, binary: bool = False) -> int:
    """Write the canonical encoding to ``path``; return the number of bytes."""
    data = encode_bundle(bundle, binary=binary)
    Path(path).write_bytes(data)
    return len(data)


def read_bundle(path: str | Path) -> query_pb2.AuditBundle:
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise MalformedBundle(f"cannot read bundle file {path}: {e.strerror or type(e).__name__}") from None
    return decode_bundle(data)
