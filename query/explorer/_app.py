"""The explorer's HTTP side: sign-in, sessions, the static pages and the JSON API (docs/explorer.md).

* **Who may look.**  An auditor or admin bearer token (the ones ``provault auth token create`` makes, the
  same file the gRPC servers read) signs a browser in; the session cookie is random, HttpOnly,
  SameSite=Strict and Secure under HTTPS, and holds nothing but its own id.  The token behind a session
  is checked again on every request, so a revoked token signs its sessions out at once.  API clients may
  send ``Authorization: Bearer`` instead.  In dev mode (``provault up``) the process makes a one-time
  sign-in link instead of accepting everyone: nothing the explorer shows is open to an unauthenticated
  browser, in any mode.
* **What it shows.**  Only GETs read data, through a read-only database role, in worker threads, each
  statement cut at ``statement_timeout_s``; answers are bounded (``_api``).  Every response carries a
  Content-Security-Policy that allows only the explorer's own scripts and styles, so text from an event
  can never run; the page writes event text only through ``textContent``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import secrets
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from aiohttp import web

from ledger.core.errors import ProvaultError
from ledger.grpckit.auth import ADMIN, AUDITOR, Authenticator, Identity
from ledger.grpckit.server import ReadPool
from ledger.grpckit.status import status_for
from query.service import translate_error

from . import _api

log = logging.getLogger("provault.explorer")

STATIC = Path(__file__).parent / "static"
COOKIE = "provault_session"
ROLES = frozenset({AUDITOR, ADMIN})
MAX_SESSIONS = 10_000
MAX_FORM_BYTES = 8 * 1024
_METHOD = "/provault.explorer/"
"""The method name the token authenticator is asked about (it only matters for its log lines)."""

CSP = (
    "default-src 'none'; script-src 'self'; worker-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HTTP_STATUS = {
    "INVALID_ARGUMENT": 400,
    "NOT_FOUND": 404,
    "FAILED_PRECONDITION": 409,
    "RESOURCE_EXHAUSTED": 413,
    "UNAVAILABLE": 503,
}
_LOGIN_ERRORS = ("token", "role", "link", "expired")
"""Codes the sign-in page turns into fixed text: nothing a visitor typed is ever echoed back."""


@dataclass(slots=True)
class Session:
    subject: str
    token: str | None
    """The bearer token that signed it in (None for a dev-mode link): checked again on every request."""
    expires: float


class Sessions:
    """Signed-in browsers by session id, in this process's memory (a restart signs everyone out)."""

    def __init__(self, ttl_s: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._by_id: OrderedDict[str, Session] = OrderedDict()

    def open(self, subject: str, token: str | None) -> str:
        sid = secrets.token_urlsafe(32)
        self._by_id[sid] = Session(subject=subject, token=token, expires=self.clock() + self.ttl_s)
        while len(self._by_id) > MAX_SESSIONS:
            self._by_id.popitem(last=False)
        return sid

    def get(self, sid: str | None) -> Session | None:
        session = self._by_id.get(sid or "")
        if session is not None and session.expires <= self.clock():
            del self._by_id[sid]
            return None
        return session

    def close(self, sid: str | None) -> None:
        self._by_id.pop(sid or "", None)


class Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        text=json.dumps(body, ensure_ascii=False, default=str), status=status, content_type="application/json"
    )


def _error(status: int, message: str, hint: str | None = None) -> web.Response:
    return _json({"code": status, "message": message, **({"hint": hint} if hint else {})}, status)


