"""Kubernetes admission backed by the deployment gate: ``POST /validate`` answers ``AdmissionReview`` v1.

The pure part, :func:`review`, reads an ``admission.k8s.io/v1`` ``AdmissionReview`` and finds the model a
workload serves: the annotation ``provault.dev/model`` (a ``sha256:<hex>`` digest) on a Pod, or on the pod
template of a Deployment, StatefulSet, DaemonSet, ReplicaSet, Job or CronJob.  It asks a *decider* (the
gate, :func:`gate_decider`) and answers with the review's ``uid`` echoed, ``allowed`` and, when denied,
``status`` 403 with the failed rules.  No annotation: allowed, unless the endpoint requires one.  A review
that is not one is :class:`MalformedReview` (HTTP 400), naming the member.  The gate failing to decide
(ledger unreachable, unknown model) denies: an admission controller fails closed.

:class:`AdmissionServer` serves it on its own thread (``ledger.webthread``), HTTPS outside loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ledger.core.errors import InvalidArgument, ProvaultError, expected_found
from ledger.webthread import WebServerThread, refuse_clear_text

log = logging.getLogger("provault.admission")

PATH = "/validate"
HEALTH_PATH = "/healthz"
API_VERSION = "admission.k8s.io/v1"
ANNOTATION = "provault.dev/model"
MAX_BODY_BYTES = 3 * 1024 * 1024
"""The API server sends objects of up to ~1.5 MiB (etcd's limit) wrapped in a review."""
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_TEMPLATE_PATHS: Mapping[str, tuple[str, ...]] = {
    "Pod": (),
    "Deployment": ("spec", "template"),
    "StatefulSet": ("spec", "template"),
    "DaemonSet": ("spec", "template"),
    "ReplicaSet": ("spec", "template"),
    "Job": ("spec", "template"),
    "CronJob": ("spec", "jobTemplate", "spec", "template"),
}


class MalformedReview(InvalidArgument):
    """The body is not an ``AdmissionReview`` v1 request (answered 400)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Verdict:
    allowed: bool
    message: str
    """Why (the failed rules, or what kept the gate from deciding); shown to whoever applied the object."""
    warn: bool = False
    """Also show the message as a warning when allowed (``kubectl`` prints it)."""


Decider = Callable[[str, bool], Verdict]
"""(model digest, dry run) -> the gate's verdict.  Dry-run reviews are decided but not recorded."""


def _member(obj: Any, name: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(obj, Mapping) or name not in obj:
        raise MalformedReview(f"{where}.{name}: missing", hint="send an admission.k8s.io/v1 AdmissionReview")
    value = obj[name]
    if not isinstance(value, kind):
        names = " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))
        raise MalformedReview(expected_found(f"{where}.{name}", names, type(value).__name__))
    return value


def _annotations(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The annotations of the pod (template) ``obj`` runs; None for a kind that runs no pods."""
    path = _TEMPLATE_PATHS.get(kind)
    if path is None:
        return None
    node: Any = obj
    where = "request.object"
    for part in path:
        where += f".{part}"
        node = node.get(part) if isinstance(node, Mapping) else None
        if not isinstance(node, Mapping):
            raise MalformedReview(f"{where}: missing or not an object in a {kind}")
    meta = node.get("metadata", {})
    if not isinstance(meta, Mapping):
        raise MalformedReview(expected_found(f"{where}.metadata", "an object", type(meta).__name__))
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, Mapping):
        raise MalformedReview(expected_found(f"{where}.metadata.annotations", "an object", type(annotations).__name__))
    return annotations


def model_of(request: Mapping[str, Any]) -> str | None:
    """The model digest the reviewed object's pods serve, or None when it names none."""
    obj = request.get("object")
    if obj is None:  # DELETE and CONNECT carry no object
        return None
    if not isinstance(obj, Mapping):
        raise MalformedReview(expected_found("request.object", "an object", type(obj).__name__))
    kind = obj.get("kind") or (request.get("kind") or {}).get("kind")
    annotations = _annotations(obj, str(kind))
    if annotations is None or ANNOTATION not in annotations:
        return None
    value = annotations[ANNOTATION]
    if not isinstance(value, str) or not _DIGEST.fullmatch(value):
        raise InvalidArgument(
            expected_found(f"annotation {ANNOTATION}", "a model digest sha256:<64 lowercase hex>", repr(value)[:100])
        )
    return value


def _unchanged(request: Mapping[str, Any], model: str) -> bool:
    """Whether an UPDATE leaves the model its pods serve as it was (``oldObject`` names the same one)."""
    old = request.get("oldObject")
    if not isinstance(old, Mapping):
        return False
    try:
        return model_of({**request, "object": old}) == model
    except InvalidArgument:
        return False


def review(body: Any, decide: Decider, *, require_annotation: bool = False) -> dict[str, Any]:
    """The ``AdmissionReview`` answering ``body`` (a parsed JSON document)."""
    if not isinstance(body, Mapping):
        raise MalformedReview(expected_found("body", "a JSON object", type(body).__name__))
    version = _member(body, "apiVersion", str, "review")
    if version != API_VERSION:
        raise MalformedReview(expected_found("review.apiVersion", API_VERSION, repr(version)[:80]))
    if _member(body, "kind", str, "review") != "AdmissionReview":
        raise MalformedReview(expected_found("review.kind", "AdmissionReview", repr(body["kind"])[:80]))
    request = _member(body, "request", Mapping, "review")
    uid = _member(request, "uid", str, "review.request")
    if not uid:
        raise MalformedReview("review.request.uid: empty")
    dry_run = bool(request.get("dryRun", False))
    try:
        model = model_of(request)
    except MalformedReview:
        raise
    except InvalidArgument as e:  # a bad annotation: the object is refused, the review was well formed
        return _answer(uid, Verdict(allowed=False, message=e.message))
    if model is not None and request.get("operation") == "UPDATE" and _unchanged(request, model):
        # Admitted when it was created; a scale-down, a finalizer removed or a status change of a workload whose
        # model is now denied must go through, or it could never be drained.  New pods are gated as they come.
        return _answer(
            uid, Verdict(allowed=True, message=f"{ANNOTATION} unchanged by this update: not gated again", warn=True)
        )
    if model is None:
        if require_annotation and request.get("object") is not None and request.get("operation") != "DELETE":
            return _answer(uid, Verdict(allowed=False, message=f"no {ANNOTATION} annotation names the model it serves"))
        return _answer(uid, Verdict(allowed=True, message=f"no {ANNOTATION} annotation: not gated", warn=True))
    return _answer(uid, decide(model, dry_run))


def _answer(uid: str, verdict: Verdict) -> dict[str, Any]:
    response: dict[str, Any] = {"uid": uid, "allowed": verdict.allowed}
    if verdict.allowed and verdict.warn:
        response["warnings"] = [verdict.message]
    elif not verdict.allowed:
        response["status"] = {"code": 403, "reason": "Forbidden", "message": verdict.message}
    return {"apiVersion": API_VERSION, "kind": "AdmissionReview", "response": response}


# --- the gate as a decider ---------------------------------------------------------------------


def gate_decider(settings: Any, dsn: str, policy_text: str, *, role: str, source: str, signer: Any) -> Decider:
    """A decider that runs the deployment gate (``query.supply.gate.decide``) on a connection of its own, and
    records each decision with ``signer`` (the attestation key), except for dry-run reviews."""
    from ledger.db import connect  # noqa: PLC0415 - only the server needs the database

    from .gate import decide  # noqa: PLC0415

    def run(model: str, dry_run: bool) -> Verdict:
        try:
            with connect(dsn, autocommit=True, role=role) as conn:
                decision, event_id = decide(
                    conn, settings, model, policy_text, record=not dry_run, signer=signer, source=source
                )
        except ProvaultError as e:
            log.warning("admission: no decision on %s: %s", model, e.message)
            return Verdict(allowed=False, message=f"provault gate could not decide on {model}: {e.message}")
        failed = [f"{v.rule}: {v.reason}" for v in decision.rules if not v.passed]
        recorded = f" (decision {event_id})" if event_id else ""
        if decision.allowed:
            return Verdict(allowed=True, message=f"provault gate allowed {model}{recorded}")
        return Verdict(allowed=False, message=f"provault gate denied {model}{recorded}: " + "; ".join(failed))

    return run


# --- HTTP -----------------------------------------------------------------------------------


class AdmissionApp:
    def __init__(self, decide: Decider, *, require_annotation: bool = False) -> None:
        self.decide = decide
        self.require_annotation = require_annotation

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_post(PATH, self.validate)
        app.router.add_get(HEALTH_PATH, self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def validate(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            return _error(415, expected_found("Content-Type", "application/json", repr(request.content_type)))
        try:
            body = json.loads(await request.read())
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"the body is over the limit of {MAX_BODY_BYTES} bytes")
        except (ValueError, UnicodeDecodeError) as e:
            return _error(400, f"the body is not JSON: {e}")
        try:
            answer = await asyncio.to_thread(review, body, self.decide, require_annotation=self.require_annotation)
        except MalformedReview as e:
            return _error(400, e.message)
        return web.json_response(answer)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"code": status, "message": message}, status=status)


class AdmissionServer(WebServerThread):
    name = "admission"

    def __init__(self, app: AdmissionApp, *, listen: str, tls: Any) -> None:
        refuse_clear_text(
            listen, tls, setting="supply.admission_listen", tls_setting="supply.tls_cert", what="admission reviews"
        )
        super().__init__(
            app.application, listen=listen, tls=tls, what="the admission endpoint", thread_name="provault-admission"
        )
        self.app = app

    @property
    def url(self) -> str:
        return self.base_url() + PATH
