"""Answers kept between the pages of one Trace: the later pages continue the pinned walk, they do not walk again.

A page token pins the answer's seq, and an answer as of a seq never changes
(the projection is a function of the log up to it; a rebuild gives the same
tables), so the answer the first page computed is the answer of every later
page.  The cache is bounded by the items it holds (nodes + edges) and by
entries, least recently used first out; a page whose answer was evicted, or
that another server replica answers, walks again and gets the same answer.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable

from .traverse import Trace

MAX_ANSWERS = 32
MAX_ITEMS = 400_000
"""About 400 MB at worst (1 KB per node with its attributes); a 10,000-node impact is ~25k items."""


def _size(answer: Trace) -> int:
    return len(answer.nodes) + len(answer.edges)


class AnswerCache:
    """Thread-safe LRU of :class:`Trace` answers by request key (the request's fields and the pinned seq)."""

    def __init__(self, *, max_answers: int = MAX_ANSWERS, max_items: int = MAX_ITEMS) -> None:
        self.max_answers = max_answers
        self.max_items = max_items
        self._answers: OrderedDict[Hashable, Trace] = OrderedDict()
        self._items = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Trace | None:
        with self._lock:
            answer = self._answers.get(key)
            if answer is None:
                self.misses += 1
                return None
            self._answers.move_to_end(key)
            self.hits += 1
            return answer

    def put(self, key: Hashable, answer: Trace) -> None:
        size = _size(answer)
        if size > self.max_items:
            return
        with self._lock:
            self._pop(key)
            self._answers[key] = answer
            self._items += size
            while len(self._answers) > self.max_answers or self._items > self.max_items:
                _, evicted = self._answers.popitem(last=False)
                self._items -= _size(evicted)

    def discard(self, key: Hashable) -> None:
        """Forget ``key`` (its last page has been served)."""
        with self._lock:
            self._pop(key)

    def _pop(self, key: Hashable) -> None:
        old = self._answers.pop(key, None)
        if old is not None:
            self._items -= _size(old)

    def __len__(self) -> int:
        return len(self._answers)


__all__ = ["MAX_ANSWERS", "MAX_ITEMS", "AnswerCache"]
