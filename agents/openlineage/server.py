"""The OpenLineage HTTP endpoint: ``POST /api/v1/lineage``, as the OpenLineage HTTP transport and Marquez speak it.

aiohttp serves it: asyncio-native, so thousands of concurrent clients cost
no threads; its request body limit refuses an oversized body before it is
read; it speaks TLS through the standard :mod:`ssl` module.  The server runs
on its own event loop in a thread, so ``provault up`` and ``provault
openlineage serve`` start and stop it like the gRPC services.

Answers (docs/openlineage.md): 201 with the event id once the event is
durable (or was already), 400 / 422 naming the member and the rule, 401 /
403 for credentials, 413 / 415, and 503 only when nothing was kept.
"""

from __future__ import annotations

import logging
import ssl
import time

from aiohttp import web

from ledger import metrics
from ledger.grpckit.auth import Authenticator, Identity
from ledger.webthread import WebServerThread, refuse_clear_text, tls_context

from ._spec import BadOpenLineage, check_body
from .intake import DEV_MODE, Credential, Intake, NotKept

log = logging.getLogger("provault.openlineage")

REQUESTS = metrics.Counter("provault_openlineage_requests", "Lineage requests answered, by HTTP status.", ("status",))
LATENCY = metrics.Histogram(
    "provault_openlineage_request_seconds",
    "Request to answer, including the durable write before a 201.",
    buckets=metrics.LATENCY_BUCKETS,
)

PATH = "/api/v1/lineage"
ROLES = frozenset({"producer", "admin"})
_JSON_TYPES = ("application/json", "application/x-ndjson", "text/json")


def _error(status: int, message: str, *, member: str | None = None, rule: str | None = None, **headers: str):
    body = {"code": status, "message": message}
    if member is not None:
        body |= {"member": member, "rule": rule}
    return web.json_response(body, status=status, headers=headers or None)


class OpenLineageApp:
    """The request handling, apart from where it listens."""

    def __init__(self, intake: Intake, authenticator: Authenticator, *, max_body_bytes: int) -> None:
        self.intake = intake
        self.authenticator = authenticator
        self.max_body_bytes = max_body_bytes

    def application(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body_bytes, middlewares=[self._errors])
        app.router.add_post(PATH, self.lineage)
        app.router.add_get("/api/v1/health", self.health)
        return app

    @web.middleware
    async def _errors(self, request: web.Request, handler):
        started = time.perf_counter()
        response = await self._answer(request, handler)
        if request.path == PATH:
            REQUESTS.labels(str(response.status)).inc()
            LATENCY.observe(time.perf_counter() - started)
        return response

    async def _answer(self, request: web.Request, handler):
        try:
            return await handler(request)
        except web.HTTPRequestEntityTooLarge:
            return _error(
                413,
                f"the body is over the limit of {self.max_body_bytes} bytes (openlineage.max_body_bytes)",
                member="$",
                rule="size",
            )
        except web.HTTPException as e:
            if e.status >= 400:
                return _error(e.status, e.reason)
            raise

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "SERVING", "pending": self.intake.agent.pending()})

    async def lineage(self, request: web.Request) -> web.Response:
        identity = self._identify(request)
        if identity is None:
            return _error(
                401,
                "a bearer token is required (OpenLineage api_key auth)",
                **{"WWW-Authenticate": 'Bearer realm="provault"'},
            )
        if not identity.roles & ROLES:
            return _error(
                403, f"{identity.subject} has the roles {sorted(identity.roles)}; sending lineage needs producer"
            )
        if request.content_type not in _JSON_TYPES:
            return _error(415, f"expected Content-Type application/json, found {request.content_type!r}")
        body = await request.read()
        try:
            checked = check_body(body)
            outcome = await self.intake.submit_async(checked, _credential(identity))
        except BadOpenLineage as e:
            return _error(e.status, str(e), member=e.member, rule=e.rule)
        except NotKept as e:
            return _error(503, f"{e.message}; nothing was kept, retry later", **{"Retry-After": "5"})
        return web.json_response(outcome.to_json(), status=201)

    def _identify(self, request: web.Request) -> Identity | None:
        return self.authenticator.authenticate(PATH, [(k.lower(), v) for k, v in request.headers.items()])


def _credential(identity: Identity) -> Credential:
    if identity.subject == "dev-mode":
        return DEV_MODE
    subject, _, name = identity.subject.partition(" (")
    return Credential(subject, name.rstrip(")"))


def ssl_context(cert: str | None, key: str | None) -> ssl.SSLContext | None:
    return tls_context(cert, key, keys="openlineage.tls_cert and openlineage.tls_key")


class OpenLineageServer(WebServerThread):
    """The endpoint on its own event loop thread; ``stop()`` answers what is in flight, then closes the intake."""

    name = "openlineage"

    def __init__(
        self,
        app: OpenLineageApp,
        *,
        listen: str,
        tls: ssl.SSLContext | None = None,
        dev_mode: bool = False,
    ) -> None:
        if not dev_mode:
            refuse_clear_text(
                listen, tls, setting="openlineage.listen", tls_setting="openlineage.tls_cert", what="api keys"
            )
        super().__init__(
            app.application, listen=listen, tls=tls, what="the OpenLineage endpoint", thread_name="openlineage-http"
        )
        self.app = app

    @property
    def url(self) -> str:
        return self.base_url() + PATH

    def stop(self) -> None:
        super().stop()
        self.app.intake.close()
