"""Serving an MLflow model with its predictions logged: ``agents.mlflow.serve("models:/fraud@champion", ...)``.

The model is downloaded and digested the way the plugin digested it when it
was logged (the same files give the same ``sha256:`` tree digest), a
``model.deployed`` event records that this content, and the registered
version the URI resolved to, now serve at ``target``; the model is loaded
with ``mlflow.pyfunc.load_model`` and wrapped by
:class:`agents.serving.LoggedModel`, so each row it predicts is a prediction
traceable through the version, the logged model and its run (docs/mlflow.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.ids import new_event_id
from ledger.core.vocab import deployment_id

from .. import capture
from .._prov import Artifact, now_text
from ..assets import deploy_event
from ..predictions import PredictionLogger
from ..runtime import Agent, default_agent
from ..serving import LoggedModel
from . import _mapping
from ._facts import inner_uri


@dataclass
class Served:
    """What :func:`serve` set up: call ``model.predict``; close ``logger`` when done."""

    model: LoggedModel
    content: str
    """The served artifacts' content id."""
    deployment: str
    """``provault:deployment/<name>/<uuid>``: what each prediction names."""
    version: tuple[str, str] | None
    """(registered name, version) the URI resolved to, if it named the registry."""
    logger: PredictionLogger
    local_path: str


def resolve_version(client: Any, model_uri: str) -> tuple[str, str] | None:
    """(name, version) of ``models:/<name>@<alias>`` or ``models:/<name>/<version>``; None for other URIs."""
    if not model_uri.startswith("models:/"):
        return None
    rest = model_uri[len("models:/") :].strip("/")
    if "@" in rest:
        name, alias = rest.split("@", 1)
        version = client.get_model_version_by_alias(name, alias)
        return name, str(version.version)
    name, sep, version = rest.rpartition("/")
    if sep and version.isdigit():
        return name, version
    return None


def serve(
    model_uri: str,
    *,
    deployment: str,
    target: str | None = None,
    agent: Agent | None = None,
    deployer: str | None = None,
    id_fn: Callable[[Any, int], str] | None = None,
    dst_path: str | None = None,
    tracking_uri: str | None = None,
) -> Served:
    """Download, digest, record the deployment, load; the predictions of the returned model are logged.

    ``deployment`` names this deployment (``fraud-prod``); ``target`` says
    where it serves (default: the model URI); ``deployer`` who deployed it
    (default: the git / OS identity).
    """
    import mlflow  # noqa: PLC0415 - the optional extra
    import mlflow.pyfunc  # noqa: PLC0415

    if not isinstance(model_uri, str) or not model_uri:
        raise InvalidArgument(
            expected_found("model_uri", "an MLflow model URI such as models:/fraud@champion", repr(model_uri))
        )
    client = mlflow.MlflowClient(tracking_uri=inner_uri(tracking_uri) if tracking_uri else None)
    version = resolve_version(client, model_uri)
    local = mlflow.artifacts.download_artifacts(
        artifact_uri=model_uri, dst_path=dst_path or tempfile.mkdtemp(prefix="provault-serve-")
    )
    digest = capture.digest_path(local)
    content = Artifact(id=digest.id, role="model", uri=model_uri, size=digest.size, files=digest.files)
    agent = agent or default_agent()
    where = target or model_uri
    if version is not None:
        uuid = new_event_id()
        prov = _mapping.deployed(
            name=version[0],
            version=version[1],
            target=where,
            deployment=deployment,
            uuid=uuid,
            who=deployer or capture.author().who,
            time=now_text(),
            content=content.id,
            extra={"provault:modelUri": model_uri},
        )
        agent.emit("model.deployed", prov)
        dep = deployment_id(deployment, uuid)
    else:
        prepared = deploy_event(content, name=deployment, target=where, deployer=deployer)
        agent.emit(prepared.kind, prepared.prov)
        dep = prepared.id
    pyfunc = mlflow.pyfunc.load_model(local)
    logger = PredictionLogger(agent, deployment=dep, model=content.id)
    return Served(
        model=LoggedModel(pyfunc, logger, id_fn),
        content=content.id,
        deployment=dep,
        version=version,
        logger=logger,
        local_path=local,
    )