class ExplorerApp:
    """The request handling, apart from where it listens (``ExplorerServer``)."""

    def __init__(
        self,
        reads: ReadPool,
        authenticator: Authenticator | None,
        *,
        max_nodes: int,
        session_ttl_s: float,
        https: bool,
        dev_link_key: str | None = None,
        workers: int = 4,
    ) -> None:
        if authenticator is None and dev_link_key is None:
            raise ValueError("an authenticator or a dev-mode sign-in link is required")
        self.reads = reads
        self.authenticator = authenticator
        self.max_nodes = max_nodes
        self.https = https
        self.dev_link_key = dev_link_key
        self.sessions = Sessions(session_ttl_s)
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="provault-explorer")

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_FORM_BYTES, middlewares=[self._headers])
        r = app.router
        r.add_get("/", self.index)
        r.add_get("/login", self.login_page)
        r.add_post("/login", self.login)
        r.add_get("/login/link", self.login_link)
        r.add_post("/logout", self.logout)
        r.add_get("/api/whoami", self.whoami)
        r.add_get("/api/search", self._api(_api.search))
        r.add_get("/api/graph", self._api(lambda c, q: _api.graph(c, q, max_nodes=self.max_nodes)))
        r.add_get("/api/impact", self._api(lambda c, q: _api.impact(c, q, max_nodes=self.max_nodes)))
        r.add_get("/api/entry", self._api(_api.entry))
        r.add_get("/api/bundle", self.bundle)
        r.add_static("/static/", STATIC, show_index=False, follow_symlinks=False)
        return app

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # --- headers and errors -------------------------------------------------------------

    @web.middleware
    async def _headers(self, request: web.Request, handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except Refused as e:
            response = _error(e.status, e.message)
        except web.HTTPRequestEntityTooLarge:
            response = _error(413, f"the request body is over {MAX_FORM_BYTES} bytes")
        except web.HTTPException as e:
            if e.status < 400:
                raise
            response = _error(e.status, e.reason)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Frame-Options"] = "DENY"
        if not request.path.startswith("/static/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    # --- who is asking ------------------------------------------------------------------

    def _token_identity(self, token: str) -> Identity | None:
        if self.authenticator is None:
            return None
        return self.authenticator.authenticate(_METHOD, [("authorization", f"Bearer {token}")])

    def _caller(self, request: web.Request) -> str:
        """The subject of an admitted caller; :class:`Refused` 401 / 403 otherwise."""
        header = request.headers.get("Authorization", "")
        if header:
            scheme, _, token = header.partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Refused(401, "Authorization: expected 'Bearer <token>'")
            return self._admit(self._token_identity(token.strip()))
        sid = request.cookies.get(COOKIE)
        session = self.sessions.get(sid)
        if session is None:
            raise Refused(401, "sign in with an auditor token first (the session is missing or has expired)")
        if session.token is not None:
            identity = self._token_identity(session.token)
            if identity is None:
                self.sessions.close(sid)
                raise Refused(401, "the token behind this session was revoked: sign in again")
            return self._admit(identity)
        return session.subject

    @staticmethod
    def _admit(identity: Identity | None) -> str:
        if identity is None:
            raise Refused(401, "the token is not valid (unknown, revoked or mistyped)")
        if not identity.roles & ROLES:
            raise Refused(403, f"{identity.subject} has the roles {sorted(identity.roles)}; the explorer needs auditor")
        return identity.subject

    def _signed_in(self, request: web.Request) -> bool:
        try:
            self._caller(request)
        except Refused:
            return False
        return True

    def _set_session(self, response: web.StreamResponse, sid: str) -> None:
        response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", secure=self.https, path="/", max_age=None)

    # --- pages --------------------------------------------------------------------------

    async def index(self, request: web.Request) -> web.StreamResponse:
        if not self._signed_in(request):
            raise web.HTTPSeeOther("/login")
        return web.FileResponse(STATIC / "index.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def login_page(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "login.html", headers={"Content-Type": "text/html; charset=utf-8"})

    async def login(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        token = str(form.get("token", "")).strip()
        identity = self._token_identity(token) if token else None
        if identity is None:
            log.info("explorer: a sign-in with an invalid token was refused")
            raise web.HTTPSeeOther("/login?error=token")
        if not identity.roles & ROLES:
            log.info("explorer: %s may not sign in (roles %s)", identity.subject, sorted(identity.roles))
            raise web.HTTPSeeOther("/login?error=role")
        response = web.HTTPSeeOther("/")
        self._set_session(response, self.sessions.open(identity.subject, token))
        log.info("explorer: %s signed in", identity.subject)
        raise response

    async def login_link(self, request: web.Request) -> web.StreamResponse:
        key = request.query.get("key", "")
        if self.dev_link_key is None or not hmac.compare_digest(key.encode(), self.dev_link_key.encode()):
            raise web.HTTPSeeOther("/login?error=link")
        response = web.HTTPSeeOther("/")
        self._set_session(response, self.sessions.open("dev-mode", None))
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        self.sessions.close(request.cookies.get(COOKIE))
        response = web.HTTPSeeOther("/login")
        response.del_cookie(COOKIE, path="/")
        raise response

    async def whoami(self, request: web.Request) -> web.Response:
        return _json({"subject": self._caller(request), "max_nodes": self.max_nodes})

    # --- the API ------------------------------------------------------------------------

    def _api(self, answer: Callable[[psycopg.Connection, Any], Any]):
        async def handler(request: web.Request) -> web.Response:
            self._caller(request)
            status, body = await self._run(answer, dict(request.query))
            return _json(body, status)

        return handler

    async def _run(self, answer: Callable[[psycopg.Connection, Any], Any], query: dict[str, str]) -> tuple[int, Any]:
        def work() -> Any:
            with self.reads.connection() as conn:
                return answer(conn, query)

        try:
            return 200, await asyncio.get_running_loop().run_in_executor(self.executor, work)
        except Exception as e:
            return _failure(e)

    async def bundle(self, request: web.Request) -> web.Response:
        self._caller(request)
        status, body = await self._run(lambda c, q: _api.bundle(c, q, max_nodes=self.max_nodes), dict(request.query))
        if status != 200:
            return _json(body, status)
        name, data = body
        return web.Response(
            body=data,
            content_type="application/json",
            headers={"Content-Disposition": f'attachment; filename="{name}"'},
        )


def _timed_out(e: BaseException) -> bool:
    while e is not None:
        if isinstance(e, psycopg.errors.QueryCanceled):
            return True
        e = e.__cause__ or e.__context__
    return False


def _failure(e: BaseException) -> tuple[int, dict[str, Any]]:
    if _timed_out(e):
        return 413, {
            "code": 413,
            "message": "the answer took longer than the explorer allows for one request: lower the depth, or use "
            "`provault trace` / `provault export`",
        }
    error = translate_error(e)
    code, text = status_for(error)
    status = _HTTP_STATUS.get(code.name, 500)
    if isinstance(error, ProvaultError) and text == error.diagnostics():
        message, hint = error.message, error.hint
    else:
        message, hint = text, None
    if status >= 500:
        incident = uuid.uuid4().hex[:12]
        log.warning("explorer: request failed [incident %s]: %s", incident, e, exc_info=status == 500)
        message, hint = f"{message} [incident {incident}]", None
    return status, {"code": status, "message": message, **({"hint": hint} if hint else {})}
