"""The lineage explorer: the PROV graph in a browser, served read-only by the query process (docs/explorer.md).

:func:`build_explorer` makes it from the settings (``[explorer]``; HTTPS with the gRPC certificate);
``query serve`` and ``provault up`` run it beside QueryService.  The page draws with Cytoscape.js and
lays graphs out with the Eclipse Layout Kernel (elkjs), both bundled under ``static/vendor`` at the
versions ``static/vendor/VENDOR.json`` pins: nothing is fetched from the network at run time.
"""

from __future__ import annotations

import secrets
import ssl

from ledger.config import Settings
from ledger.core.errors import ConfigError
from ledger.credentials import is_loopback
from ledger.grpckit.auth import TokenAuthenticator
from ledger.grpckit.server import ReadPool
from ledger.grpckit.tokens import tokens_path
from ledger.webthread import WebServerThread, tls_context
from query.service import AUDITOR_ROLE

from ._app import ExplorerApp

STATEMENT_TIMEOUT_S = 10.0
"""Longest any one database statement behind an explorer answer may run."""


class ExplorerServer(WebServerThread):
    """The explorer on its own event loop thread; ``stop()`` also closes its read pool."""

    name = "explorer"

    def __init__(self, app: ExplorerApp, *, listen: str, tls: ssl.SSLContext | None) -> None:
        super().__init__(app.application, listen=listen, tls=tls, what="the lineage explorer", thread_name="explorer")
        self.app = app

    @property
    def url(self) -> str:
        """Where a browser opens it; in dev mode, the one sign-in link (it carries this process's key)."""
        if self.app.dev_link_key is not None:
            return f"{self.base_url()}/login/link?key={self.app.dev_link_key}"
        return self.base_url() + "/"

    def stop(self) -> None:
        super().stop()
        self.app.close()
        self.app.reads.close()


def build_explorer(settings: Settings, dsn: str, *, listen: str | None = None) -> ExplorerServer | None:
    """The explorer as the settings say (not started); None with ``explorer.enabled`` off."""
    ex = settings.explorer
    if not ex.enabled:
        return None
    listen = listen or ex.listen
    tls = tls_context(settings.grpc.tls_cert, settings.grpc.tls_key, keys="grpc.tls_cert and grpc.tls_key")
    if settings.dev_mode:
        authenticator, link_key = None, secrets.token_urlsafe(24)
    else:
        if tls is None and not is_loopback(listen):
            raise ConfigError(
                [
                    f"explorer.listen: {listen} is not a loopback address and grpc.tls_cert is unset: "
                    "sign-in tokens and session cookies would cross the network in clear"
                ],
                hint="set grpc.tls_cert and grpc.tls_key, or listen on 127.0.0.1",
            )
        path = tokens_path(settings)
        if not path.exists():
            raise ConfigError(
                [
                    f"explorer: auditors sign in with tokens, and the tokens file {path} (grpc.tokens_file) does not exist"
                ],
                hint="create one with `provault auth token create --role auditor --name NAME`, "
                "or set explorer.enabled = false",
            )
        authenticator, link_key = TokenAuthenticator(path), None
    reads = ReadPool(dsn, max_size=4, role=AUDITOR_ROLE, statement_timeout_s=STATEMENT_TIMEOUT_S)
    app = ExplorerApp(
        reads,
        authenticator,
        max_nodes=ex.max_nodes,
        session_ttl_s=ex.session_ttl_s,
        https=tls is not None,
        dev_link_key=link_key,
    )
    return ExplorerServer(app, listen=listen, tls=tls)


__all__ = ["STATEMENT_TIMEOUT_S", "ExplorerApp", "ExplorerServer", "build_explorer"]
