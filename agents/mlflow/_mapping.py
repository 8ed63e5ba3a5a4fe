"""MLflow's runs, logged models and registry changes as provault PROV documents (docs/mlflow.md).

Pure: the functions here take plain values (the ``*Facts`` below, built from
MLflow's entities by :mod:`._facts`, from a webhook's JSON, or by the import)
and return the events to emit.  The plugin, the webhook receiver and the
import share them, so the three describe the same nodes the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ledger.core.events import format_time
from ledger.core.vocab import (
    MODEL_UNDEPLOYED,
    deploy_activity_id,
    deployment_id,
    git_id,
    mlflow_model_id,
    mlflow_run_id,
    mlflow_version_id,
    undeploy_activity_id,
)

from .._prov import Artifact, Context, ProvDoc, add_code, environment_attributes, json_text, jsonable, qname
from ..assets import agent_ref
from ..runs import MAX_ERROR_CHARS, MAX_STEPS_PER_METRIC

DEPLOY_STAGES = frozenset({"Staging", "Production"})
"""Stages a version is served from; a transition to another one (Archived, None) takes it off its target."""
_SYSTEM_TAGS = {
    "mlflow.user",
    "mlflow.source.name",
    "mlflow.source.type",
    "mlflow.source.git.commit",
    "mlflow.source.git.repoURL",
    "mlflow.source.git.branch",
    "mlflow.parentRunId",
    "mlflow.runName",
    "mlflow.log-model.history",
}
"""Tags recorded as their own attributes or relations (or, for the model history, as the models), not in ``provault:tags``."""


@dataclass(frozen=True, slots=True, kw_only=True)
class DatasetFacts:
    """One dataset a run logged with ``log_input``: the entity it is, and what MLflow says about it."""

    id: str
    """``sha256:`` when its source is local bytes, else ``provault:uri/…`` or ``provault:mlflow/dataset/…``."""
    name: str
    digest: str
    """MLflow's own digest of it."""
    context: str | None = None
    source_type: str | None = None
    source: str | None = None
    schema: str | None = None
    profile: str | None = None
    uri: str | None = None
    size: int | None = None
    content_addressed: bool = True

    @property
    def role(self) -> str:
        return "data" if self.context in (None, "", "training", "train") else "evaluation"

    def attributes(self) -> dict[str, Any]:
        attrs = {
            "prov:type": qname("provault:Dataset"),
            "prov:label": self.name,
            "provault:mlflowDigest": self.digest,
            "provault:sourceType": self.source_type,
            "provault:source": self.source,
            "provault:schema": self.schema,
            "provault:profile": self.profile,
            "provault:uri": self.uri,
            "provault:bytes": self.size,
        }
        if not self.content_addressed:
            attrs["provault:contentAddressed"] = False
        return {k: v for k, v in attrs.items() if v is not None}


@dataclass(slots=True, kw_only=True)
class RunFacts:
    """What is known of one MLflow run (mutable: the plugin fills it in as the calls arrive)."""

    run_id: str
    experiment_id: str | None = None
    experiment_name: str | None = None
    name: str | None = None
    user: str | None = None
    start_ms: int | None = None
    end_ms: int | None = None
    status: str = "RUNNING"
    tracking: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, list[list[Any]]] = field(default_factory=dict)
    inputs: dict[tuple[str, str], DatasetFacts] = field(default_factory=dict)
    models: dict[str, str | None] = field(default_factory=dict)
    """Logged models of the run: MLflow model id -> content id (``sha256:``) once digested, else None."""
    latest: dict[str, tuple[int, int]] = field(default_factory=dict, repr=False)
    """(step, timestamp) of each metric's kept value: MLflow's latest is the highest step, then the latest time."""

    @property
    def id(self) -> str:
        return mlflow_run_id(self.run_id)

    def add_metric(self, key: str, value: Any, step: int | None, timestamp: int | None) -> None:
        number = jsonable(value)  # NaN and infinities as text, as the SDK records them
        order = (step or 0, timestamp or 0)
        if key not in self.metrics or order >= self.latest[key]:
            self.metrics[key] = number
            self.latest[key] = order
        if step is not None:
            series = self.steps.setdefault(key, [])
            if series and series[-1] == [step, number]:
                return  # autologging logs some metrics twice in a row
            series.append([step, number])
            if len(series) > MAX_STEPS_PER_METRIC:
                del series[: len(series) - MAX_STEPS_PER_METRIC]

    def add_input(self, dataset: DatasetFacts) -> None:
        self.inputs.setdefault((dataset.id, dataset.role), dataset)


