"""Training runs as PROV activities: ``with agents.run("train-fraud", params={...}) as run:``.

A :class:`Run` captures, when it starts, the code commit (``git`` state of the
working directory or of ``repo``), the environment (its content id from
:func:`agents.capture.environment`), the author and the host, and emits
``run.started``.  Inputs (:meth:`Run.use`), outputs (:meth:`Run.produce`)
and metrics (:meth:`Run.metric`) are collected while it runs; leaving the
``with`` block emits ``run.completed``, or ``run.failed`` with the exception
type and message (the exception propagates unchanged).  The PROV shape of
each event is the one fixed in :mod:`ledger.core.vocab`; ``docs/agents.md``
shows examples.

Identifiers of inputs and outputs:

* a local file or directory is named by its content, ``sha256:<hex>``
  (:func:`agents.capture.digest_path`, remembered in a digest cache so an
  unchanged large file is read once);
* a ``sha256:<hex>`` string is taken as an already known content id;
* a URI without local bytes (``s3://…``, ``https://…``, ``gs://…``) is named
  :func:`uri_id`, ``provault:uri/<hex>`` where ``<hex>`` is the SHA-256 of the
  URI text (credentials removed).  Such an id names a *place*, not content:
  the entity says so with ``provault:contentAddressed`` false, and two
  different objects ever stored at one URI share it.  Use a content id when
  you can.

Emitting only writes to the agent's durable spool; delivery happens in the
background (:mod:`agents.runtime`).
"""

from __future__ import annotations

import contextvars
import json
import logging
import math
import os
import re
import threading
from collections import deque
from collections.abc import Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ledger.core.errors import InvalidArgument, ProvaultError, expected_found
from ledger.core.ids import new_event_id
from ledger.core.vocab import run_id

from . import capture
from ._prov import (
    Artifact,
    Context,
    ProvDoc,
    add_code,
    add_person,
    default_cache,
    environment_attributes,
    json_text,
    now_text,
    qname,
    resolve_artifact,
    uri_id,
)

if TYPE_CHECKING:
    from .runtime import Agent

log = logging.getLogger("provault.agent")

MAX_STEPS_PER_METRIC = 1000
"""Step values kept per metric (the latest ones); the final value is always kept."""
MAX_ERROR_CHARS = 2000

_current: contextvars.ContextVar[Run | None] = contextvars.ContextVar("provault_run", default=None)


class RunStateError(ProvaultError):
    """A run was asked to do something its state does not allow (e.g. use an input after it ended)."""

    reason = "run_state"


def current_run() -> Run | None:
    """The run (or pipeline step) whose ``with`` block encloses the caller, in this thread or task."""
    return _current.get()


# --- the run ----------------------------------------------------------------------------


def _parent_id(parent: Run | str | None) -> str | None:
    if parent is None or isinstance(parent, Run):
        return parent.id if parent is not None else None
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", parent):
        return run_id(parent)
    if parent.startswith("provault:run/"):
        return parent
    raise InvalidArgument(expected_found("parent", "a Run, 'provault:run/<uuid>' or a run uuid", repr(parent)))


def _error_text(error: BaseException | str) -> tuple[str, str]:
    """(type name, message) of an exception; builtins unqualified, others as module.QualName."""
    if isinstance(error, str):
        return "", error[:MAX_ERROR_CHARS]
    cls = type(error)
    name = cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"
    return name, str(error)[:MAX_ERROR_CHARS]


