"""Pipeline steps: runs that link to the run enclosing them.

:func:`step` works as a context manager and as a decorator (plain or
``async`` functions)::

    with agents.run("nightly-pipeline") as pipeline:
        with agents.step("featurize") as s:      # wasInformedBy the pipeline
            ...

    @agents.step("train")
    def train(): ...                                # wasInformedBy whatever run encloses the call

Each entry into a step is a new run (``provault:run/<uuid>``) whose
``run.started`` says ``wasInformedBy`` the enclosing run or step, found
through a :mod:`contextvars` variable: it follows ``with`` blocks, function
calls and asyncio tasks created inside them, but not new threads (pass
``parent=`` there, or run the thread's target in
``contextvars.copy_context()``).  A step outside any run is a run without a
parent.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar, overload

from .runs import Run, current_run

if TYPE_CHECKING:
    from . import capture
    from .runtime import Agent

F = TypeVar("F", bound=Callable[..., Any])


class Step:
    """A reusable step definition: each ``with`` or call starts a fresh run."""

    def __init__(
        self,
        name: str | None,
        *,
        params: Mapping[str, Any] | None = None,
        agent: Agent | None = None,
        parent: Run | str | None = None,
        repo: str | os.PathLike[str] | None = None,
        author: str | None = None,
        cache: capture.DigestCache | None = None,
    ) -> None:
        self.name = name
        self.params = dict(params or {})
        self.agent = agent
        self.parent = parent
        self.repo = repo
        self.author = author
        self.cache = cache
        self._active: list[Run] = []

    def new_run(self, name: str | None = None) -> Run:
        """A run for one execution of this step, linked to the enclosing run (or the explicit parent)."""
        parent = self.parent if self.parent is not None else current_run()
        return Run(
            name or self.name or "step",
            params=self.params,
            agent=self.agent,
            parent=parent,
            repo=self.repo,
            author=self.author,
            cache=self.cache,
        )

    def __enter__(self) -> Run:
        r = self.new_run()
        r.__enter__()
        self._active.append(r)
        return r

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._active.pop().__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        name = self.name or func.__qualname__
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                with self.new_run(name):
                    return await func(*args, **kwargs)

            return run_async  # type: ignore[return-value]

        @functools.wraps(func)
        def run_sync(*args: Any, **kwargs: Any) -> Any:
            with self.new_run(name):
                return func(*args, **kwargs)

        return run_sync  # type: ignore[return-value]


@overload
def step(name: F, /) -> F: ...
@overload
def step(name: str | None = None, /, **options: Any) -> Step: ...


def step(name: Any = None, /, **options: Any) -> Any:
    """A pipeline step named ``name`` (default: the decorated function's qualified name).

    ``@step``, ``@step()``, ``@step("train")`` and ``with step("train") as run:``
    all work.  Options are those of :func:`agents.run` (``params``, ``agent``,
    ``parent``, ``repo``, ``author``, ``cache``).
    """
    if callable(name):
        return Step(None, **options)(name)
    return Step(name, **options)


__all__ = ["Step", "step"]