def ms_datetime(ms: int | None) -> datetime | None:
    """An MLflow time (milliseconds since the epoch) as an aware UTC datetime."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


def ms_time(ms: int | None) -> str | None:
    """An MLflow time as an event time."""
    when = ms_datetime(ms)
    return None if when is None else format_time(when)


def who_id(who: str | None) -> str | None:
    """A person for an MLflow user name (or a provault agent id as is); None when nobody is known."""
    return agent_ref(who) if who and who.strip() else None


def _add_agent(doc: ProvDoc, who: str | None, *, label: str | None = None) -> str | None:
    agent = who_id(who)
    if agent is None:
        return None
    kind = "prov:Person" if agent.startswith("provault:person/") else "prov:SoftwareAgent"
    return doc.element("agent", agent, {"prov:type": qname(kind), "prov:label": label or who})


# --- runs ------------------------------------------------------------------------------------


def _run_attributes(run: RunFacts) -> dict[str, Any]:
    tags = run.tags
    user_tags = {k: v for k, v in tags.items() if k not in _SYSTEM_TAGS}
    return {
        "prov:type": qname("provault:Run"),
        "prov:startTime": ms_time(run.start_ms),
        "prov:label": run.name or tags.get("mlflow.runName"),
        "provault:name": run.name or tags.get("mlflow.runName"),
        "provault:mlflowRunId": run.run_id,
        "provault:experiment": run.experiment_id,
        "provault:experimentName": run.experiment_name,
        "provault:tracking": run.tracking,
        "provault:entryPoint": tags.get("mlflow.source.name"),
        "provault:sourceType": tags.get("mlflow.source.type"),
        "provault:tags": json_text(user_tags) if user_tags else None,
    }


def _add_start(doc: ProvDoc, run: RunFacts, context: Context | None) -> None:
    """The run's start: the activity, its code, its author, its parent, and (in process) environment and host."""
    doc.element("activity", run.id, _run_attributes(run))
    commit = run.tags.get("mlflow.source.git.commit")
    if context is not None and not isinstance(context.code, str) and getattr(context.code, "commit", None) == commit:
        add_code(doc, run.id, context.code)  # this process's own capture: dirty state and diff digest as well
    elif commit:
        doc.element(
            "entity",
            git_id(commit),
            {
                "prov:type": qname("provault:Code"),
                "provault:commit": commit,
                "provault:remote": run.tags.get("mlflow.source.git.repoURL"),
                "provault:branch": run.tags.get("mlflow.source.git.branch"),
            },
        )
        doc.relation("used", activity=run.id, entity=git_id(commit), role="provault:code")
    else:
        doc.element("activity", run.id, {"provault:codeUnknown": "MLflow recorded no git commit for this run"})
    author = _add_agent(doc, run.user or run.tags.get("mlflow.user"))
    if author is not None:
        doc.relation("wasAssociatedWith", activity=run.id, agent=author)
    parent = run.tags.get("mlflow.parentRunId")
    if parent:
        doc.relation("wasInformedBy", informed=run.id, informant=mlflow_run_id(parent))
    if context is not None:
        env = context.environment
        doc.element("entity", env.content_id, environment_attributes(env))
        doc.relation("used", activity=run.id, entity=env.content_id, role="provault:environment")
        host = doc.element("agent", env.host_id, {"prov:type": qname("provault:Host"), "prov:label": env.hostname})
        doc.relation("wasAssociatedWith", activity=run.id, agent=host)


def run_started(run: RunFacts, context: Context | None = None, *, describe: bool = False) -> tuple[dict, dict | None]:
    """``run.started``: PROV and ``data`` (the environment's description when ``describe``)."""
    doc = ProvDoc()
    _add_start(doc, run, context)
    data = {"environment": json.loads(context.environment.to_json())} if context is not None and describe else None
    return doc.build(), data


