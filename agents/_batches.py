"""Prediction batches, pure: canonical values and digests, the rows of a batch, how a batch splits into
events, and the PROV document of a batch activity."""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from ledger.core.ids import CONTENT_ID_PREFIX, content_id, is_content_id
from ledger.core.vocab import predict_batch_id

PREDICTIONS_LOGGED = "predictions.logged"
COLUMNS = ("id", "time", "input", "output")
INLINE_OUTPUT_MAX = 256
"""An output whose compact JSON is longer than this many characters is logged as its ``sha256:`` digest."""
MAX_ID_LENGTH = 256
MAX_EVENT_ROW_BYTES = 512 * 1024


# --- pure parts: rows, chunks and the PROV document ------------------------------------


def _json_default(value: Any) -> Any:
    if hasattr(value, "tolist"):  # numpy scalars and arrays, without importing numpy
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def canonical_json(value: Any) -> bytes:
    """Compact, key-sorted UTF-8 JSON: the bytes a JSON input is digested from."""
    text = json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False, default=_json_default
    )
    return text.encode("utf-8")


def input_digest_of(value: Any) -> str | None:
    """The ``sha256:`` content id of an input: bytes as they are, text as UTF-8,
    arrays (anything with ``tobytes``) as their C-order bytes, other values as
    canonical JSON.  ``None`` stays ``None``; raises TypeError for anything else."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return content_id(bytes(value))
    if isinstance(value, str):
        return content_id(value.encode("utf-8"))
    if hasattr(value, "toarray"):  # a sparse row
        value = value.toarray()
    if hasattr(value, "tobytes"):
        if getattr(getattr(value, "dtype", None), "kind", "") == "O":  # object arrays: tobytes() is pointers
            return content_id(canonical_json(value.tolist()))
        return content_id(value.tobytes())
    try:
        return content_id(canonical_json(value))
    except ValueError as e:  # NaN or infinity inside
        raise TypeError(str(e)) from None


def output_value(value: Any) -> tuple[Any, int]:
    """The output as it goes in a row (a short JSON value or a ``sha256:`` digest) and its estimated size."""
    if value is None or isinstance(value, bool):
        return value, 5
    if isinstance(value, int):
        return (value, 20) if abs(value) < 1 << 63 else (str(value), 24)
    if isinstance(value, float):
        return (float(value), 24) if math.isfinite(value) else (repr(float(value)), 6)
    if isinstance(value, str):
        return (value, len(value) + 2) if len(value) <= INLINE_OUTPUT_MAX else (content_id(value.encode("utf-8")), 73)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return content_id(bytes(value)), 73
    if hasattr(value, "tolist"):
        value = value.tolist()
        if not isinstance(value, (list, dict)):
            return output_value(value)
    try:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        try:
            encoded = canonical_json(value)
        except (TypeError, ValueError):
            encoded = json.dumps(value, sort_keys=True, separators=(",", ":"), default=repr).encode("utf-8")
        return content_id(encoded), 73
    if len(text) > INLINE_OUTPUT_MAX:
        return content_id(text.encode("utf-8")), 73
    return value, len(text)


def unix_time_text(t: float) -> str:
    """RFC 3339 UTC text, microseconds and ``Z``, of a ``time.time()`` value (as ``events.format_time`` writes)."""
    us = int(t * 1e6)
    return "%s.%06dZ" % (time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(us // 1_000_000)), us % 1_000_000)  # noqa: UP031


def plan_chunks(ids: Sequence[str], sizes: Sequence[int], *, batch_max: int, max_bytes: int) -> list[tuple[int, int]]:
    """Split rows into events: at most ``batch_max`` rows and ``max_bytes`` each, and
    no prediction id twice in one event (the projector refuses such a batch)."""
    chunks: list[tuple[int, int]] = []
    start, used, seen = 0, 0, set()
    for i, (pid, size) in enumerate(zip(ids, sizes, strict=True)):
        if i > start and (i - start >= batch_max or used + size > max_bytes or pid in seen):
            chunks.append((start, i))
            start, used, seen = i, 0, set()
        used += size
        seen.add(pid)
    if start < len(ids):
        chunks.append((start, len(ids)))
    return chunks


def build_rows(
    items: Sequence[tuple], note: Callable[[str, str], None]
) -> tuple[list[list], list[str], list[int], list[int]]:
    """The data rows of logged ``(id, time, input, output, input_digest)`` items, their ids, estimated
    sizes and item indexes.  Digests and times are made here; ``note(counter, why)`` hears of
    predictions that cannot be logged as given (``invalid``: skipped; ``undigestable``: no input digest)."""
    rows: list[list] = []
    ids: list[str] = []
    sizes: list[int] = []
    firsts: list[int] = []
    sha256, isfinite, gmtime, strftime = hashlib.sha256, math.isfinite, time.gmtime, time.strftime
    second, prefix = -1, ""  # the date part is formatted once per second (this loop is the hot one)
    for k, (pid, t, inp, out, digest) in enumerate(items):
        if type(pid) is not str:
            pid = str(pid)
        if not pid or len(pid) > MAX_ID_LENGTH:
            note("invalid", f"prediction id {pid[:40]!r} is empty or longer than {MAX_ID_LENGTH}")
            continue
        if digest is None:
            if type(inp) is bytes:  # the common case, inline
                digest = CONTENT_ID_PREFIX + sha256(inp).hexdigest()
            elif inp is not None:
                try:
                    digest = input_digest_of(inp)
                except TypeError:
                    note(
                        "undigestable",
                        f"prediction {pid[:80]!r}: input of {type(inp).__name__} cannot be digested "
                        "(logged without it)",
                    )
        elif not is_content_id(digest):
            note(
                "undigestable",
                f"prediction {pid[:80]!r}: input_digest {str(digest)[:40]!r} is not sha256:<hex> (logged without it)",
            )
            digest = None
        kind = type(out)
        if kind is int and -(1 << 63) < out < 1 << 63 or kind is float and isfinite(out) or out is None:
            value, out_size = out, 24
        else:
            value, out_size = output_value(out)
        us = int(t * 1e6)
        if us // 1_000_000 != second:
            second = us // 1_000_000
            prefix = strftime("%Y-%m-%dT%H:%M:%S.", gmtime(second))
        rows.append([pid, "%s%06dZ" % (prefix, us % 1_000_000), digest, value])  # noqa: UP031 - the fastest way
        ids.append(pid)
        sizes.append(len(pid) + out_size + 112)
        firsts.append(k)
    return rows, ids, sizes, firsts


def batch_prov(batch_uuid: str, *, start: str, end: str, count: int, deployment: str, model: str, service: str) -> dict:
    """The PROV document of one batch (vocab ``predictions.logged``)."""
    batch = predict_batch_id(batch_uuid)
    return {
        "activity": {
            batch: {
                "prov:type": "provault:PredictionBatch",
                "prov:startTime": start,
                "prov:endTime": end,
                "provault:predictions": count,
            }
        },
        "used": {
            "_:deployment": {"prov:activity": batch, "prov:entity": deployment},
            "_:model": {"prov:activity": batch, "prov:entity": model},
        },
        "wasAssociatedWith": {"_:service": {"prov:activity": batch, "prov:agent": service}},
    }
