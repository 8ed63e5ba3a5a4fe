"""The gate's stories: the report tests' story in a real ledger, then approvals, quarantines and revocations.

``approved(ledger, story)`` appends what a model needs to pass every rule of :data:`POLICY`: the run's
parameters and environment, and approvals by two people whose keys are registered with the role ml-lead.
The other helpers add what makes one rule fail.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agents.governance import approval_event, quarantine_event
from ledger.config import Settings
from ledger.core.envelope import parse_envelope
from ledger.core.events import parse_event
from ledger.core.keyring import KEY_REGISTERED, KeyRegistration
from ledger.core.keys import Ed25519Signer, save_private_key
from ledger.core.producing import ProducerChain, Sealed
from ledger.store import entries
from query.supply import signer as attestor
from tests.ledgerkit import Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story, at

ENVIRONMENT = "sha256:" + "e1" * 32
POLICY = """\
version = 1

[rules.provenance]
require = ["data", "code", "environment", "params", "author"]
description = "complete provenance"

[rules.signers]

[rules.approvals]
count = 2
role = "ml-lead"

[rules.quarantine]

[[rules.metric]]
name = "f1"
min = 0.9
"""
RULES = ["provenance", "signers", "approvals", "quarantine", "metric:f1"]


@dataclass
class People:
    """Approvers and a security officer, each a producer with a key registered with an identity and roles."""

    chains: dict[str, ProducerChain] = field(default_factory=dict)

    def __getitem__(self, name: str) -> ProducerChain:
        return self.chains[name]


def registration(ledger: Ledger, name: str, roles: str | None, kinds: tuple[str, ...]) -> tuple[ProducerChain, Sealed]:
    key = Ed25519Signer.generate()
    identity = {"type": "person", "name": name, **({"roles": roles} if roles else {})}
    reg = KeyRegistration(
        keyid=key.keyid,
        public_key=key.public_key,
        role="producer",
        identity=identity,
        kinds=kinds,
        producers=(name,),
    )
    sealed = ledger.admin_chain.emit(KEY_REGISTERED, {"agent": {"provault:admin": {}}}, data=reg.to_data())
    return ProducerChain(name, key), sealed


def register_people(ledger: Ledger, **roles: str | None) -> People:
    """``carol="ml-lead"``, ``eve=None``: one key per person (``name@example.com``), appended."""
    people, sealed = People(), []
    for name, role in roles.items():
        kinds = ("quarantine.*",) if name == "sec" else ("model.approved",)
        chain, reg = registration(ledger, f"{name}@example.com", role, kinds)
        people.chains[name] = chain
        sealed.append(reg)
    append(ledger, *sealed)
    return people


def append(ledger: Ledger, *events: Sealed) -> list[int]:
    plan = ledger.append(*events)
    assert len(plan.accepted) == len(events), ledger.rejections()
    return [a.seq for a in plan.accepted]


def environment(story: Story, *, with_environment: bool = True) -> Sealed:
    """The run's parameters and (unless not) its environment, stated by the trainer."""
    i = story.ids
    prov: dict = {"activity": {i.run: {"provault:params": '{"epochs":3,"lr":0.01}'}}}
    if with_environment:
        prov["entity"] = {ENVIRONMENT: {"prov:type": "provault:Environment", "prov:label": "python 3.12, torch 2.4"}}
        prov["used"] = {"_:u1": {"prov:activity": i.run, "prov:entity": ENVIRONMENT}}
    return story.trainer.emit("run.environment", prov, time=at(3))


def approve(chain: ProducerChain, model: str, *, time: datetime | None = None) -> Sealed:
    st = approval_event(model, approver=chain.producer_id, comment="reviewed")
    return chain.emit(st.kind, st.prov, data=st.data, time=time)


def quarantine(chain: ProducerChain, target: str, reason: str = "poisoned") -> Sealed:
    st = quarantine_event(target, reason=reason, who=chain.producer_id)
    return chain.emit(st.kind, st.prov, data=st.data)


def approved(
    ledger: Ledger, story: Story, *, with_environment: bool = True, approvers: tuple[str, ...] = ("carol", "dave")
) -> People:
    """The story, the run's parameters and environment (unless not), approvals by ``approvers``; checkpointed and
    projected.

    People: carol and dave (ml-lead), eve (no role), frank (security only), sec (may quarantine)."""
    people = register_people(ledger, carol="ml-lead", dave="ml-lead,security", eve=None, frank="security", sec=None)
    append(ledger, environment(story, with_environment=with_environment))
    append(ledger, *(approve(people[a], story.ids.model) for a in approvers))
    sign_and_project(ledger)
    return people


def register_attestor(ledger: Ledger, settings: Settings) -> Ed25519Signer:
    """The attestation key at ``supply.key_file``, created and registered by the ledger's admin."""
    key = Ed25519Signer.generate()
    save_private_key(key, Path(settings.supply.key_file or ""))
    reg = attestor.registration(settings, key)
    append(ledger, ledger.admin_chain.emit(KEY_REGISTERED, {"agent": {"provault:admin": {}}}, data=reg.to_data()))
    return key


def with_attestor(settings: Settings, tmp: Path) -> Settings:
    """``settings`` with an attestation key file under ``tmp`` (not created) and a fixed producer id."""
    supply = dataclasses.replace(settings.supply, key_file=str(tmp / "attestor.key"), producer_id="attestor/test")
    return dataclasses.replace(settings, supply=supply, agent=dataclasses.replace(settings.agent, publish_timeout_s=20))


def logged(ledger: Ledger, kind: str) -> list[tuple[int, str, dict]]:
    """(seq, keyid, data) of every logged entry of ``kind``, read from the stored envelopes."""
    assert ledger.conn is not None
    out = []
    for e in entries.iter_entries(ledger.conn):
        event = parse_event(parse_envelope(e.envelope).payload)
        if event.kind == kind:
            out.append((e.seq, e.keyid, json.loads(json.dumps(event.data, default=_thaw))))
    return out


def _thaw(value: object) -> object:
    return dict(value) if hasattr(value, "items") else list(value)  # type: ignore[call-overload]
