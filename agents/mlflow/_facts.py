"""MLflow's entities as the plain facts :mod:`._mapping` turns into events (imports MLflow: the adapter side)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote, urlsplit

from ledger.core.vocab import mlflow_dataset_id

from .. import capture
from .._prov import Artifact, resolve_artifact, uri_id
from ._mapping import DatasetFacts, ModelFacts, RunFacts

log = logging.getLogger("provault.mlflow")

SCHEME_PREFIX = "provault+"


def inner_uri(uri: str | None) -> str | None:
    """The URI MLflow's own store is built for: ``provault+sqlite:///x.db`` -> ``sqlite:///x.db``."""
    if uri is not None and uri.startswith(SCHEME_PREFIX):
        return uri[len(SCHEME_PREFIX) :]
    return uri


def clean_uri(uri: str | None) -> str | None:
    """A URI fit to record: credentials removed."""
    return None if uri is None else capture.strip_credentials(inner_uri(uri) or "")


def local_path(uri: str | None) -> str | None:
    """The local path a ``file://`` URI or a plain path names, if it exists."""
    if not uri:
        return None
    if uri.startswith("file:"):
        path = unquote(urlsplit(uri).path)
    elif "://" in uri or uri.startswith(("mlflow-artifacts:", "models:", "runs:", "dbfs:")):
        return None
    else:
        path = uri
    return path if os.path.exists(path) else None


# --- datasets --------------------------------------------------------------------------------


def _source_uri(source: str | None) -> str | None:
    """The place an MLflow dataset source (a JSON text such as ``{"uri": …}``) names, if any."""
    if not source:
        return None
    try:
        parsed = json.loads(source)
    except ValueError:
        return None
    if not isinstance(parsed, dict):
        return None
    for member in ("uri", "url", "path"):
        value = parsed.get(member)
        if isinstance(value, str) and value:
            return value
    return None


def dataset_facts(dataset_input: Any, cache: capture.DigestCache | None = None) -> DatasetFacts:
    """A ``mlflow.entities.DatasetInput``: named by its local bytes, its source URI, or MLflow's digest."""
    ds = dataset_input.dataset
    context = next((t.value for t in (dataset_input.tags or ()) if t.key == "mlflow.data.context"), None)
    common = {
        "name": ds.name,
        "digest": ds.digest,
        "context": context,
        "source_type": ds.source_type,
        "source": ds.source,
        "schema": ds.schema or None,
        "profile": ds.profile or None,
    }
    place = _source_uri(ds.source)
    path = local_path(place)
    if path is not None:
        try:
            found = resolve_artifact(path, "data", ds.name, cache=cache)
            return DatasetFacts(id=found.id, uri=found.uri, size=found.size, **common)
        except (OSError, capture.CaptureError) as e:
            log.warning("mlflow: dataset %r at %s could not be digested (%s); named by its source", ds.name, path, e)
    if place is not None:
        clean = capture.strip_credentials(place)
        return DatasetFacts(id=uri_id(place), uri=clean, content_addressed=False, **common)
    return DatasetFacts(id=mlflow_dataset_id(ds.name, ds.digest), content_addressed=False, **common)


# --- runs ------------------------------------------------------------------------------------


def run_facts(run: Any, *, tracking: str | None, experiment_name: str | None = None) -> RunFacts:
    """A whole ``mlflow.entities.Run`` (the import, or a run this process did not start)."""
    info, data = run.info, run.data
    facts = RunFacts(
        run_id=info.run_id,
        experiment_id=str(info.experiment_id),
        experiment_name=experiment_name,
        name=info.run_name,
        user=info.user_id or data.tags.get("mlflow.user"),
        start_ms=info.start_time,
        end_ms=info.end_time,
        status=str(info.status),
        tracking=tracking,
        tags=dict(data.tags),
        params=dict(data.params),
    )
    facts.metrics.update(data.metrics)
    for dataset_input in getattr(run.inputs, "dataset_inputs", None) or ():
        facts.add_input(dataset_facts(dataset_input))
    for output in getattr(getattr(run, "outputs", None), "model_outputs", None) or ():
        facts.models.setdefault(output.model_id, None)
    return facts


def merge_tags(facts: RunFacts, tags: Iterable[tuple[str, str]]) -> None:
    """(key, value) pairs of MLflow tags into the run's facts; the run name and user fill in when unknown."""
    for key, value in tags:
        facts.tags[key] = value
        if key == "mlflow.runName" and not facts.name:
            facts.name = value
        if key == "mlflow.user" and not facts.user:
            facts.user = value


# --- logged models ---------------------------------------------------------------------------


def model_content(location: str | None, name: str | None) -> tuple[Artifact | None, str | None]:
    """The content id of a logged model's artifacts: digested in place when local, else downloaded first."""
    if not location:
        return None, "the logged model has no artifact location"
    path = local_path(location)
    scratch = None
    try:
        if path is None:
            import mlflow.artifacts  # noqa: PLC0415 - MLflow is the optional extra; only the adapter needs it

            scratch = tempfile.mkdtemp(prefix="provault-mlflow-")
            path = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=scratch)
        digest = capture.digest_path(path)
    except Exception as e:
        return None, f"its artifacts at {clean_uri(location)} could not be read: {type(e).__name__}: {e}"[:500]
    finally:
        if scratch is not None:
            shutil.rmtree(scratch, ignore_errors=True)
    uri = clean_uri(location)
    return Artifact(id=digest.id, role="model", name=name, uri=uri, size=digest.size, files=digest.files), None


def model_facts(model: Any) -> ModelFacts:
    """A ``mlflow.entities.LoggedModel``, with its artifacts digested."""
    content, error = model_content(model.artifact_location, model.name)
    return ModelFacts(
        model_id=model.model_id,
        name=model.name,
        run_id=model.source_run_id,
        artifact_location=clean_uri(model.artifact_location),
        content=content,
        model_type=model.model_type,
        params=dict(model.params or {}),
        created_ms=model.creation_timestamp,
        digest_error=error,
    )
