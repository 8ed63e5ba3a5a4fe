"""The plugin's recorder: MLflow calls become provault events on a thread of their own.

MLflow's call path only puts a small tuple on a queue (after the inner store
has answered); one background thread keeps each run's params, metrics and
inputs, digests logged models, signs and spools the events and writes the
marks the import reads.  Nothing it does can fail or slow an MLflow call:
an error is logged on ``provault.mlflow`` (the first one, then every 100th)
and counted in :attr:`Recorder.stats`.

At interpreter exit the recorder ends MLflow's active run first (MLflow
would, later than provault's agent closes), then drains its queue within
:data:`DRAIN_TIMEOUT_S`, before the agent delivers what it can.
"""

from __future__ import annotations

import atexit
import dataclasses
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

from ledger.core.ids import new_event_id
from ledger.core.vocab import MODEL_UNDEPLOYED
from ledger.metrics import REGISTRY

from .. import capture
from .._prov import Context, now_text
from . import _facts, _mapping
from ._mapping import DEPLOY_STAGES, RunFacts, VersionFacts
from ._marks import Marks

if TYPE_CHECKING:
    from ..runtime import Agent

log = logging.getLogger("provault.mlflow")

QUEUE_MAX = 100_000
"""MLflow calls waiting to be recorded at most; beyond it a call is counted as dropped, never waited for."""
DRAIN_TIMEOUT_S = 60.0
MAX_OPEN_RUNS = 10_000
"""Runs whose facts are kept while they are open; past it the oldest is let go (its end is then read from MLflow)."""
TERMINAL = {"FINISHED", "FAILED", "KILLED"}


@dataclass
class RecorderStats:
    recorded: int = 0
    """Events spooled."""
    failures: int = 0
    dropped: int = 0
    """Calls not recorded because the queue was full."""
    last_error: str | None = None


