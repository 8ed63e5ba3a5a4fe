"""The MLflow webhook receiver: ``POST /mlflow/webhook``, for tracking servers that cannot load the plugin.

MLflow (3.3 and later) signs each delivery with the webhook's secret:
``X-MLflow-Signature: v1,<base64 HMAC-SHA256 of "<delivery id>.<timestamp>.<body>">``,
with ``X-MLflow-Delivery-Id`` and ``X-MLflow-Timestamp`` beside it.  The
receiver checks the signature in constant time, refuses a timestamp further
than ``mlflow.replay_window_s`` from its clock, and records a delivery id
once (MLflow's retries reuse it), so a captured delivery cannot be replayed.
Registry events become the same events the registry plugin records
(:mod:`.recorder`), signed by the receiver's own producer key and spooled
(fsynced) before the 200.  Answers are listed in docs/mlflow.md.

aiohttp serves it, as it serves the OpenLineage endpoint
(:mod:`ledger.webthread`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from ledger import metrics
from ledger.config import Settings
from ledger.core.errors import ConfigError, KeyMaterialError
from ledger.core.keyring import KeyRegistration
from ledger.core.keys import Signer, load_private_key
from ledger.core.vocab import MODEL_UNDEPLOYED, service_id
from ledger.keyadmin import service_registration
from ledger.webthread import (
    WebServerThread,
    refuse_clear_text,
    serve_until_signalled,  # noqa: F401 - for agents.mlflow.cli, which may not import ledger.webthread
    tls_context,
)

from ..runtime import Agent, agent_from_settings
from ..spool import SpoolFull
from . import _mapping
from ._facts import clean_uri
from ._mapping import VersionFacts
from ._marks import Marks
from .recorder import record_alias, record_alias_deleted, with_content

log = logging.getLogger("provault.mlflow")

PATH = "/mlflow/webhook"
KINDS = ("model.registered", "model.deployed", MODEL_UNDEPLOYED)
SIGNATURE_HEADER = "X-MLflow-Signature"
TIMESTAMP_HEADER = "X-MLflow-Timestamp"
DELIVERY_HEADER = "X-MLflow-Delivery-Id"
ACTOR_UNKNOWN = "MLflow webhooks do not say who made the change"
RECORDED = ("model_version.created", "model_version_alias.created", "model_version_alias.deleted")
DELIVERIES = metrics.Counter(
    "provault_mlflow_webhook_deliveries",
    "MLflow webhook deliveries answered: accepted, duplicate, ignored, or the HTTP status of a refusal.",
    ("outcome",),
)


class Refused(Exception):
    """A delivery answered with ``status`` and ``message``; nothing was recorded."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, *, now: float, window_s: int) -> tuple[str, int]:
    """(delivery id, timestamp) of a delivery whose signature and time hold; :class:`Refused` (401) otherwise."""
    delivery, stamp, signature = (headers.get(h) for h in (DELIVERY_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER))
    missing = [
        h for h, v in ((DELIVERY_HEADER, delivery), (TIMESTAMP_HEADER, stamp), (SIGNATURE_HEADER, signature)) if not v
    ]
    if missing:
        raise Refused(401, f"unsigned delivery: the header(s) {', '.join(missing)} are missing")
    assert delivery is not None and stamp is not None and signature is not None
    if not stamp.isdigit():
        raise Refused(401, f"{TIMESTAMP_HEADER}: expected Unix seconds, found {stamp[:40]!r}")
    version, _, encoded = signature.partition(",")
    if version != "v1" or not encoded:
        raise Refused(401, f"{SIGNATURE_HEADER}: expected 'v1,<base64 HMAC-SHA256>', found {signature[:40]!r}")
    try:
        given = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise Refused(401, f"{SIGNATURE_HEADER}: the signature is not base64") from None
    expected = hmac.new(secret, delivery.encode() + b"." + stamp.encode() + b"." + body, hashlib.sha256).digest()
    if not hmac.compare_digest(given, expected):
        raise Refused(401, "the signature does not match this body under the receiver's secret")
    skew = abs(now - int(stamp))
    if skew > window_s:
        raise Refused(
            401,
            f"{TIMESTAMP_HEADER} is {skew:.0f} s from the receiver's clock (at most {window_s} s): a replay or a stale delivery",
        )
    return delivery, int(stamp)


