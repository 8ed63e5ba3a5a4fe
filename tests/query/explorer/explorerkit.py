"""The explorer on a real ledger: the story signed, checkpointed and projected, served on a free loopback port.

:func:`serving` builds it the way ``build_explorer`` does (token sign-in, the auditor read pool, its
statement timeout) with the tokens file under the test's directory; :class:`Browserless` is a tiny
cookie-keeping HTTP client for the API tests.
"""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger.grpckit.auth import TokenAuthenticator
from ledger.grpckit.server import ReadPool
from ledger.grpckit.tokens import TokenStore
from query.explorer import STATEMENT_TIMEOUT_S, ExplorerApp, ExplorerServer
from query.service import AUDITOR_ROLE

TIMEOUT = 30


@dataclass
class Running:
    server: ExplorerServer
    tokens: TokenStore

    @property
    def base(self) -> str:
        return self.server.base_url()

    def token(self, role: str = "auditor") -> str:
        return self.tokens.create(role=role, name=f"{role} for a test")[0]


@contextlib.contextmanager
def serving(dsn: str, tmp_path: Path, *, max_nodes: int = 1000, dev_link_key: str | None = None) -> Iterator[Running]:
    tokens_file = tmp_path / "tokens.json"
    store = TokenStore(tokens_file)
    store.create(role="admin", name="bootstrap")  # the file exists before the authenticator reads it
    reads = ReadPool(dsn, max_size=4, role=AUDITOR_ROLE, statement_timeout_s=STATEMENT_TIMEOUT_S)
    app = ExplorerApp(
        reads,
        None if dev_link_key else TokenAuthenticator(tokens_file),
        max_nodes=max_nodes,
        session_ttl_s=3600,
        https=False,
        dev_link_key=dev_link_key,
    )
    server = ExplorerServer(app, listen="127.0.0.1:0", tls=None)
    server.start()
    try:
        yield Running(server=server, tokens=store)
    finally:
        server.stop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class Browserless:
    """Cookies kept, redirects not followed (tests look at them), errors returned as replies."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies), _NoRedirect())

    def request(
        self, path: str, *, params: dict[str, str] | None = None, form: dict[str, str] | None = None, headers=None
    ) -> Reply:
        url = self.base + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        req = urllib.request.Request(
            url, data=data, headers=headers or {}, method="POST" if form is not None else "GET"
        )
        try:
            with self.opener.open(req, timeout=TIMEOUT) as r:
                return Reply(r.status, dict(r.headers), r.read())
        except urllib.error.HTTPError as e:
            return Reply(e.code, dict(e.headers), e.read())

    def sign_in(self, token: str) -> Reply:
        return self.request("/login", form={"token": token})

    def api(self, name: str, **params: str) -> Reply:
        return self.request(f"/api/{name}", params=params)
