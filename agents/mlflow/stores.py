"""MLflow store plugins: ``provault+<URI>`` tracking and registry stores that record while MLflow works unchanged.

Registered through the entry points ``mlflow.tracking_store`` and
``mlflow.model_registry_store`` (``pyproject.toml``) for the schemes in
:data:`SCHEMES`.  Each store builds MLflow's own store for the inner URI and
hands it every call as it is; after the inner store answered, the calls that
say something about lineage put their facts on the :mod:`.recorder`'s queue.
An exception from the inner store propagates unchanged, and nothing is
recorded for that call.

The ``mlflow-artifacts`` artifact repository is registered too: MLflow
resolves ``mlflow-artifacts:`` URIs against the tracking URI, which must then
be ``http(s)``; the repository here strips ``provault+`` first and is
MLflow's own otherwise.
"""

from __future__ import annotations

import inspect
from typing import Any

from mlflow.entities import RunStatus
from mlflow.entities.logged_model_status import LoggedModelStatus
from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository
from mlflow.store.model_registry.abstract_store import AbstractStore as RegistryAbstractStore
from mlflow.store.tracking.abstract_store import AbstractStore as TrackingAbstractStore
from mlflow.tracking._model_registry.utils import _get_store_registry
from mlflow.tracking._tracking_service.utils import _tracking_store_registry, get_tracking_uri

from ._facts import clean_uri, inner_uri
from .recorder import TERMINAL, Recorder, recorder

SCHEMES = ("http", "https", "sqlite", "postgresql", "mysql", "mssql", "file")
"""Inner schemes the plugins are registered for, each as ``provault+<scheme>``."""
_ASYNC = {"log_batch_async", "log_metric_async", "log_param_async", "set_tag_async", "flush_async_logging"}
_ASYNC |= {"end_async_logging", "shut_down_async_logging"}
"""The abstract store's own async logging: it queues into this store's ``log_batch``, so the plugin sees those calls."""


def _delegating(base: type, own: set[str]) -> dict[str, Any]:
    """Methods and properties of ``base`` that hand the call to ``self._inner`` (all but ``own`` and the async ones)."""
    members: dict[str, Any] = {}
    for name, value in inspect.getmembers(base):
        if name.startswith("__") or name in own or name in _ASYNC:
            continue
        if isinstance(value, property):
            members[name] = property(lambda self, _n=name: getattr(self._inner, _n))
        elif callable(value):
            members[name] = _forward(name)
    return members


def _forward(name: str):
    def method(self, *args, **kwargs):
        return getattr(self._inner, name)(*args, **kwargs)

    method.__name__ = name
    return method


class _Wrapping:
    _inner: Any

    @property
    def _recorder(self) -> Recorder:
        """The process's recorder when the call is made (``set_recorder`` takes effect for stores MLflow cached)."""
        return recorder()

    def __getattr__(self, name: str) -> Any:  # what the inner store has beyond the abstract interface
        if name == "_inner":
            raise AttributeError(name)
        return getattr(self._inner, name)

    def __repr__(self) -> str:
        return f"<provault {type(self).__name__} around {self._inner!r}>"


# --- tracking --------------------------------------------------------------------------------


class _TrackingRecording(_Wrapping):
    _tracking: str | None

    def create_run(self, experiment_id, user_id, start_time, tags, run_name):
        run = self._inner.create_run(experiment_id, user_id, start_time, tags, run_name)
        self._recorder.submit("run_created", run, self._tracking)
        return run

    def update_run_info(self, run_id, run_status, end_time, run_name):
        info = self._inner.update_run_info(run_id, run_status, end_time, run_name)
        status = RunStatus.to_string(run_status) if isinstance(run_status, int) else str(run_status)
        if status in TERMINAL:
            self._recorder.submit("run_ended", run_id, status, end_time, self._inner, self._tracking)
        return info

    def log_batch(self, run_id, metrics, params, tags):
        result = self._inner.log_batch(run_id, metrics, params, tags)
        self._recorder.submit("batch", run_id, list(metrics), list(params), list(tags))
        return result

    def log_metric(self, run_id, metric):
        result = self._inner.log_metric(run_id, metric)
        self._recorder.submit("batch", run_id, [metric], [], [])
        return result

    def log_param(self, run_id, param):
        result = self._inner.log_param(run_id, param)
        self._recorder.submit("batch", run_id, [], [param], [])
        return result

    def set_tag(self, run_id, tag):
        result = self._inner.set_tag(run_id, tag)
        self._recorder.submit("batch", run_id, [], [], [tag])
        return result

    def log_inputs(self, run_id, datasets=None, models=None):
        result = self._inner.log_inputs(run_id, datasets=datasets, models=models)
        if datasets:
            self._recorder.submit("inputs", run_id, list(datasets))
        return result

    def finalize_logged_model(self, model_id, status):
        model = self._inner.finalize_logged_model(model_id, status)
        if status == LoggedModelStatus.READY:  # a str enum: MLflow's plain "READY" compares equal too
            self._recorder.submit("model_ready", model)
        return model


