"""Datasets, models and deployments: ``dataset.registered``, ``model.registered``, ``model.deployed``.

Each public function digests what it is given (a local path; a
``sha256:<hex>`` id is taken as is when the bytes are elsewhere), builds the
PROV document fixed in :mod:`ledger.core.vocab`, emits it through the agent
(default: :func:`agents.default_agent`) and returns the id of what it
registered, so the results chain::

    raw = register_dataset("raw.csv", name="transactions")
    clean = register_dataset("clean.csv", name="transactions-clean", derived_from=[raw])
    model = register_model("model.pkl", name="fraud", version="3")
    deployment = deploy_model(model, name="fraud-prod", target="k8s://prod/fraud", approved_by="carol@example.com")

The ``*_event`` functions return the :class:`Prepared` event without
emitting it (the CLI uses them to print the event id).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.ids import new_event_id
from ledger.core.vocab import deploy_activity_id, deployment_id, ol_dataset_id, person_id

from . import capture
from ._prov import Artifact, ProvDoc, add_person, default_cache, now_text, qname, resolve_artifact
from .runs import Run, current_run
from .signatures import SignatureCheck

if TYPE_CHECKING:
    from .runtime import Agent

StrPath = str | os.PathLike[str]
AGENT_ID_PREFIXES = ("provault:person/", "provault:service/", "provault:host/")


@dataclass(frozen=True, slots=True, kw_only=True)
class Prepared:
    """An event ready to emit and the id of the thing it registers."""

    kind: str
    id: str
    prov: dict[str, Any]


def _agent(agent: Agent | None) -> Agent:
    if agent is not None:
        return agent
    from .runtime import default_agent  # noqa: PLC0415 - configuration is read on first use

    return default_agent()


def _content(target: StrPath | Artifact, role: str, cache: capture.DigestCache | None) -> Artifact:
    if isinstance(target, Artifact):
        return target
    artifact = resolve_artifact(target, role, cache=cache if cache is not None else default_cache())
    if not artifact.content_addressed:
        raise InvalidArgument(
            expected_found(role, "a local path or a 'sha256:<hex>' content id", repr(os.fspath(target))),
            hint="download it first, or pass its content id (and the URI with uri=)",
        )
    return artifact


def _entity(artifact: Artifact, kind: str, label: str, uri: str | None, **extra: Any) -> dict[str, Any]:
    attrs = {
        "prov:type": qname(kind),
        "prov:label": label,
        "provault:name": label,  # the registered name: a run's later use labels the same content by its file
        "provault:uri": uri or artifact.uri,
        "provault:bytes": artifact.size,
    }
    if artifact.files is not None and artifact.files != 1:
        attrs["provault:files"] = artifact.files
    attrs.update(extra)
    return attrs


def agent_ref(who: str) -> str:
    """An agent id: a ``provault:person/…``, ``provault:service/…`` or ``provault:host/…`` id as is, else a person."""
    if not isinstance(who, str) or not who.strip():
        raise InvalidArgument(expected_found("identity", "an e-mail address or a provault agent id", repr(who)))
    return who if who.startswith(AGENT_ID_PREFIXES) else person_id(who.strip())


# --- datasets -----------------------------------------------------------------------------


def dataset_event(
    path: StrPath | Artifact,
    *,
    name: str,
    derived_from: Iterable[StrPath | Artifact] = (),
    uri: str | None = None,
    author: str | None = None,
    cache: capture.DigestCache | None = None,
    openlineage: tuple[str, str] | None = None,
) -> Prepared:
    """The ``dataset.registered`` event for ``path`` (a file, a directory or a ``sha256:`` id).

    ``openlineage`` is (namespace, name) of the OpenLineage dataset this
    content is a version of: the content entity becomes a ``specializationOf``
    it, so traces continue into the pipelines that wrote it (docs/openlineage.md).
    """
    ol_dataset = _openlineage_dataset(openlineage)
    data = _content(path, "data", cache)
    sources = [_content(s, "data", cache).id for s in derived_from]
    who = capture.author(author)
    doc = ProvDoc()
    doc.element("entity", data.id, _entity(data, "provault:Dataset", name, uri))
    doc.relation("wasAttributedTo", entity=data.id, agent=add_person(doc, who))
    for source in sources:
        doc.relation("wasDerivedFrom", generatedEntity=data.id, usedEntity=source)
    if ol_dataset is not None:
        namespace, ol_name = openlineage  # type: ignore[misc]
        attrs = {"prov:type": qname("provault:Dataset"), "prov:label": ol_name}
        doc.element("entity", ol_dataset, {**attrs, "provault:namespace": namespace, "provault:name": ol_name})
        doc.relation("specializationOf", specificEntity=data.id, generalEntity=ol_dataset)
    return Prepared(kind="dataset.registered", id=data.id, prov=doc.build())


def _openlineage_dataset(pair: object) -> str | None:
    if pair is None:
        return None
    if not isinstance(pair, tuple | list) or len(pair) != 2 or not all(isinstance(p, str) and p.strip() for p in pair):
        raise InvalidArgument(expected_found("openlineage", "(namespace, name), two non-empty strings", repr(pair)))
    return ol_dataset_id(pair[0], pair[1])


def register_dataset(
    path: StrPath | Artifact,
    *,
    name: str,
    derived_from: Iterable[StrPath | Artifact] = (),
    uri: str | None = None,
    author: str | None = None,
    agent: Agent | None = None,
    cache: capture.DigestCache | None = None,
    openlineage: tuple[str, str] | None = None,
) -> str:
    """Emit ``dataset.registered``; return the dataset's content id (``sha256:<hex>``).

    ``derived_from`` lists the datasets it was made from (paths or content
    ids); ``uri`` says where it lives when that is not the local path;
    ``openlineage`` names the OpenLineage dataset (namespace, name) it is a version of.
    """
    prepared = dataset_event(
        path, name=name, derived_from=derived_from, uri=uri, author=author, cache=cache, openlineage=openlineage
    )
    _agent(agent).emit(prepared.kind, prepared.prov)
    return prepared.id


# --- models -------------------------------------------------------------------------------


def _run_ref(run: Run | str | None) -> str | None:
    if isinstance(run, Run):
        return run.id
    if run is None:
        enclosing = current_run()
        return enclosing.id if enclosing is not None else None
    if not run.startswith("provault:run/"):
        raise InvalidArgument(expected_found("run", "a Run or a 'provault:run/<uuid>' id", repr(run)))
    return run


def model_event(
    path: StrPath | Artifact,
    *,
    name: str,
    version: str | None = None,
    run: Run | str | None = None,
    uri: str | None = None,
    author: str | None = None,
    cache: capture.DigestCache | None = None,
    signature: SignatureCheck | None = None,
) -> Prepared:
    """The ``model.registered`` event; ``run`` defaults to the enclosing run, if any.

    ``signature`` is the :class:`~agents.signatures.SignatureCheck` that
    :func:`~agents.signatures.verify_model_signature` returned for this model:
    it becomes the ``provault:signature*`` attributes of the model and an
    entity of the signature file that ``wasDerivedFrom`` the model.
    """
    if signature is not None and not isinstance(signature, SignatureCheck):
        raise InvalidArgument(
            expected_found("signature", "the SignatureCheck of verify_model_signature()", type(signature).__name__)
        )
    model = _content(path, "model", cache)
    who = capture.author(author)
    activity = _run_ref(run)
    doc = ProvDoc()
    extra: dict[str, Any] = {"provault:version": version}
    if signature is not None:
        extra.update(_signature_attributes(signature))
    doc.element("entity", model.id, _entity(model, "provault:Model", name, uri, **extra))
    if activity is not None:
        doc.relation("wasGeneratedBy", entity=model.id, activity=activity)
    doc.relation("wasAttributedTo", entity=model.id, agent=add_person(doc, who))
    if signature is not None:
        doc.element("entity", signature.digest, {"prov:type": qname("provault:ModelSignature")})
        doc.relation("wasDerivedFrom", generatedEntity=signature.digest, usedEntity=model.id)
    return Prepared(kind="model.registered", id=model.id, prov=doc.build())


def _signature_attributes(check: SignatureCheck) -> dict[str, Any]:
    return {
        "provault:signature": check.digest,
        "provault:signatureMethod": check.method,
        "provault:signer": check.signer,
        "provault:signatureVerified": True,
        "provault:signatureTool": check.tool,
    }


def register_model(
    path: StrPath | Artifact,
    *,
    name: str,
    version: str | None = None,
    run: Run | str | None = None,
    uri: str | None = None,
    author: str | None = None,
    agent: Agent | None = None,
    cache: capture.DigestCache | None = None,
    signature: SignatureCheck | None = None,
) -> str:
    """Emit ``model.registered``; return the model's content id.

    ``run`` (a :class:`~agents.runs.Run` or its id) is the run that trained
    it; inside a ``with agents.run(...)`` block it defaults to that run.
    ``signature`` records a verified model signature (see :func:`model_event`).
    """
    prepared = model_event(
        path, name=name, version=version, run=run, uri=uri, author=author, cache=cache, signature=signature
    )
    _agent(agent).emit(prepared.kind, prepared.prov)
    return prepared.id


# --- deployments ----------------------------------------------------------------------------


def deploy_event(
    model: StrPath | Artifact,
    *,
    name: str,
    target: str,
    approved_by: str | None = None,
    deployer: str | None = None,
    cache: capture.DigestCache | None = None,
) -> Prepared:
    """The ``model.deployed`` event; its ``id`` is the deployment's (``provault:deployment/<name>/<uuid>``)."""
    if not isinstance(target, str) or not target:
        raise InvalidArgument(
            expected_found("target", "where the model is deployed, e.g. k8s://prod/fraud", repr(target))
        )
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgument(expected_found("deployment name", "a non-empty name, e.g. fraud-prod", repr(name)))
    artifact = _content(model, "model", cache)
    uuid = new_event_id()
    act, deployment = deploy_activity_id(uuid), deployment_id(name, uuid)
    doc = ProvDoc()
    doc.element(
        "activity",
        act,
        {"prov:type": qname("provault:Deploy"), "prov:startTime": now_text(), "provault:target": target},
    )
    doc.element("entity", artifact.id, {"prov:type": qname("provault:Model")})
    doc.element(
        "entity", deployment, {"prov:type": qname("provault:Deployment"), "prov:label": name, "provault:target": target}
    )
    doc.relation("used", activity=act, entity=artifact.id)
    doc.relation("wasGeneratedBy", entity=deployment, activity=act)
    doc.relation("wasDerivedFrom", generatedEntity=deployment, usedEntity=artifact.id, activity=act)
    if deployer is not None and deployer.startswith(AGENT_ID_PREFIXES):
        deployed_by = doc.element("agent", deployer)
    else:
        deployed_by = add_person(doc, capture.author(deployer))
    doc.relation("wasAssociatedWith", activity=act, agent=deployed_by)
    if approved_by is not None:
        approver = doc.element("agent", agent_ref(approved_by))
        doc.relation("wasAssociatedWith", activity=act, agent=approver, role="provault:approver")
    return Prepared(kind="model.deployed", id=deployment, prov=doc.build())


def deploy_model(
    model: StrPath | Artifact,
    *,
    name: str,
    target: str,
    approved_by: str | None = None,
    deployer: str | None = None,
    agent: Agent | None = None,
    cache: capture.DigestCache | None = None,
) -> str:
    """Emit ``model.deployed``; return the deployment id (``provault:deployment/<name>/<uuid>``).

    ``model`` is the model file or its content id; ``approved_by`` an e-mail
    address or a provault agent id, associated with ``prov:role``
    ``provault:approver``.
    """
    prepared = deploy_event(model, name=name, target=target, approved_by=approved_by, deployer=deployer, cache=cache)
    _agent(agent).emit(prepared.kind, prepared.prov)
    return prepared.id


__all__ = [
    "Prepared",
    "agent_ref",
    "dataset_event",
    "deploy_event",
    "deploy_model",
    "model_event",
    "register_dataset",
    "register_model",
]