def _member(data: Mapping[str, Any], name: str, event: str) -> str:
    value = data.get(name)
    if isinstance(value, int) and not isinstance(value, bool) and name == "version":
        return str(value)
    if not isinstance(value, str) or not value:
        raise Refused(400, f"{event}: data.{name} must be a non-empty string, found {value!r}")
    return value


def parse(body: bytes) -> tuple[str, Mapping[str, Any]]:
    """(``<entity>.<action>``, data) of a delivery body; :class:`Refused` (400) when it is not one."""
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as e:
        raise Refused(400, f"the body is not JSON: {e}") from None
    if not isinstance(payload, dict):
        raise Refused(400, f"the body must be a JSON object, found {type(payload).__name__}")
    entity, action, data = payload.get("entity"), payload.get("action"), payload.get("data")
    if not isinstance(entity, str) or not isinstance(action, str) or not entity or not action:
        raise Refused(400, "the body must have the string members 'entity' and 'action' (MLflow's webhook payload)")
    if not isinstance(data, dict):
        raise Refused(400, f"{entity}.{action}: 'data' must be an object, found {type(data).__name__}")
    return f"{entity}.{action}", data


class Receiver:
    """Records verified deliveries with its own agent; one delivery at a time (a lock), each fsynced."""

    def __init__(self, agent: Agent, marks: Marks, *, secret: bytes, window_s: int) -> None:
        if not secret:
            raise ConfigError(["mlflow.webhook_secret_file: the secret is empty"])
        self.agent = agent
        self.marks = marks
        self.secret = secret
        self.window_s = window_s
        self.who = service_id(agent.producer_id)
        self._lock = threading.Lock()

    def emit(self, kind: str, prov: dict, *, data: dict | None = None, when: datetime | None = None) -> str:
        event_id = self.agent.emit(kind, prov, data=data, time=when)
        if not event_id:
            raise Refused(503, "the spool is full and agent.backpressure is 'drop': nothing was kept, retry later")
        return event_id

    def handle(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> dict[str, Any]:
        """The answer to one delivery (:class:`Refused` for a 4xx / 503)."""
        delivery, _ = verify(
            self.secret, headers, body, now=time.time() if now is None else now, window_s=self.window_s
        )
        event, data = parse(body)
        with self._lock:
            seen = self.marks.get(f"delivery:{delivery}")
            if seen is not None:
                return {"status": "duplicate", "delivery": delivery, "event_id": seen[0]}
            if event not in RECORDED:
                return {"status": "ignored", "delivery": delivery, "event": event}
            try:
                event_id = self._record(event, data)
                self.agent.spool.sync()
            except (SpoolFull, OSError) as e:
                raise Refused(503, f"the spool cannot take the event: {e}; nothing was kept, retry later") from None
            self.marks.put(f"delivery:{delivery}", event_id)
        return {"status": "accepted", "delivery": delivery, "event": event, "event_id": event_id}

    def _record(self, event: str, data: Mapping[str, Any]) -> str:
        name = _member(data, "name", event)
        extra = {"provault:actorUnknown": ACTOR_UNKNOWN}
        if event == "model_version.created":
            version = _member(data, "version", event)
            facts = VersionFacts(
                name=name,
                version=version,
                source=clean_uri(_optional(data, "source")),
                run_id=_optional(data, "run_id"),
                model_id=_optional(data, "model_id"),
                description=_optional(data, "description"),
            )
            facts = with_content(facts, self.marks)
            event_id = self.emit(
                "model.registered", _mapping.version_registered(facts, self.who, actor_unknown=ACTOR_UNKNOWN)
            )
            self.marks.put(f"version:{name}/{version}", event_id, facts.content)
            return event_id
        alias = _member(data, "alias", event)
        if event == "model_version_alias.created":
            return record_alias(self, name, alias, _member(data, "version", event), who=self.who, extra=extra)
        return record_alias_deleted(self, name, alias, who=self.who, extra=extra)


def _optional(data: Mapping[str, Any], name: str) -> str | None:
    value = data.get(name)
    if value is not None and not isinstance(value, str):
        raise Refused(400, f"model_version.created: data.{name} must be a string or null, found {value!r}")
    return value or None


# --- the HTTP side ---------------------------------------------------------------------------


class WebhookApp:
    def __init__(self, receiver: Receiver, *, max_body_bytes: int) -> None:
        self.receiver = receiver
        self.max_body_bytes = max_body_bytes

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes)
        app.router.add_post(PATH, self.deliver)
        app.router.add_get("/health", self.health)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING", "pending": self.receiver.agent.pending()})

    async def deliver(self, request: web.Request) -> web.Response:
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            DELIVERIES.labels("413").inc()
            return _error(413, f"the body is over the limit of {self.max_body_bytes} bytes (mlflow.max_body_bytes)")
        try:
            answer = await asyncio.to_thread(self.receiver.handle, request.headers, body)
        except Refused as e:
            DELIVERIES.labels(str(e.status)).inc()
            return _error(e.status, e.message)
        DELIVERIES.labels(answer["status"]).inc()
        return web.json_response(answer)


