"""The query side in ``provault up``: the projector and QueryService, contributed through ``provault.stack``."""

from __future__ import annotations

import dataclasses
import logging

from ledger.grpckit.security import server_security
from ledger.health import DependencyProbe, PostgresCheck, probe_for
from ledger.stack import Endpoints, Stack
from query.explorer import build_explorer
from query.projector import Projector
from query.service import QueryGrpcService
from query.supply import signer as attestor

log = logging.getLogger("provault.query")


def start(stack: Stack, endpoints: Endpoints) -> Endpoints:
    """Start the projector and QueryService on ``endpoints.postgres_dsn``; both are handed to ``stack``."""
    settings = stack.settings
    _, changes = attestor.ensure_dev_key(settings, endpoints)
    for change in changes:
        log.info("supply chain: %s", change)
    projector = Projector(endpoints.postgres_dsn)
    projector.start()
    stack.add(projector)
    security = server_security(settings, listen=settings.grpc.query_listen, listen_key="grpc.query_listen")
    query = QueryGrpcService(
        dsn=endpoints.postgres_dsn,
        listen=settings.grpc.query_listen,
        max_message_bytes=settings.grpc.max_message_bytes,
        authenticator=security.authenticator,
        server_credentials=security.credentials,
        settings=settings,
    )
    query.start()
    stack.add(query)
    probe = health_probe(settings, endpoints.postgres_dsn, query)
    probe.start()
    stack.add(probe)
    services = endpoints.services
    explorer = build_explorer(settings, endpoints.postgres_dsn)
    if explorer is not None:
        explorer.start()
        stack.add(explorer)
        services = (
            *services,
            ("explorer", explorer.url, "lineage explorer: open it in a browser, the link signs you in"),
        )
    return dataclasses.replace(endpoints, query_grpc=query.address, services=services)


def health_probe(settings, dsn: str, query: QueryGrpcService) -> DependencyProbe:
    """QueryService's health follows PostgreSQL (not started)."""
    return probe_for(
        settings, {"postgres": PostgresCheck(dsn, timeout_s=settings.health.probe_timeout_s)}, lambda: [query]
    )
