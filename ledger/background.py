"""A service that runs one loop on its own daemon thread until stopped.

Subclasses give ``name`` and ``_main()``; ``_main`` must return soon after
``self._stop`` is set (use ``self._stop.wait(t)`` for every pause).
"""

from __future__ import annotations

import threading
from pathlib import Path

JOIN_TIMEOUT_S = 30.0


class BackgroundService:
    name = "service"

    def __init__(self) -> None:
        self.log = Path("(stderr)")
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._main, name=f"provault-{self.name}", daemon=True)
        self._thread.start()

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=JOIN_TIMEOUT_S)

    def _main(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