def _store_class(name: str, recording: type, base: type, doc: str) -> type:
    """``recording``'s methods, then every other method of MLflow's ``base`` handed to the inner store."""
    own = {n for n in vars(recording) if not n.startswith("__")}
    body = {**_delegating(base, own), "__doc__": doc, "__module__": __name__}
    return type(name, (recording, base), body)


ProvaultTrackingStore = _store_class(
    "ProvaultTrackingStore",
    _TrackingRecording,
    TrackingAbstractStore,
    "MLflow's tracking store for the inner URI, with provault recording beside it.",
)


def _init_tracking(self, inner: Any, store_uri: str) -> None:
    TrackingAbstractStore.__init__(self)  # its async queue logs through this store's log_batch
    self._inner = inner
    self._tracking = clean_uri(store_uri)


ProvaultTrackingStore.__init__ = _init_tracking


def tracking_store(store_uri: str, artifact_uri: str | None = None, **_: Any) -> Any:
    """The ``mlflow.tracking_store`` builder for ``provault+<URI>``."""
    inner = inner_uri(store_uri)
    # the builder itself, not get_store: MLflow holds a lock (not reentrant) while it calls this builder
    build = _tracking_store_registry.get_store_builder(inner)
    return ProvaultTrackingStore(build(store_uri=inner, artifact_uri=artifact_uri), store_uri)


# --- registry --------------------------------------------------------------------------------


class _RegistryRecording(_Wrapping):
    def create_model_version(
        self,
        name,
        source,
        run_id=None,
        tags=None,
        run_link=None,
        description=None,
        local_model_path=None,
        model_id=None,
    ):
        version = self._inner.create_model_version(
            name,
            source,
            run_id=run_id,
            tags=tags,
            run_link=run_link,
            description=description,
            local_model_path=local_model_path,
            model_id=model_id,
        )
        self._recorder.submit("version_created", version)
        return version

    def set_registered_model_alias(self, name, alias, version):
        result = self._inner.set_registered_model_alias(name, alias, version)
        self._recorder.submit("alias_set", name, alias, str(version))
        return result

    def delete_registered_model_alias(self, name, alias):
        result = self._inner.delete_registered_model_alias(name, alias)
        self._recorder.submit("alias_deleted", name, alias)
        return result

    def transition_model_version_stage(self, name, version, stage, archive_existing_versions):
        result = self._inner.transition_model_version_stage(name, version, stage, archive_existing_versions)
        self._recorder.submit("stage", name, str(version), getattr(result, "current_stage", None) or str(stage))
        return result


ProvaultRegistryStore = _store_class(
    "ProvaultRegistryStore",
    _RegistryRecording,
    RegistryAbstractStore,
    "MLflow's model registry store for the inner URI, with provault recording beside it.",
)


def _init_registry(self, inner: Any) -> None:
    self._inner = inner


ProvaultRegistryStore.__init__ = _init_registry


def registry_store(store_uri: str, tracking_uri: str | None = None, **_: Any) -> Any:
    """The ``mlflow.model_registry_store`` builder for ``provault+<URI>``."""
    inner = inner_uri(store_uri)
    build = _get_store_registry().get_store_builder(inner)
    if "tracking_uri" in inspect.signature(build).parameters:  # as MLflow calls them: not every builder takes it
        return ProvaultRegistryStore(build(store_uri=inner, tracking_uri=inner_uri(tracking_uri)))
    return ProvaultRegistryStore(build(store_uri=inner))


# --- artifacts -------------------------------------------------------------------------------


class ArtifactsRepository(MlflowArtifactsRepository):
    """``mlflow-artifacts:`` resolved against the tracking URI without its ``provault+``."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> None:
        super().__init__(
            artifact_uri,
            tracking_uri=inner_uri(tracking_uri or get_tracking_uri()),
            registry_uri=inner_uri(registry_uri),
        )