def run_ended(run: RunFacts, *, with_start: bool = False) -> tuple[str, dict]:
    """``run.completed`` (FINISHED) or ``run.failed`` (FAILED, KILLED): ``(kind, prov)``.

    ``with_start`` puts the start in the same event (the import records a
    finished run as one event).
    """
    doc = ProvDoc()
    if with_start:
        _add_start(doc, run, None)
    attrs: dict[str, Any] = {
        "prov:endTime": ms_time(run.end_ms),
        "provault:mlflowStatus": run.status,
        "provault:params": json_text(run.params),
        "provault:metrics": json_text(run.metrics),
        "provault:metricSteps": json_text(run.steps) if run.steps else None,
    }
    failed = run.status != "FINISHED"
    if failed:
        attrs["provault:error"] = f"the MLflow run ended with status {run.status}"[:MAX_ERROR_CHARS]
    doc.element("activity", run.id, attrs)
    for dataset in run.inputs.values():
        doc.element("entity", dataset.id, dataset.attributes())
        doc.relation("used", activity=run.id, entity=dataset.id, role=f"provault:{dataset.role}")
    for model_id, content in run.models.items():
        _add_model_output(doc, run, model_id, content)
    return ("run.failed" if failed else "run.completed"), doc.build()


def _training_data(run: RunFacts) -> list[str]:
    return [d.id for d in run.inputs.values() if d.role == "data"]


def _add_model_output(doc: ProvDoc, run: RunFacts, model_id: str, content: str | None) -> None:
    general = mlflow_model_id(model_id)
    doc.element("entity", general, {"prov:type": qname("provault:Model"), "provault:mlflowModelId": model_id})
    doc.relation("wasGeneratedBy", entity=general, activity=run.id)
    if content is not None:
        doc.relation("wasGeneratedBy", entity=content, activity=run.id)
        for source in _training_data(run):
            doc.relation("wasDerivedFrom", generatedEntity=content, usedEntity=source, activity=run.id)


# --- logged models ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelFacts:
    """An MLflow 3 logged model, with the content id of its artifacts once digested."""

    model_id: str
    name: str | None
    run_id: str | None
    artifact_location: str | None
    content: Artifact | None
    model_type: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    created_ms: int | None = None
    digest_error: str | None = None
    """Why the artifacts could not be digested (the model is then recorded by its MLflow id only)."""


def logged_model(model: ModelFacts, run: RunFacts | None) -> dict:
    """``model.registered`` of a logged model: its content, generated by the run, a specialization of the MLflow model."""
    doc = ProvDoc()
    general = mlflow_model_id(model.model_id)
    doc.element(
        "entity",
        general,
        {
            "prov:type": qname("provault:Model"),
            "prov:label": model.name,
            "provault:name": model.name,
            "provault:mlflowModelId": model.model_id,
            "provault:uri": f"models:/{model.model_id}",
            "provault:artifactLocation": model.artifact_location,
            "provault:modelType": model.model_type,
            "provault:params": json_text(dict(model.params)) if model.params else None,
            "provault:digestUnknown": model.digest_error,
            "provault:created": ms_time(model.created_ms),
        },
    )
    activity = mlflow_run_id(model.run_id) if model.run_id else None
    if activity is not None:
        doc.relation("wasGeneratedBy", entity=general, activity=activity)
    content = model.content
    if content is not None:
        attrs = {
            "prov:type": qname("provault:Model"),
            "prov:label": model.name,
            "provault:name": model.name,
            "provault:uri": model.artifact_location,
            "provault:bytes": content.size,
            "provault:files": content.files if content.files not in (None, 1) else None,
        }
        doc.element("entity", content.id, attrs)
        doc.relation("specializationOf", specificEntity=content.id, generalEntity=general)
        if activity is not None:
            doc.relation("wasGeneratedBy", entity=content.id, activity=activity)
            for source in _training_data(run) if run is not None else ():
                doc.relation("wasDerivedFrom", generatedEntity=content.id, usedEntity=source, activity=activity)
    return doc.build()


# --- the registry ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionFacts:
    """A registered model version, as ``create_model_version`` or the ``model_version.created`` webhook says."""

    name: str
    version: str
    source: str | None = None
    run_id: str | None = None
    model_id: str | None = None
    description: str | None = None
    created_ms: int | None = None
    content: str | None = None
    """The content id of the version's model, when it is known."""

    @property
    def id(self) -> str:
        return mlflow_version_id(self.name, self.version)

    @property
    def logged_model(self) -> str | None:
        """The MLflow model it was registered from (its ``model_id``, or a ``models:/m-…`` source)."""
        if self.model_id:
            return self.model_id
        if self.source and self.source.startswith("models:/m-") and "/" not in self.source[len("models:/") :]:
            return self.source[len("models:/") :]
        return None

    @property
    def source_run(self) -> str | None:
        if self.run_id:
            return self.run_id
        if self.source and self.source.startswith("runs:/"):
            return self.source[len("runs:/") :].split("/", 1)[0] or None
        return None