class Recorder:
    """Turns MLflow store calls into events; thread-safe :meth:`submit`, one worker thread."""

    def __init__(
        self,
        agent_factory: Callable[[], tuple[Agent, Marks]] | None = None,
        *,
        who: str | None = None,
        capture_context: bool = True,
    ) -> None:
        self._factory = agent_factory or _default_agent_and_marks
        self._agent: Agent | None = None
        self._marks: Marks | None = None
        self._who = who
        self._capture_context = capture_context
        self.stats = RecorderStats()
        self.runs: dict[str, RunFacts] = {}
        self._context: Context | None = None
        self._queue: queue.Queue[tuple[str, tuple[Any, ...]] | None] = queue.Queue(QUEUE_MAX)
        self._idle = threading.Condition()
        self._busy = 0
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._closed = False

    # --- MLflow's side ---------------------------------------------------------------------

    def submit(self, what: str, *args: Any) -> None:
        """Queue one store call's facts (never blocks, never raises)."""
        if self._closed:
            return
        try:
            self._ensure_thread()
            with self._idle:
                self._busy += 1
            self._queue.put_nowait((what, args))
        except queue.Full:
            with self._idle:
                self._busy -= 1
                self._idle.notify_all()
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
                log.error("mlflow: %d call(s) not recorded: the recorder's queue is full", self.stats.dropped)
        except Exception:
            log.exception("mlflow: could not queue %s for recording", what)

    def flush(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """Wait until every queued call is recorded (True) or ``timeout`` passes (False)."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def close(self, timeout: float = DRAIN_TIMEOUT_S) -> bool:
        """Record what is queued, stop the worker, close the marks (the agent is the process's; it closes itself)."""
        drained = self.flush(timeout)
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(5)
        if not drained:
            log.error("mlflow: %d call(s) were still unrecorded after %.0f s at exit", self._busy, timeout)
        if self._marks is not None:
            self._marks.close()
            self._marks = None
        return drained

    def _ensure_thread(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="provault-mlflow", daemon=True)
                self._thread.start()

    # --- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            what, args = item
            try:
                getattr(self, f"_on_{what}")(*args)
            except Exception as e:
                self._failed(what, e)
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def _failed(self, what: str, e: BaseException) -> None:
        self.stats.failures += 1
        self.stats.last_error = f"{what}: {type(e).__name__}: {e}"
        if self.stats.failures == 1:
            log.error("mlflow: %s was not recorded in provault: %s", what, e, exc_info=e)
        elif self.stats.failures % 100 == 0:
            log.error("mlflow: %d MLflow calls not recorded so far; the latest: %s", self.stats.failures, e)

    def _open(self) -> tuple[Agent, Marks]:
        if self._agent is None:
            self._agent, self._marks = self._factory()
            # registered after the agent's own atexit hook, so it runs before the agent closes
            atexit.register(self._at_exit)
        assert self._marks is not None
        return self._agent, self._marks

    def _at_exit(self) -> None:
        try:
            from mlflow.tracking import fluent  # noqa: PLC0415 - only when MLflow is in use

            fluent._safe_end_run()  # what MLflow's own exit hook does, but while provault's agent is still open
        except Exception:
            log.debug("mlflow: ending the active run at exit failed", exc_info=True)
        self.close(DRAIN_TIMEOUT_S)

    def emit(self, kind: str, prov: dict, *, data: dict | None = None, when: datetime | None = None) -> str:
        agent, _ = self._open()
        event_id = agent.emit(kind, prov, data=data, time=when)
        if event_id:
            self.stats.recorded += 1
        return event_id

    @property
    def marks(self) -> Marks:
        return self._open()[1]

    def who(self) -> str:
        """Who this client acts as in the registry: its MLflow user name, else its git / OS identity."""
        if self._who is None:
            self._who = os.environ.get("MLFLOW_TRACKING_USERNAME") or capture.author().who
        return self._who

    def _process_context(self) -> Context | None:
        if not self._capture_context:
            return None
        if self._context is None:
            self._context = Context.capture()
        return self._context

    def _run_facts(self, run_id: str) -> RunFacts:
        facts = self.runs.get(run_id)
        if facts is None:
            while len(self.runs) >= MAX_OPEN_RUNS:
                oldest = next(iter(self.runs))
                del self.runs[oldest]
                log.warning(
                    "mlflow: run %s has not ended after %d later runs; its facts were let go, and its end, if it comes, "
                    "is recorded from what MLflow's store holds",
                    oldest,
                    MAX_OPEN_RUNS,
                )
            facts = self.runs[run_id] = RunFacts(run_id=run_id)
        return facts

    # --- tracking calls --------------------------------------------------------------------

    def _on_run_created(self, run: Any, tracking: str | None) -> None:
        info = run.info
        facts = self._run_facts(info.run_id)
        facts.experiment_id = str(info.experiment_id)
        facts.name = info.run_name
        facts.user = info.user_id
        facts.start_ms = info.start_time
        facts.tracking = tracking
        _facts.merge_tags(facts, run.data.tags.items())
        context = self._process_context()
        agent, marks = self._open()
        describe = context is not None and agent.first_description(context.environment.content_id)
        prov, data = _mapping.run_started(facts, context, describe=describe)
        event_id = self.emit("run.started", prov, data=data)
        marks.put(f"run:{facts.run_id}:start", event_id)

    def _on_batch(self, run_id: str, metrics: list, params: list, tags: list) -> None:
        facts = self._run_facts(run_id)
        for m in metrics:
            facts.add_metric(m.key, m.value, m.step, m.timestamp)
        for p in params:
            facts.params[p.key] = p.value
        _facts.merge_tags(facts, ((t.key, t.value) for t in tags))

    def _on_inputs(self, run_id: str, datasets: list) -> None:
        facts = self._run_facts(run_id)
        for dataset_input in datasets:
            facts.add_input(_facts.dataset_facts(dataset_input))

    def _on_run_ended(self, run_id: str, status: str, end_ms: int | None, store: Any, tracking: str | None) -> None:
        facts = self.runs.pop(run_id, None)
        if facts is None or facts.start_ms is None:
            # a run this process did not start (resumed elsewhere): what MLflow holds, fetched off the call path
            whole = _facts.run_facts(store.get_run(run_id), tracking=tracking)
            if facts is not None:
                whole.models.update(facts.models)
            facts, with_start = whole, True
        else:
            with_start = False
        facts.status, facts.end_ms = status, end_ms
        kind, prov = _mapping.run_ended(facts, with_start=with_start)
        event_id = self.emit(kind, prov)
        self.marks.put(f"run:{run_id}:end", event_id)

    def _on_model_ready(self, model: Any) -> None:
        facts = _facts.model_facts(model)
        run = self.runs.get(facts.run_id) if facts.run_id else None
        if run is not None:
            run.models[facts.model_id] = facts.content.id if facts.content is not None else None
        event_id = self.emit("model.registered", _mapping.logged_model(facts, run))
        self.marks.put(f"model:{facts.model_id}", event_id, facts.content.id if facts.content is not None else None)

    # --- registry calls --------------------------------------------------------------------

    def _on_version_created(self, version: Any) -> None:
        facts = version_facts(version, self.marks)
        event_id = self.emit("model.registered", _mapping.version_registered(facts, self.who()))
        self.marks.put(f"version:{facts.name}/{facts.version}", event_id, facts.content)

    def _on_alias_set(self, name: str, alias: str, version: str) -> None:
        record_alias(self, name, alias, str(version), who=self.who())

    def _on_alias_deleted(self, name: str, alias: str) -> None:
        record_alias_deleted(self, name, alias, who=self.who())

    def _on_stage(self, name: str, version: str, stage: str) -> None:
        record_stage(self, name, str(version), stage, who=self.who())


def version_facts(version: Any, marks: Marks) -> VersionFacts:
    """A ``mlflow.entities.model_registry.ModelVersion``, with the content of its logged model when it was recorded."""
    facts = VersionFacts(
        name=version.name,
        version=str(version.version),
        source=_facts.clean_uri(version.source),
        run_id=version.run_id or None,
        model_id=getattr(version, "model_id", None) or None,
        description=version.description,
        created_ms=version.creation_timestamp,
    )
    return with_content(facts, marks)


def with_content(facts: VersionFacts, marks: Marks) -> VersionFacts:
    """``facts`` with the content id of its logged model, when the plugin or an import digested that model."""
    content = marks.value(f"model:{facts.logged_model}") if facts.logged_model is not None else None
    return dataclasses.replace(facts, content=content) if content else facts


class _Emitter(Protocol):
    """What :func:`record_alias` and friends need: the recorder, the webhook receiver and the import all are one."""

    marks: Marks

    def emit(self, kind: str, prov: dict, *, data: dict | None = None, when: datetime | None = None) -> str: ...


def _version_content(marks: Marks, name: str, version: str) -> str | None:
    return marks.value(f"version:{name}/{version}")


def _deploy(emitter: _Emitter, name: str, version: str, target: str, deployment: str, *, who, when, extra) -> str:
    prov = _mapping.deployed(
        name=name,
        version=version,
        target=target,
        deployment=deployment,
        uuid=new_event_id(),
        who=who,
        time=when or now_text(),
        content=_version_content(emitter.marks, name, version),
        extra=extra,
    )
    return emitter.emit("model.deployed", prov)


def _undeploy(emitter: _Emitter, name: str, target: str, *, version: str | None, who, when, extra) -> str:
    prov = _mapping.undeployed(
        target=target, uuid=new_event_id(), who=who, time=when or now_text(), name=name, version=version, extra=extra
    )
    return emitter.emit(MODEL_UNDEPLOYED, prov)


def record_alias(
    emitter: _Emitter, name: str, alias: str, version: str, *, who: str | None, when: str | None = None, extra=None
) -> str:
    """``models:/<name>@<alias>`` serves ``version`` from now: a ``model.deployed``."""
    extra = {"provault:alias": alias, "provault:version": version, **(extra or {})}
    target = _mapping.alias_target(name, alias)
    event_id = _deploy(emitter, name, version, target, f"{name}@{alias}", who=who, when=when, extra=extra)
    emitter.marks.put(f"alias:{name}@{alias}={version}", event_id)
    return event_id


def record_alias_deleted(emitter: _Emitter, name: str, alias: str, *, who: str | None, extra=None) -> str:
    """The alias is gone: a ``model.undeployed`` of its target."""
    extra = {"provault:alias": alias, **(extra or {})}
    return _undeploy(emitter, name, _mapping.alias_target(name, alias), version=None, who=who, when=None, extra=extra)


def record_stage(emitter: _Emitter, name: str, version: str, stage: str, *, who: str | None, when=None) -> str:
    """A version entered ``stage``: deployed at ``models:/<name>/<stage>`` for Staging / Production, else taken off."""
    extra = {"provault:stage": stage, "provault:version": version}
    if stage in DEPLOY_STAGES:
        target = _mapping.stage_target(name, stage)
        event_id = _deploy(emitter, name, version, target, f"{name}/{stage}", who=who, when=when, extra=extra)
    else:
        event_id = _undeploy(
            emitter, name, f"models:/{name}/{version}", version=version, who=who, when=when, extra=extra
        )
    emitter.marks.put(f"stage:{name}/{version}={stage}", event_id)
    return event_id


# --- the process's recorder ------------------------------------------------------------------


def _default_agent_and_marks() -> tuple[Agent, Marks]:
    from ledger.config import load_settings  # noqa: PLC0415 - configuration is read on first use

    from ..runtime import default_agent  # noqa: PLC0415

    settings = load_settings()
    return default_agent(settings), Marks(settings.data_dir / "producers")


_recorder: Recorder | None = None
_recorder_lock = threading.Lock()


def recorder() -> Recorder:
    """The process-wide recorder the store plugins share."""
    global _recorder
    with _recorder_lock:
        if _recorder is None:
            _recorder = Recorder()
        return _recorder


def set_recorder(new: Recorder | None) -> Recorder | None:
    """Replace the process-wide recorder (tests, and programs that build their own agent); returns the old one."""
    global _recorder
    with _recorder_lock:
        old, _recorder = _recorder, new
        return old


class RecorderCollector(Collector):
    """``provault_mlflow_calls_total``: the process recorder's counts, read when Prometheus scrapes."""

    def collect(self):
        calls = CounterMetricFamily(
            "provault_mlflow_calls",
            "MLflow store calls the plugin recorded as events, failed to record, or dropped (queue full).",
            labels=("outcome",),
        )
        current = _recorder
        if current is not None:
            calls.add_metric(("recorded",), current.stats.recorded)
            calls.add_metric(("failed",), current.stats.failures)
            calls.add_metric(("dropped",), current.stats.dropped)
        yield calls


REGISTRY.register(RecorderCollector())
