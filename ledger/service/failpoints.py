"""Crash points for fault tests: die exactly where a real crash would hurt most.

``PROVAULT_TEST_FAILPOINT=name`` (or ``name@N``, the N-th time it is reached)
makes :func:`hit` end the process at once with exit code 86, without any
cleanup, flushing or acknowledging -- as SIGKILL or a power cut would.  Unset,
:func:`hit` costs one dictionary lookup.  Names in use: ``ingest.before_commit``,
``ingest.after_commit`` (committed, not yet acknowledged), ``ingest.after_ack``.
"""

from __future__ import annotations

import os
import threading

ENV = "PROVAULT_TEST_FAILPOINT"
EXIT_CODE = 86

_spec = os.environ.get(ENV, "")
_name, _, _nth = _spec.partition("@")
_remaining = int(_nth) if _nth.isdigit() else 1
_lock = threading.Lock()


def hit(name: str) -> None:
    global _remaining
    if name != _name:
        return
    with _lock:
        _remaining -= 1
        if _remaining > 0:
            return
    os._exit(EXIT_CODE)