def version_registered(version: VersionFacts, who: str | None, *, actor_unknown: str | None = None) -> dict:
    """``model.registered`` of a registry version: derived from its logged model (or its run's), attributed to who."""
    doc = ProvDoc()
    doc.element(
        "entity",
        version.id,
        {
            "prov:type": qname("provault:Model"),
            "prov:label": f"{version.name} v{version.version}",
            "provault:name": version.name,
            "provault:version": version.version,
            "provault:uri": f"models:/{version.name}/{version.version}",
            "provault:source": version.source,
            "provault:description": version.description or None,
            "provault:created": ms_time(version.created_ms),
            "provault:actorUnknown": actor_unknown,
        },
    )
    if version.logged_model is not None:
        doc.relation("wasDerivedFrom", generatedEntity=version.id, usedEntity=mlflow_model_id(version.logged_model))
    elif version.source_run is not None:
        doc.relation("wasDerivedFrom", generatedEntity=version.id, usedEntity=mlflow_run_id(version.source_run))
    if version.content is not None:
        doc.relation("specializationOf", specificEntity=version.content, generalEntity=version.id)
    agent = _add_agent(doc, who)
    if agent is not None:
        doc.relation("wasAttributedTo", entity=version.id, agent=agent)
    return doc.build()


def deployed(
    *,
    name: str,
    version: str,
    target: str,
    deployment: str,
    uuid: str,
    who: str | None,
    time: str,
    content: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict:
    """``model.deployed``: ``target`` (``models:/<name>@<alias>`` or ``/<stage>``) serves the version from now."""
    doc = ProvDoc()
    act, dep, ver = deploy_activity_id(uuid), deployment_id(deployment, uuid), mlflow_version_id(name, version)
    doc.element(
        "activity",
        act,
        {"prov:type": qname("provault:Deploy"), "prov:startTime": time, "provault:target": target, **(extra or {})},
    )
    doc.element("entity", ver, {"prov:type": qname("provault:Model")})
    doc.element(
        "entity",
        dep,
        {"prov:type": qname("provault:Deployment"), "prov:label": deployment, "provault:target": target},
    )
    doc.relation("used", activity=act, entity=ver)
    doc.relation("wasGeneratedBy", entity=dep, activity=act)
    doc.relation("wasDerivedFrom", generatedEntity=dep, usedEntity=ver, activity=act)
    if content is not None:
        doc.element("entity", content, {"prov:type": qname("provault:Model")})
        doc.relation("used", activity=act, entity=content)
        doc.relation("wasDerivedFrom", generatedEntity=dep, usedEntity=content, activity=act)
    agent = _add_agent(doc, who)
    if agent is not None:
        doc.relation("wasAssociatedWith", activity=act, agent=agent)
    return doc.build()


def undeployed(
    *, target: str, uuid: str, who: str | None, time: str, name: str, version: str | None = None, extra=None
) -> dict:
    """``model.undeployed``: ``target`` no longer serves the version (an alias deleted, a stage left)."""
    doc = ProvDoc()
    act = undeploy_activity_id(uuid)
    doc.element(
        "activity",
        act,
        {
            "prov:type": qname("provault:Undeploy"),
            "prov:startTime": time,
            "provault:target": target,
            "provault:name": name,
            **(extra or {}),
        },
    )
    if version is not None:
        ver = mlflow_version_id(name, version)
        doc.element("entity", ver, {"prov:type": qname("provault:Model")})
        doc.relation("used", activity=act, entity=ver)
    agent = _add_agent(doc, who)
    if agent is not None:
        doc.relation("wasAssociatedWith", activity=act, agent=agent)
    return doc.build()


def alias_target(name: str, alias: str) -> str:
    return f"models:/{name}@{alias}"


def stage_target(name: str, stage: str) -> str:
    return f"models:/{name}/{stage}"


__all__ = [
    "DEPLOY_STAGES",
    "MODEL_UNDEPLOYED",
    "DatasetFacts",
    "ModelFacts",
    "RunFacts",
    "VersionFacts",
    "alias_target",
    "deployed",
    "logged_model",
    "ms_datetime",
    "ms_time",
    "run_ended",
    "run_started",
    "stage_target",
    "undeployed",
    "version_registered",
    "who_id",
]
