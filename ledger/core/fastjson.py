"""JSON with orjson where it gives what the standard library gives, and the standard library where it does not.

orjson reads an integer beyond 64 bits as a float and refuses to write one;
those go through :mod:`json`, so values stay exact.  Used where JSON is read
or written in bulk: jsonb columns (``ledger.db``), admitted log entries and
projected rows (``query``).
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

# A JSON integer of 19 digits or more, at the top level or as a member or element.  A string that holds
# the same characters only sends its text to the standard library.
_LONG_INTEGER = re.compile(rb"(?:^|[:,\[])\s*-?[0-9]{19,}\s*(?:[,\]}]|$)")


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode JSON text exactly (as :func:`json.loads`), with orjson unless an integer needs more than 64 bits."""
    raw = data.encode() if isinstance(data, str) else bytes(data)
    if _LONG_INTEGER.search(raw):
        return json.loads(raw)
    return orjson.loads(raw)


def dumps(value: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON text of decoded JSON values: orjson, or the standard library for what orjson refuses.

    ``sort_keys`` orders object members by their code points at every level
    (both libraries agree on that order), for a canonical form.

    The values must be JSON's own (decoded from JSON text): orjson writes a
    NaN or an infinity as null, where the standard library writes a token no
    JSON reader takes.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    except TypeError:  # orjson.JSONEncodeError: an integer beyond 64 bits
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False, sort_keys=sort_keys).encode()


__all__ = ["dumps", "loads"]
