"""Building the OpenLineage endpoint from the settings, and its part in ``provault up`` (``provault.stack``)."""

from __future__ import annotations

import dataclasses
import logging
import socket
from pathlib import Path

from ledger.config import Settings
from ledger.core.errors import ConfigError, KeyMaterialError
from ledger.core.keyring import KeyRegistration
from ledger.core.keys import Signer, load_private_key
from ledger.grpckit.auth import DevModeAuthenticator, TokenAuthenticator
from ledger.grpckit.tokens import tokens_path
from ledger.keyadmin import ensure_service_key, service_registration
from ledger.stack import Endpoints, Stack

from ..runtime import agent_from_settings
from .intake import Intake
from .server import OpenLineageApp, OpenLineageServer, ssl_context

log = logging.getLogger("provault.openlineage")


def key_path(settings: Settings) -> Path:
    if settings.openlineage.key_file:
        return Path(settings.openlineage.key_file).expanduser()
    return settings.data_dir / "keys" / "openlineage.key"


def producer_id(settings: Settings) -> str:
    return settings.openlineage.producer_id or f"openlineage/{socket.gethostname()}"


def registration(settings: Settings, signer: Signer) -> KeyRegistration:
    """The key the endpoint needs: a producer of the ``openlineage.*`` kinds, as the endpoint and as its import."""
    pid = producer_id(settings)
    return service_registration(signer, pid, ("openlineage.*",), (pid, f"{pid}/import"))


def load_key(settings: Settings) -> Signer:
    path = key_path(settings)
    if not path.exists():
        raise KeyMaterialError(
            f"the OpenLineage endpoint's key {path} does not exist",
            hint=f"create it with `provault keys new {path}` and register it with `provault keys register {path}.pub "
            f"--role producer --identity service:{producer_id(settings)} --kinds 'openlineage.*' "
            f"--producers {producer_id(settings)},{producer_id(settings)}/import`",
        )
    return load_private_key(path)


def build_server(settings: Settings, *, signer: Signer, listen: str | None = None) -> OpenLineageServer:
    """The endpoint, its intake and agent, as the settings say (not started)."""
    ol = settings.openlineage
    if settings.dev_mode:
        authenticator = DevModeAuthenticator()
    else:
        path = tokens_path(settings)
        if not path.exists():
            raise ConfigError(
                [
                    f"no way to authenticate OpenLineage clients: the tokens file {path} (grpc.tokens_file) does not exist"
                ],
                hint="create a token for each client with `provault auth token create --role producer --name NAME`",
            )
        authenticator = TokenAuthenticator(path)
    tls = ssl_context(ol.tls_cert, ol.tls_key)
    pid = producer_id(settings)
    agent = agent_from_settings(settings, producer_id=pid, signer=signer)
    try:
        intake = Intake(
            agent, index_dir=settings.data_dir / "producers", max_payload_bytes=settings.ingest.max_payload_bytes
        )
        app = OpenLineageApp(intake, authenticator, max_body_bytes=ol.max_body_bytes)
        return OpenLineageServer(app, listen=listen or ol.listen, tls=tls, dev_mode=settings.dev_mode)
    except BaseException:
        agent.close(timeout=1)
        raise


def ensure_dev_key(settings: Settings, endpoints: Endpoints) -> tuple[Signer, list[str]]:
    """``provault up``: the endpoint's key, created and registered with the stack's admin key when needed."""
    return ensure_service_key(
        settings,
        key_path(settings),
        lambda signer: registration(settings, signer),
        dsn=endpoints.postgres_dsn,
        target=str(endpoints.ledger_grpc),
        what="the OpenLineage endpoint's key",
    )


def start(stack: Stack, endpoints: Endpoints) -> Endpoints:
    """``provault up``: the OpenLineage endpoint beside the ledger (unless ``openlineage.enabled`` is false)."""
    settings = stack.settings
    if not settings.openlineage.enabled:
        return endpoints
    signer, changes = ensure_dev_key(settings, endpoints)
    for change in changes:
        log.info("openlineage: %s", change)
    server = build_server(settings, signer=signer)
    server.start()
    stack.add(server)
    return dataclasses.replace(
        endpoints,
        services=(*endpoints.services, ("openlineage", server.url, "OpenLineage: POST run, job and dataset events")),
    )
