"""The attestation key: it signs in-toto attestations and records gate decisions (docs/supply-chain.md).

One Ed25519 key at ``supply.key_file`` (default ``<data_dir>/keys/attestor.key``), registered as a producer
of ``attestation.*`` and ``gate.*`` under the producer id ``supply.producer_id`` (default
``attestor/<host>``).  ``provault up`` creates and registers it with the stack's admin key the first time
(:func:`ensure_dev_key`); elsewhere the operator registers it, and :func:`load_key` says how when it is
missing.  :func:`recorder` is the agent that carries its events into the ledger.
"""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from agents.runtime import Agent, agent_from_settings
from ledger.config import Settings
from ledger.core.errors import KeyMaterialError, ProvaultError
from ledger.core.keyring import KeyRegistration
from ledger.core.keys import Signer, load_private_key
from ledger.keyadmin import ensure_service_key, service_registration
from ledger.stack import Endpoints

KINDS = ("attestation.*", "gate.*")


def key_path(settings: Settings) -> Path:
    if settings.supply.key_file:
        return Path(settings.supply.key_file).expanduser()
    return settings.data_dir / "keys" / "attestor.key"


def producer_id(settings: Settings) -> str:
    return settings.supply.producer_id or f"attestor/{socket.gethostname()}"


def registration(settings: Settings, signer: Signer) -> KeyRegistration:
    return service_registration(signer, producer_id(settings), KINDS)


def register_hint(settings: Settings, path: Path) -> str:
    pid = producer_id(settings)
    return (
        f"create it with `provault keys new {path}` and register it with `provault keys register {path}.pub "
        f"--role producer --identity service:{pid} --kinds '{','.join(KINDS)}' --producers {pid}` "
        "(`provault up` does both by itself)"
    )


def load_key(settings: Settings) -> Signer:
    """The attestation key, or ``KeyMaterialError`` saying how to make and register it."""
    path = key_path(settings)
    if not path.exists():
        raise KeyMaterialError(f"the attestation key {path} does not exist", hint=register_hint(settings, path))
    return load_private_key(path)


def ensure_dev_key(settings: Settings, endpoints: Endpoints) -> tuple[Signer, list[str]]:
    """``provault up``: the attestation key, created and registered with the stack's admin key when needed."""
    return ensure_service_key(
        settings,
        key_path(settings),
        lambda signer: registration(settings, signer),
        dsn=endpoints.postgres_dsn,
        target=str(endpoints.ledger_grpc),
        what="the attestation key",
    )


def recorder(settings: Settings, signer: Signer) -> Agent:
    """The agent that signs the attestation key's events and carries them to the ledger (close it after).

    It keeps its own spool (``<data_dir>/spool/<its producer id>``), never a producer's ``agent.spool_dir``:
    two chains must not share one spool."""
    if settings.agent.spool_dir is not None:
        settings = dataclasses.replace(settings, agent=dataclasses.replace(settings.agent, spool_dir=None))
    return agent_from_settings(settings, producer_id=producer_id(settings), signer=signer)


class NotRecorded(ProvaultError):
    """An attestation key's event could not even be spooled."""

    reason = "not_recorded"


class RecordedEvent(str):
    """The id of a recorded event, and whether it reached the ledger or waits in the spool."""

    delivered: bool
    spool: Path | None
    producer_id: str

    def __new__(
        cls, event_id: str, *, delivered: bool, spool: Path | None = None, producer_id: str = ""
    ) -> RecordedEvent:
        self = super().__new__(cls, event_id)
        self.delivered, self.spool, self.producer_id = delivered, spool, producer_id
        return self


_recording = threading.Lock()
"""The key's spool admits one writer at a time: callers in one process (a server's threads) take turns."""
BUSY_WAIT_S = 10.0
"""How long a recording waits while another process on this host (a server, a CI job's `provault gate`)
holds the attestation key's chain and spool; each holds them only for one event's sealing and delivery."""


def _open_recorder(settings: Settings, signer: Signer) -> Agent:
    deadline = time.monotonic() + BUSY_WAIT_S
    while True:
        try:
            return recorder(settings, signer)
        except ProvaultError as e:
            if "in use by another process" not in e.message or time.monotonic() >= deadline:
                raise
            time.sleep(0.05)


def record(
    settings: Settings, signer: Signer, kind: str, prov: Mapping[str, Any], data: Mapping[str, Any], *, what: str
) -> RecordedEvent:
    """Sign ``kind`` with the attestation key, spool it, and wait up to ``agent.publish_timeout_s`` for delivery."""
    with _recording:
        agent = _open_recorder(settings, signer)
        try:
            event_id = agent.emit(kind, prov, data=data)
            delivered = bool(event_id) and agent.flush(timeout=settings.agent.publish_timeout_s)
        finally:
            agent.close(timeout=0)
    if not event_id:
        raise NotRecorded(
            f"{what} could not be recorded: the attestation key's spool {agent.spool.dir} is full",
            hint="bring the ledger back so the spool drains, or raise agent.spool_max_bytes",
        )
    return RecordedEvent(event_id, delivered=delivered, spool=agent.spool.dir, producer_id=producer_id(settings))
