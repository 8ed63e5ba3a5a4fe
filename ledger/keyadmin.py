"""Admin-signed key events sent to a running ledger: what ``provault keys`` and the services that register
their own key share.

The admin's chain position is saved, and the sealed envelope kept in
``<data-dir>/outbox/``, before it is sent, so an interrupted send resends the
same event next time instead of forking the admin's chain.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ledger.bootstrap import default_admin_key_path
from ledger.chainfile import ChainFile
from ledger.client import AppendOutcome, LedgerClient
from ledger.config import Settings
from ledger.core.errors import ProvaultError
from ledger.core.keyring import KEY_REGISTERED, KeyRegistration
from ledger.core.keys import Signer, load_or_create_key, load_private_key
from ledger.core.producing import ProducerChain
from ledger.db import connect
from ledger.store.log import load_registry


class AdminEventFailed(ProvaultError):
    reason = "admin_event_failed"


def service_registration(
    signer: Signer, producer_id: str, kinds: Sequence[str], producers: Sequence[str] | None = None
) -> KeyRegistration:
    """The registration of a service's own producer key (the OpenLineage endpoint, the MLflow webhook receiver,
    the attestation key): identity ``service:<producer id>``, these kinds, its producer ids."""
    return KeyRegistration(
        keyid=signer.keyid,
        public_key=signer.public_key,
        role="producer",
        identity={"type": "service", "name": producer_id},
        kinds=tuple(kinds),
        producers=tuple(producers or (producer_id,)),
    )


def ensure_service_key(
    settings: Settings,
    path: Path,
    make_registration: Callable[[Signer], KeyRegistration],
    *,
    dsn: str,
    target: str,
    what: str,
) -> tuple[Signer, list[str]]:
    """``provault up``: a service's own key at ``path``, created and registered with the stack's admin key when
    needed; the key and what was changed, in words (``what`` names the key: "the attestation key")."""
    signer, created = load_or_create_key(path)
    changes = [f"created {what} {path}"] if created else []
    reg = make_registration(signer)
    if ensure_registered(settings, reg, dsn=dsn, target=target):
        changes.append(f"registered it for {', '.join(reg.kinds)} as producer {reg.identity['name']}")
    return signer, changes


def registration_prov(reg: KeyRegistration) -> dict[str, Any]:
    return {
        "agent": {
            f"provault:key-{reg.keyid[:16]}": {"prov:type": "provault:SigningKey", "prov:label": reg.identity["name"]}
        }
    }


def send_admin_event(
    settings: Settings,
    kind: str,
    prov: Mapping[str, Any],
    data: Mapping[str, Any],
    *,
    target: str,
    admin_key: str | os.PathLike[str] | None = None,
) -> tuple[str, AppendOutcome]:
    """Sign ``kind`` with the admin key and append it; (event id, outcome). Refusals raise AdminEventFailed."""
    admin = load_private_key(admin_key or default_admin_key_path(settings))
    outbox = settings.data_dir / "outbox"
    outbox.mkdir(parents=True, exist_ok=True)
    with (
        ChainFile(settings.data_dir / "producers", f"admin/{socket.gethostname()}/{admin.keyid[:16]}") as state,
        LedgerClient.from_settings(target, settings.grpc) as client,
    ):
        _resend_outbox(client, outbox)
        chain = ProducerChain(state.producer_id, admin, position=state.load())
        sealed = chain.emit(kind, prov, data=data)
        pending = outbox / f"{sealed.event.producer.seq:020d}-{sealed.event_id}.json"
        pending.write_bytes(sealed.envelope)
        state.save(chain.position)
        try:
            outcome = client.append(sealed.envelope)
        except ProvaultError as e:
            raise AdminEventFailed(
                f"could not reach the ledger: {e.message}",
                hint=f"the signed event is kept in {pending} and is sent first by the next `provault keys` "
                f"command; delete that file to cancel it",
            ) from None
        pending.unlink()
    if outcome.status == "rejected":
        raise AdminEventFailed(f"the ledger refused the event [{outcome.reason}]: {outcome.message}")
    return sealed.event_id, outcome


def register_key(
    settings: Settings, reg: KeyRegistration, *, target: str, admin_key: str | os.PathLike[str] | None = None
) -> tuple[str, AppendOutcome]:
    return send_admin_event(
        settings, KEY_REGISTERED, registration_prov(reg), reg.to_data(), target=target, admin_key=admin_key
    )


def ensure_registered(
    settings: Settings,
    reg: KeyRegistration,
    *,
    dsn: str,
    target: str,
    admin_key: str | os.PathLike[str] | None = None,
) -> bool:
    """Register ``reg`` unless the ledger at ``dsn`` already holds its key; whether it was registered now.

    A second registration of the same key would be refused (and recorded as a rejection), so the key
    registry is read first.
    """
    with connect(dsn, autocommit=True) as conn:
        if load_registry(conn).get(reg.keyid) is not None:
            return False
    register_key(settings, reg, target=target, admin_key=admin_key)
    return True


def _resend_outbox(client: LedgerClient, outbox: Path) -> None:
    for path in sorted(outbox.glob("*.json")):
        outcome = client.append(path.read_bytes())
        if outcome.status == "rejected":
            raise AdminEventFailed(
                f"a pending admin event {path.name} was refused [{outcome.reason}]: {outcome.message}",
                hint=f"inspect it, then remove {path} to continue",
            )
        os.unlink(path)