def _error(status: int, message: str) -> web.Response:
    headers = {"Retry-After": "5"} if status == 503 else None
    return web.json_response({"code": status, "message": message}, status=status, headers=headers)


class WebhookServer(WebServerThread):
    name = "mlflow-webhook"

    def __init__(self, app: WebhookApp, *, listen: str, tls: ssl.SSLContext | None) -> None:
        refuse_clear_text(
            listen, tls, setting="mlflow.webhook_listen", tls_setting="mlflow.tls_cert", what="registry changes"
        )
        super().__init__(
            app.application, listen=listen, tls=tls, what="the MLflow webhook receiver", thread_name="mlflow-webhook"
        )
        self.app = app

    @property
    def url(self) -> str:
        return self.base_url() + PATH

    def stop(self) -> None:
        super().stop()
        self.app.receiver.agent.close(timeout=5)
        self.app.receiver.marks.close()


# --- building it from the settings -----------------------------------------------------------


def producer_id(settings: Settings) -> str:
    return settings.mlflow.producer_id or f"mlflow-webhook/{socket.gethostname()}"


def key_path(settings: Settings) -> Path:
    if settings.mlflow.key_file:
        return Path(settings.mlflow.key_file).expanduser()
    return settings.data_dir / "keys" / "mlflow-webhook.key"


def registration(settings: Settings, signer: Signer) -> KeyRegistration:
    return service_registration(signer, producer_id(settings), KINDS)


def load_key(settings: Settings) -> Signer:
    path = key_path(settings)
    if not path.exists():
        pid = producer_id(settings)
        raise KeyMaterialError(
            f"the MLflow webhook receiver's key {path} does not exist",
            hint=f"create it with `provault keys new {path}` and register it with `provault keys register {path}.pub "
            f"--role producer --identity service:{pid} --kinds {','.join(KINDS)} --producers {pid}`",
        )
    return load_private_key(path)


def read_secret(settings: Settings) -> bytes:
    where = settings.mlflow.webhook_secret_file
    if not where:
        raise ConfigError(
            ["mlflow.webhook_secret_file is unset: the receiver refuses to accept unsigned webhooks"],
            hint="write the webhook's secret to a file readable only by provault and name it with --secret-file",
        )
    path = Path(where).expanduser()
    try:
        secret = path.read_bytes().strip()
    except OSError as e:
        raise ConfigError([f"mlflow.webhook_secret_file: cannot read {path}: {e.strerror or e}"]) from None
    if not secret:
        raise ConfigError([f"mlflow.webhook_secret_file: {path} is empty"])
    return secret


def build_server(settings: Settings, *, signer: Signer, listen: str | None = None) -> WebhookServer:
    secret = read_secret(settings)
    tls = tls_context(settings.mlflow.tls_cert, settings.mlflow.tls_key, keys="mlflow.tls_cert and mlflow.tls_key")
    agent = agent_from_settings(settings, producer_id=producer_id(settings), signer=signer)
    try:
        receiver = Receiver(
            agent, Marks(settings.data_dir / "producers"), secret=secret, window_s=settings.mlflow.replay_window_s
        )
        app = WebhookApp(receiver, max_body_bytes=settings.mlflow.max_body_bytes)
        return WebhookServer(app, listen=listen or settings.mlflow.webhook_listen, tls=tls)
    except BaseException:
        agent.close(timeout=1)
        raise
