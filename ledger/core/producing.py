"""Making signed events: the producer side of the contract, pure.

:class:`ProducerChain` holds a producer's position (seq, prev) and turns
(kind, prov, data) into the exact envelope bytes to send, advancing the chain
with the exact payload bytes it signed.  Persisting the position between
processes is the caller's business (the agents runtime keeps it on disk).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .envelope import PAYLOAD_TYPE, encode_envelope, sign_envelope
from .events import Event, Producer, encode_event
from .ids import new_event_id
from .keys import Signer
from .vocab import PREFIXES


@dataclass(frozen=True, slots=True, kw_only=True)
class Sealed:
    """One signed event, ready to send."""

    event: Event
    payload: bytes
    envelope: bytes

    @property
    def event_id(self) -> str:
        return self.event.id


def with_prefixes(prov: Mapping[str, Any]) -> dict[str, Any]:
    """``prov`` with provault's fixed prefixes declared (existing ones kept)."""
    doc = dict(prov)
    doc["prefix"] = {**PREFIXES, **dict(prov.get("prefix", {}))}
    return doc


def seal(event: Event, signers: Sequence[Signer]) -> Sealed:
    payload = encode_event(event)
    env = sign_envelope(PAYLOAD_TYPE, payload, signers)
    return Sealed(event=event, payload=payload, envelope=encode_envelope(env))


class ProducerChain:
    """A producer's hash chain: each sealed event names its predecessor."""

    def __init__(self, producer_id: str, signer: Signer, *, position: Producer | None = None) -> None:
        self.signer = signer
        self.position = position or Producer.first(producer_id)

    @property
    def producer_id(self) -> str:
        return self.position.id

    def emit(
        self,
        kind: str,
        prov: Mapping[str, Any],
        *,
        data: Mapping[str, Any] | None = None,
        time: datetime | None = None,
        event_id: str | None = None,
    ) -> Sealed:
        event = Event(
            id=event_id or new_event_id(),
            time=time or datetime.now(UTC),
            kind=kind,
            producer=self.position,
            prov=with_prefixes(prov),
            data=data,
        )
        sealed = seal(event, [self.signer])
        self.position = self.position.next(sealed.payload)
        return sealed