class Run:
    """One training run or pipeline step: a ``provault:run/<uuid>`` activity.

    Use it as a context manager (``with run(...) as r:``), or call
    :meth:`start` and then :meth:`complete` or :meth:`fail` yourself (the
    ``provault run`` wrapper does).  Methods are thread-safe.
    """

    def __init__(
        self,
        name: str,
        *,
        params: Mapping[str, Any] | None = None,
        agent: Agent | None = None,
        parent: Run | str | None = None,
        repo: str | os.PathLike[str] | None = None,
        author: str | None = None,
        command: str | None = None,
        cache: capture.DigestCache | None = None,
    ) -> None:
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgument(expected_found("run name", "a non-empty string", repr(name)))
        self.uuid = new_event_id()
        self.id = run_id(self.uuid)
        self.name = name
        self.params: dict[str, Any] = dict(params or {})
        self.parent = _parent_id(parent)
        self.command = command
        self.agent = agent
        self.repo = repo
        self._who = author
        self._cache = cache
        self.context: Context | None = None
        self.inputs: list[Artifact] = []
        self.outputs: list[Artifact] = []
        self.metrics: dict[str, Any] = {}
        self._steps: dict[str, deque[list[Any]]] = {}
        self._late_inputs: list[Artifact] = []
        self.status = "new"
        self.event_ids: list[str] = []
        self._lock = threading.RLock()
        self._token: contextvars.Token[Run | None] | None = None

    def __repr__(self) -> str:
        return f"<Run {self.name!r} {self.id} {self.status}>"

    @property
    def cache(self) -> capture.DigestCache:
        return self._cache if self._cache is not None else default_cache()

    # --- collecting -------------------------------------------------------------------

    def use(self, path_or_uri: str | os.PathLike[str], role: str = "data", name: str | None = None) -> Artifact:
        """Record an input: a local path (digested), a ``sha256:`` id or a URI; returns what was recorded."""
        self._check_open("use an input")
        artifact = resolve_artifact(path_or_uri, role, name, cache=self.cache)
        with self._lock:
            self._check_open("use an input")
            for known in self.inputs:
                if known.id == artifact.id and known.role == artifact.role:
                    return known
            self.inputs.append(artifact)
            if self.status == "running":
                self._late_inputs.append(artifact)
        return artifact

    def produce(self, path: str | os.PathLike[str], kind: str = "model", name: str | None = None) -> Artifact:
        """Record an output: digest ``path`` now (write it completely first); returns what was recorded."""
        self._check_open("produce an output")
        artifact = resolve_artifact(path, kind, name, cache=self.cache)
        with self._lock:
            self._check_open("produce an output")
            if all(o.id != artifact.id for o in self.outputs):
                self.outputs.append(artifact)
        return artifact

    def metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record a metric; the last value wins, values with a ``step`` are also kept as a series."""
        if not isinstance(name, str) or not name:
            raise InvalidArgument(expected_found("metric name", "a non-empty string", repr(name)))
        number = _number(value, name)
        if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
            raise InvalidArgument(expected_found(f"step of metric {name!r}", "an integer or None", repr(step)))
        with self._lock:
            self._check_open("record a metric")
            self.metrics[name] = number
            if step is not None:
                self._steps.setdefault(name, deque(maxlen=MAX_STEPS_PER_METRIC)).append([step, number])

    def _check_open(self, what: str) -> None:
        if self.status in ("completed", "failed"):
            raise RunStateError(
                f"cannot {what}: run {self.name!r} ({self.id}) has already {self.status}",
                hint="record inputs, outputs and metrics inside the run's with-block",
            )

    # --- events -----------------------------------------------------------------------

    def _agent(self) -> Agent:
        if self.agent is None:
            from .runtime import default_agent  # noqa: PLC0415 - builds the agent from configuration on first use

            self.agent = default_agent()
        return self.agent

    def start(self) -> str:
        """Capture code, environment, author and host; emit ``run.started``; return its event id."""
        with self._lock:
            if self.status != "new":
                raise RunStateError(f"run {self.name!r} ({self.id}) was already started")
            agent = self._agent()
            self.context = Context.capture(repo=self.repo, author=self._who, cache=self.cache)
            prov, data = self.started_prov(describe=agent.first_description(self.context.environment.content_id))
            self.event_ids.append(agent.emit("run.started", prov, data=data))
            self.status = "running"
            return self.event_ids[-1]

    def started_prov(self, *, describe: bool = True) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The ``run.started`` PROV document and its ``data``: the environment's description when ``describe``.

        An agent describes an environment once (the installed distributions
        are most of a run.started event); its later runs name it by its
        content id (docs/agents.md).
        """
        assert self.context is not None
        ctx, doc = self.context, ProvDoc()
        doc.element(
            "activity",
            self.id,
            {
                "prov:type": qname("provault:Run"),
                "prov:startTime": now_text(),
                "provault:name": self.name,
                "provault:params": json_text(self.params),
                "provault:command": self.command,
            },
        )
        for artifact in self.inputs:
            self._add_input(doc, artifact)
        add_code(doc, self.id, ctx.code)
        env = ctx.environment
        doc.element("entity", env.content_id, environment_attributes(env))
        doc.relation("used", activity=self.id, entity=env.content_id, role="provault:environment")
        doc.relation("wasAssociatedWith", activity=self.id, agent=add_person(doc, ctx.author))
        host = doc.element("agent", env.host_id, {"prov:type": qname("provault:Host"), "prov:label": env.hostname})
        doc.relation("wasAssociatedWith", activity=self.id, agent=host)
        if self.parent:
            doc.relation("wasInformedBy", informed=self.id, informant=self.parent)
        return doc.build(), ({"environment": json.loads(env.to_json())} if describe else None)

    def _add_input(self, doc: ProvDoc, artifact: Artifact) -> None:
        doc.element("entity", artifact.id, artifact.attributes())
        doc.relation("used", activity=self.id, entity=artifact.id, role=f"provault:{artifact.role}")

    def ended_prov(
        self,
        *,
        error: BaseException | str | None = None,
        exit_code: int | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The ``run.completed`` (no ``error``) or ``run.failed`` PROV document."""
        end, doc = now_text(), ProvDoc()
        attrs: dict[str, Any] = {"prov:endTime": end, "provault:exitCode": exit_code, **(extra or {})}
        if error is None or self.metrics:
            attrs["provault:metrics"] = json_text(self.metrics)
        if self._steps:
            attrs["provault:metricSteps"] = json_text({k: list(v) for k, v in self._steps.items()})
        if error is not None:
            error_type, message = _error_text(error)
            attrs.update({"provault:errorType": error_type or None, "provault:error": message})
        doc.element("activity", self.id, attrs)
        for artifact in self._late_inputs:
            self._add_input(doc, artifact)
        data_inputs = [a.id for a in self.inputs if a.role == "data"]
        for out in self.outputs:
            doc.element("entity", out.id, out.attributes())
            doc.relation("wasGeneratedBy", entity=out.id, activity=self.id, time=end)
            for source in data_inputs:
                if source != out.id:
                    doc.relation("wasDerivedFrom", generatedEntity=out.id, usedEntity=source, activity=self.id)
        return doc.build()

    def complete(self, *, exit_code: int | None = None, extra: Mapping[str, Any] | None = None) -> str:
        """Emit ``run.completed`` (outputs, derivations, metrics); return its event id."""
        return self._end("run.completed", None, exit_code, extra)

    def fail(
        self, error: BaseException | str, *, exit_code: int | None = None, extra: Mapping[str, Any] | None = None
    ) -> str:
        """Emit ``run.failed`` with the error's type and message; return its event id."""
        return self._end("run.failed", error, exit_code, extra)

    def _end(
        self, kind: str, error: BaseException | str | None, exit_code: int | None, extra: Mapping[str, Any] | None
    ) -> str:
        with self._lock:
            if self.status != "running":
                raise RunStateError(
                    f"run {self.name!r} ({self.id}) cannot end: it is {self.status}",
                    hint="start it first (or use it as a context manager)",
                )
            prov = self.ended_prov(error=error, exit_code=exit_code, extra=extra)
            self.event_ids.append(self._agent().emit(kind, prov))
            self.status = "failed" if kind == "run.failed" else "completed"
            return self.event_ids[-1]

    # --- context manager --------------------------------------------------------------

    def __enter__(self) -> Run:
        self.start()
        self._token = _current.set(self)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None
        if exc is None or (isinstance(exc, SystemExit) and exc.code in (0, None)):
            self.complete()
            return
        try:
            self.fail(exc)
        except Exception:
            log.exception("run %s: could not record run.failed", self.id)


def _number(value: Any, name: str) -> float | int | str:
    if isinstance(value, bool):
        raise InvalidArgument(expected_found(f"value of metric {name!r}", "a number", "a boolean"))
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidArgument(expected_found(f"value of metric {name!r}", "a number", type(value).__name__)) from None
    return number if math.isfinite(number) else str(number)


def run(
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    agent: Agent | None = None,
    parent: Run | str | None = None,
    repo: str | os.PathLike[str] | None = None,
    author: str | None = None,
    cache: capture.DigestCache | None = None,
) -> Run:
    """A run to use as a context manager: ``with run("train", params={...}) as r: ...``.

    ``agent`` defaults to :func:`agents.default_agent` (built from
    configuration when the run starts); ``parent`` (a :class:`Run` or a run
    id) links this run to the one that informed it; ``repo`` is where the
    code commit is read (default: the current directory); ``author``
    overrides the git / OS identity.
    """
    return Run(name, params=params, agent=agent, parent=parent, repo=repo, author=author, cache=cache)


__all__ = ["Artifact", "Run", "RunStateError", "current_run", "resolve_artifact", "run", "uri_id"]
