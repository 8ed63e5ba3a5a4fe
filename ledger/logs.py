"""How provault's processes log: to stderr, one line per record, as text or as JSON.

:func:`configure` is called once by the command line's composition root with
the ``[log]`` settings.  Records name what they concern through ``extra``
fields (``event_id``, ``seq``, ``producer_id``, ``reason``, ``dependency``,
``tree_size``); the JSON format carries them as members, the text format
shows the message alone (which already names them for a reader).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

FIELDS = ("event_id", "seq", "producer_id", "reason", "dependency", "tree_size")
"""The structured fields a record may carry, in the order the JSON line lists them."""


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, the structured fields it has, and any exception."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for name in FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class _Stderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (tests and daemons replace it)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property  # type: ignore[override]
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def configure(format: str = "text", level: str = "info") -> None:
    """Send the ``provault`` loggers' records at ``level`` and above to stderr in ``format``; calling again replaces it."""
    root = logging.getLogger("provault")
    for handler in [h for h in root.handlers if isinstance(h, _Stderr)]:
        root.removeHandler(handler)
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if format == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(level.upper())  # ledger.config.LOG_LEVELS are logging's own names
