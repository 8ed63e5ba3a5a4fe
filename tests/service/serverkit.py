"""LedgerService and QueryService secured as settings say (exactly as the CLI builds them), on free loopback
ports, for tests that need real authenticated servers."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import grpc

from ledger.config import GrpcSettings, Settings
from ledger.grpckit.auth import LEDGER_METHOD_ROLES, AuthInterceptor
from ledger.grpckit.security import server_security
from ledger.grpckit.tokens import TokenStore, tokens_path
from ledger.service.appender import Appender
from ledger.service.grpc_ledger import build_ledger_server
from ledger.store import log
from query.projector import migrate_prov
from query.service import QUERY_METHOD_ROLES, build_query_server
from tests.ledgerkit import Ledger


@dataclass
class Servers:
    ledger: Ledger
    settings: Settings
    ledger_target: str
    query_target: str
    channel_credentials: grpc.ChannelCredentials | None = None

    @contextlib.contextmanager
    def channels(
        self, credentials: grpc.ChannelCredentials | None = None
    ) -> Iterator[tuple[grpc.Channel, grpc.Channel]]:
        creds = credentials or self.channel_credentials
        opened = [
            grpc.secure_channel(t, creds) if creds else grpc.insecure_channel(t)
            for t in (self.ledger_target, self.query_target)
        ]
        try:
            yield opened[0], opened[1]
        finally:
            for c in opened:
                c.close()

    def token(self, role: str, producers: Sequence[str] = (), name: str = "") -> str:
        return TokenStore(tokens_path(self.settings)).create(role=role, producers=producers, name=name)[0]

    def log_size(self) -> int:
        return log.log_size(self.ledger.conn)


@contextlib.contextmanager
def serving(
    ledger: Ledger, settings: Settings, channel_credentials: grpc.ChannelCredentials | None = None
) -> Iterator[Servers]:
    """LedgerService and QueryService secured as ``settings`` say (exactly as the CLI does), on free ports."""
    migrate_prov(ledger.dsn)
    appender = Appender(ledger.dsn, limits=ledger.limits)
    started = []
    try:
        targets = []
        for build, roles, kw in (
            (build_ledger_server, LEDGER_METHOD_ROLES, {"appender": appender}),
            (build_query_server, QUERY_METHOD_ROLES, {}),
        ):
            security = server_security(settings, listen="127.0.0.1:0", listen_key="grpc.ledger_listen")
            server, port = build(
                dsn=ledger.dsn,
                listen="127.0.0.1:0",
                max_message_bytes=4 << 20,
                max_workers=4,
                interceptors=(AuthInterceptor(security.authenticator, roles),),
                server_credentials=security.credentials,
                **kw,
            )
            server.start()
            started.append(server)
            targets.append(f"{'localhost' if security.credentials else '127.0.0.1'}:{port}")
        yield Servers(
            ledger=ledger,
            settings=settings,
            ledger_target=targets[0],
            query_target=targets[1],
            channel_credentials=channel_credentials,
        )
    finally:
        for server in started:
            server.stop(None).wait(10)
        appender.close()


def settings_for(tmp_path: Path, **grpc_keys: str) -> Settings:
    return Settings(data_dir=tmp_path / "data", grpc=GrpcSettings(**grpc_keys))
