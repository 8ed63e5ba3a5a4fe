"""Wiring of the ledger service: ingest, checkpoints and gRPC in one process.

Used by ``provault ledger serve`` and ``provault up``.  The database must be
migrated and initialised (``provault ledger init``) before it starts; the
checkpoint key on disk must be the one the ledger was initialised with.
"""

from __future__ import annotations

import logging

from ledger.config import Settings
from ledger.core.errors import ProvaultError
from ledger.core.keys import Ed25519Signer, load_private_key
from ledger.db import connect
from ledger.grpckit.security import server_security
from ledger.health import Check, DependencyProbe, PostgresCheck, probe_for
from ledger.natsauth import require_ledger_user
from ledger.store import checkpoints
from ledger.store.migrate import pending

from .appender import Appender
from .checkpointer import Checkpointer
from .grpc_ledger import LedgerGrpcService
from .ingest import IngestService, JetStreamIngest, limits_from

logger = logging.getLogger("provault.ledger")


class LedgerNotReady(ProvaultError):
    reason = "ledger_not_ready"


def load_checkpoint_signer(settings: Settings, dsn: str) -> Ed25519Signer:
    """The checkpoint key from disk, checked against the ledger's trust root."""
    pending_versions = pending(dsn)
    if pending_versions:
        raise LedgerNotReady(
            f"the database schema is behind (pending migrations {pending_versions})", hint="run `provault db migrate`"
        )
    path = settings.checkpoint_key_path
    if not path.exists():
        raise LedgerNotReady(f"checkpoint key {path} does not exist", hint="run `provault ledger init`")
    signer = load_private_key(path)
    with connect(dsn, autocommit=True) as conn:
        expected = checkpoints.checkpoint_verifier(conn)
    if expected.verifier.keyid != signer.keyid:
        raise LedgerNotReady(
            f"checkpoint key {path} (keyid {signer.keyid[:16]}) is not this ledger's checkpoint key "
            f"(keyid {expected.verifier.keyid[:16]}, origin {expected.name})",
            hint="point signing.checkpoint_key at the key the ledger was initialised with",
        )
    return signer


class LedgerRuntime:
    """Starts the ledger's parts; ``services()`` hands them to a Stack to stop."""

    def __init__(self, settings: Settings, *, dsn: str, nats_url: str) -> None:
        self.settings = settings
        self.dsn = dsn
        self.nats_url = nats_url
        self.appender: Appender | None = None
        self.ingest: IngestService | None = None
        self.checkpointer: Checkpointer | None = None
        self.grpc: LedgerGrpcService | None = None
        self.probe: DependencyProbe | None = None

    def health_checks(self) -> dict[str, Check]:
        """What the ledger cannot serve without: PostgreSQL, and its ingest's NATS connection."""

        def nats_check() -> str | None:
            if self.ingest is not None and self.ingest.ingest.nats_connected():
                return None
            return f"NATS at {self.nats_url}: the ledger's connection is down (reconnecting)"

        return {
            "postgres": PostgresCheck(self.dsn, timeout_s=self.settings.health.probe_timeout_s),
            "nats": nats_check,
        }

    def start(self) -> None:
        s = self.settings
        security = server_security(s, listen=s.grpc.ledger_listen, listen_key="grpc.ledger_listen")
        require_ledger_user(s)
        signer = load_checkpoint_signer(s, self.dsn)
        origin = checkpoints_origin(self.dsn)
        try:
            self.appender = Appender(self.dsn, limits=limits_from(s))
            self.checkpointer = Checkpointer(
                self.dsn, signer, origin, every=s.signing.checkpoint_every, interval_s=s.signing.checkpoint_interval_s
            )
            self.checkpointer.start()
            self.ingest = IngestService(JetStreamIngest(s, self.appender, self.nats_url))
            self.ingest.start()
            self.grpc = LedgerGrpcService(
                dsn=self.dsn,
                appender=self.appender,
                listen=s.grpc.ledger_listen,
                max_message_bytes=s.grpc.max_message_bytes,
                authenticator=security.authenticator,
                server_credentials=security.credentials,
            )
            self.grpc.start()
            grpc_service = self.grpc
            self.probe = probe_for(s, self.health_checks(), lambda: [grpc_service])
            self.probe.start()
        except BaseException:
            self.stop()
            raise

    @property
    def grpc_address(self) -> str | None:
        return self.grpc.address if self.grpc else None

    def services(self) -> list:
        return [svc for svc in (self.checkpointer, self.ingest, self.grpc, self.probe) if svc is not None]

    def stop(self) -> None:
        for svc in (self.probe, self.grpc, self.ingest, self.checkpointer):
            if svc is not None:
                try:
                    svc.stop()
                except Exception as e:
                    logger.warning("stopping %s failed: %s", svc.name, e)
        if self.checkpointer is not None:
            try:
                self.checkpointer.sign_now()  # cover the last entries before going away
            except ProvaultError as e:
                logger.warning("final checkpoint failed: %s", e.message)
        if self.appender is not None:
            self.appender.close()
            self.appender = None


def checkpoints_origin(dsn: str) -> str:
    with connect(dsn, autocommit=True) as conn:
        return checkpoints.checkpoint_verifier(conn).name
