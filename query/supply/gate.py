"""The deployment gate: a policy's rules checked against a model's verified evidence (docs/supply-chain.md).

:func:`evaluate` is pure: it reads only the :class:`~query.supply.evidence.ModelEvidence` (the model's
lifecycle as a verified audit bundle, its statements and its key history) and returns a :class:`Decision`,
each rule's verdict with the seqs of the entries it rests on.  :func:`decide` parses the policy, gathers the
evidence from the ledger, evaluates, and records the decision as ``gate.decided`` signed by the attestation
key (:mod:`query.supply.signer`) unless told not to.

What "behind the model" means: the entries that state a relation between two nodes upstream of the model
(its making: data, code, environment, runs, authors, the model's own registration), or that state only
attributes of upstream nodes.  Approvals, deployments, predictions, quarantines and gate decisions are about
the model, not behind it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg

from ledger.config import Settings
from ledger.core.errors import InvalidArgument
from ledger.core.events import format_time
from ledger.core.ids import new_event_id
from ledger.core.keyring import KeyRecord, identity_roles
from ledger.core.keys import Signer
from ledger.core.vocab import APPROVER_ROLE, GATE_DECIDED, MODEL_APPROVED, gate_activity_id, service_id
from query.report.facts import Facts, role, value

from . import signer as attestor
from .evidence import DEFAULT_MAX_DEPTH, DEFAULT_MAX_NODES, DEFAULT_TIMEOUT_S, ModelEvidence, gather, grants_explicitly
from .policy import (
    ApprovalsRule,
    MetricRule,
    Policy,
    ProvenanceRule,
    QuarantineRule,
    SignersRule,
    parse_policy,
)
from .signer import NotRecorded, RecordedEvent

DATASET, CODE, ENVIRONMENT, HOST = "provault:Dataset", "provault:Code", "provault:Environment", "provault:Host"
GIT_PREFIX, HOST_PREFIX = "provault:git/", "provault:host/"
AUTHOR_RELATIONS = ("wasAssociatedWith", "wasAttributedTo", "actedOnBehalfOf")
MAX_RECORDED_SEQS = 2000
"""Evidence seqs a recorded ``gate.decided`` keeps per rule (the rest are counted): an event stays small."""
_LISTED = 5
"""Items a reason names before it says how many more."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RuleVerdict:
    rule: str
    """``provenance``, ``signers``, ``approvals``, ``quarantine`` or ``metric:<name>``."""
    passed: bool
    reason: str
    evidence_seqs: tuple[int, ...]
    description: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "passed": self.passed,
            "reason": self.reason,
            "evidence_seqs": list(self.evidence_seqs),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Decision:
    allowed: bool
    rules: tuple[RuleVerdict, ...]
    """In the policy's order."""
    model: str
    label: str | None
    policy_digest: str
    as_of_seq: int
    checkpoint_size: int
    bundle_digest: str

    @property
    def verdict(self) -> str:
        return "allow" if self.allowed else "deny"

    def failed(self) -> tuple[RuleVerdict, ...]:
        return tuple(r for r in self.rules if not r.passed)

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "label": self.label,
            "verdict": self.verdict,
            "allowed": self.allowed,
            "policy_digest": self.policy_digest,
            "as_of_seq": self.as_of_seq,
            "checkpoint_size": self.checkpoint_size,
            "bundle_digest": self.bundle_digest,
            "rules": [r.to_json() for r in self.rules],
        }


# --- reading the evidence ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _View:
    """The evidence indexed for the rules."""

    ev: ModelEvidence
    behind: tuple[int, ...]

    @property
    def f(self) -> Facts:
        return self.ev.facts

    @property
    def attrs(self) -> list[tuple[int, str, str, Any]]:
        """The attribute statements of the entries behind the model only: what an approval, a deployment or
        any other entry about the model says of its signature, metrics or parameters does not count."""
        behind = set(self.behind)
        return [a for a in self.f.attrs if a[0] in behind]

    def name(self, node: str) -> str:
        """A node by its label when it has one, else by its id."""
        return self.f.labels.get(node) or node

    def kind(self, node: str) -> str | None:
        return self.f.kinds.get(node)

    def time(self, seq: int) -> datetime:
        return self.f.entries[seq].event.time

    def keyid(self, seq: int) -> str:
        return self.f.entries[seq].keyid


def behind_model(ev: ModelEvidence) -> tuple[int, ...]:
    """The seqs of the entries behind the model (module docstring), in log order."""
    return ev.behind


def _who(record: KeyRecord | None, keyid: str) -> str:
    if record is None:
        return f"key {keyid[:16]} (not in the key history)"
    return f"key {keyid[:16]} of {record.identity.get('name', '?')}"


def _revoked_by(record: KeyRecord | None, when: datetime) -> bool:
    """Revoked with an ``effective_from`` at or before ``when``."""
    return record is not None and record.revoked_from is not None and record.revoked_from <= when


def _when(t: datetime) -> str:
    """A time as RFC 3339 UTC, without the fraction when it has none."""
    return format_time(t).replace(".000000Z", "Z")


def _listed(items: list[str], what: str = "more", sep: str = ", ") -> str:
    head = sep.join(items[:_LISTED])
    return head + (f" and {len(items) - _LISTED} {what}" if len(items) > _LISTED else "")


def _n(count: int, noun: str, plural: str | None = None) -> str:
    return f"{count} {noun if count == 1 else plural or noun + 's'}"


def _seqs(*groups: Iterable[int]) -> tuple[int, ...]:
    return tuple(sorted({s for g in groups for s in g}))


# --- the rules ----------------------------------------------------------------------------------------


def _edges(v: _View, relations: Iterable[str], keep) -> list[tuple[int, str, str, str, Mapping[str, Any]]]:
    rels = set(relations)
    up = v.ev.upstream
    return [e for e in v.f.edges if e[1] in rels and e[2] in up and e[3] in up and keep(e)]


def _part(v: _View, part: str) -> tuple[list[str], tuple[int, ...]]:
    """What the evidence holds of one provenance part: (what, seqs); empty when absent."""
    up, model = v.ev.upstream, v.ev.model
    if part in ("data", "code", "environment"):
        if part == "data":
            hits = _edges(v, ("used", "wasDerivedFrom"), lambda e: v.kind(e[3]) == DATASET)
        elif part == "code":
            hits = _edges(v, ("used", "wasDerivedFrom"), lambda e: v.kind(e[3]) == CODE or e[3].startswith(GIT_PREFIX))
        else:
            hits = _edges(v, ("used", "wasDerivedFrom"), lambda e: v.kind(e[3]) == ENVIRONMENT)
        return sorted({e[3] for e in hits}), _seqs(e[0] for e in hits)
    if part == "params":
        hits = [(s, n) for s, n, a, _ in v.attrs if a == "provault:params" and n in up]
        return sorted({n for _, n in hits}), _seqs(s for s, _ in hits)
    if part == "author":

        def keep(e: tuple[int, str, str, str, Mapping[str, Any]]) -> bool:
            return role(e[4]) != APPROVER_ROLE and not e[3].startswith(HOST_PREFIX) and v.kind(e[3]) != HOST

        hits = _edges(v, AUTHOR_RELATIONS, keep)
        return sorted({e[3] for e in hits}), _seqs(e[0] for e in hits)
    if part == "signature":
        hits = [(s, x) for s, n, a, x in v.attrs if n == model and a == "provault:signatureVerified"]
        good = [s for s, x in hits if x is True or value(x) == "true"]
        return ([model] if good and hits[-1][0] in good else []), _seqs(good)
    raise AssertionError(part)


def _provenance(v: _View, rule: ProvenanceRule) -> RuleVerdict:
    found, missing, seqs = [], [], []
    for part in rule.require:
        what, at = _part(v, part)
        if what:
            found.append(f"{part} ({_listed([v.name(w) for w in what])})")
            seqs.append(at)
        else:
            missing.append(part)
    if missing:
        reason = f"missing upstream of the model: {', '.join(missing)}" + (
            f"; present: {', '.join(p for p in rule.require if p not in missing)}" if found else ""
        )
        return RuleVerdict(rule=rule.name, passed=False, reason=reason, evidence_seqs=_seqs(*seqs))
    return RuleVerdict(rule=rule.name, passed=True, reason="present: " + "; ".join(found), evidence_seqs=_seqs(*seqs))


def _key_quarantines(v: _View) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for q in v.ev.quarantines:
        if q.target_key is not None:
            out.setdefault(q.target_key, []).append(q)
    return out


def _signers(v: _View, rule: SignersRule) -> RuleVerdict:
    keys, quarantined = v.ev.keys, _key_quarantines(v)
    if not v.behind:
        return RuleVerdict(
            rule=rule.name, passed=False, reason="no entry states how the model was made", evidence_seqs=()
        )
    bad: list[str] = []
    seqs: list[int] = []
    for seq in v.behind:
        kid, when = v.keyid(seq), v.time(seq)
        record = keys.get(kid)
        earlier = [q for q in quarantined.get(kid, ()) if q.time <= when]
        if record is None:
            bad.append(f"seq {seq} is signed by {_who(record, kid)}")
            seqs.append(seq)
        elif _revoked_by(record, when):
            bad.append(
                f"seq {seq} ({_when(when)}) is signed by {_who(record, kid)}, revoked effective from "
                f"{_when(record.revoked_from)} (seq {record.revoked_seq})"
            )
            seqs += [seq, record.revoked_seq or seq]
        elif earlier:
            q = earlier[0]
            bad.append(
                f"seq {seq} ({_when(when)}) is signed by {_who(record, kid)}, quarantined at "
                f"{_when(q.time)} (seq {q.seq}: {q.reason})"
            )
            seqs += [seq, q.seq]
    if bad:
        return RuleVerdict(
            rule=rule.name, passed=False, reason=_listed(bad, "more entries", "; "), evidence_seqs=_seqs(seqs)
        )
    signers = sorted({_who(keys.get(v.keyid(s)), v.keyid(s)) for s in v.behind})
    return RuleVerdict(
        rule=rule.name,
        passed=True,
        reason=f"{_n(len(v.behind), 'entry', 'entries')} behind the model, each signed by a registered key valid at its time: "
        + _listed(signers, "more keys"),
        evidence_seqs=v.behind,
    )


def _quarantine(v: _View, rule: QuarantineRule) -> RuleVerdict:
    up, keys, quarantined = v.ev.upstream, v.ev.keys, _key_quarantines(v)
    bad, seqs = [], []
    quarantine_seqs = {q.seq for q in v.ev.quarantines}
    for q in v.ev.quarantines:
        if q.target_key is None and q.target in up:
            bad.append(f"{q.target_type} {v.name(q.target)} is quarantined (seq {q.seq}: {q.reason})")
            seqs += [q.seq, *v.ev.seqs_about(q.target)]
    for seq, rel, src, dst, _ in v.f.edges:
        if rel == "wasInvalidatedBy" and src in up and seq not in quarantine_seqs:
            kind = v.kind(dst)
            bad.append(f"{v.name(src)} was invalidated by {dst}{f' ({kind})' if kind else ''} (seq {seq})")
            seqs.append(seq)
    signed: dict[str, list[int]] = {}
    for seq in v.behind:
        signed.setdefault(v.keyid(seq), []).append(seq)
    for kid, at in sorted(signed.items()):
        record = keys.get(kid)
        if record is not None and record.revoked:
            bad.append(
                f"{_who(record, kid)} signed seq {_listed([str(s) for s in at])} and is revoked (seq "
                f"{record.revoked_seq}, effective from {_when(record.revoked_from)}: {record.revoked_reason})"
            )
            seqs += [*at, record.revoked_seq]
        for q in quarantined.get(kid, ()):
            bad.append(
                f"{_who(record, kid)} signed seq {_listed([str(s) for s in at])} and is quarantined (seq {q.seq}: {q.reason})"
            )
            seqs += [*at, q.seq]
    if bad:
        return RuleVerdict(
            rule=rule.name,
            passed=False,
            reason=_listed(bad, "more", "; "),
            evidence_seqs=_seqs(s for s in seqs if s is not None),
        )
    return RuleVerdict(
        rule=rule.name,
        passed=True,
        reason=f"none of the {_n(len(up), 'node')} upstream of the model is quarantined or invalidated, and none of "
        f"the {_n(len(signed), 'key')} that signed them is revoked or quarantined",
        evidence_seqs=v.behind,
    )


def _approvals(v: _View, rule: ApprovalsRule) -> RuleVerdict:
    counted: dict[tuple[str, str], int] = {}
    refused: list[str] = []
    refused_seqs: list[int] = []
    quarantined = _key_quarantines(v)
    for seq, entry in sorted(v.f.entries.items()):
        if entry.event.kind != MODEL_APPROVED:
            continue
        data = entry.event.data if isinstance(entry.event.data, Mapping) else {}
        if data.get("model") != v.ev.model:
            continue  # an approval of another model, reached through this one
        record = v.ev.keys.get(entry.keyid)
        who = _who(record, entry.keyid)
        if record is None:
            refused.append(f"seq {seq} by {who}")
        elif rule.role not in identity_roles(record.identity):
            roles = ", ".join(identity_roles(record.identity)) or "none"
            refused.append(f"seq {seq} by {who}, whose roles are {roles}, not {rule.role}")
        elif record.revoked:
            # Revoked at all: the approval's own time is the signer's claim, so a thief could backdate it.
            when = f", effective from {_when(record.revoked_from)}" if record.revoked_from else ""
            refused.append(f"seq {seq} by {who}, whose key was revoked at seq {record.revoked_seq}{when}")
        elif entry.keyid in quarantined:
            q = quarantined[entry.keyid][0]
            refused.append(f"seq {seq} by {who}, whose key is quarantined (seq {q.seq}: {q.reason})")
        else:
            identity = (record.identity.get("type", "?"), record.identity.get("name", "?"))
            counted.setdefault(identity, seq)
            continue
        refused_seqs.append(seq)
    names = [f"{name} (seq {seq})" for (_, name), seq in counted.items()]
    head = (
        f"{len(counted)} distinct approver{'s' if len(counted) != 1 else ''} with role {rule.role}, {rule.count} needed"
    )
    reason = head + (f": {_listed(names)}" if names else "")
    if refused:
        reason += f"; not counted: {_listed(refused, sep='; ')}"
    passed = len(counted) >= rule.count
    return RuleVerdict(
        rule=rule.name,
        passed=passed,
        reason=reason,
        evidence_seqs=_seqs(counted.values(), [] if passed else refused_seqs),
    )


def _metric(v: _View, rule: MetricRule) -> RuleVerdict:
    model = v.ev.model
    runs = sorted({dst for _, rel, src, dst, _ in v.f.edges if rel == "wasGeneratedBy" and src == model})
    if not runs:
        return RuleVerdict(rule=rule.name, passed=False, reason="no run generated the model", evidence_seqs=())
    found, bad, seqs, read = [], [], [], []
    for run in runs:
        stated = [(s, x) for s, n, a, x in v.attrs if n == run and a == "provault:metrics"]
        if not stated:
            continue
        seq, text = stated[-1]
        read.append(seq)
        try:
            metrics = json.loads(value(text))
        except (ValueError, RecursionError):  # RecursionError: nested beyond the parser
            bad.append(f"{v.name(run)} recorded metrics that are not JSON (seq {seq})")
            seqs.append(seq)
            continue
        if not isinstance(metrics, Mapping) or rule.metric not in metrics:
            continue
        x = metrics[rule.metric]
        seqs.append(seq)
        if isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x):
            bad.append(f"{v.name(run)} recorded {rule.metric} = {json.dumps(x)[:40]}, not a number (seq {seq})")
        elif (rule.min is not None and x < rule.min) or (rule.max is not None and x > rule.max):
            bad.append(f"{rule.metric} = {x:g} from {v.name(run)} (seq {seq}) is outside {rule.bounds()}")
        else:
            found.append(f"{rule.metric} = {x:g} from {v.name(run)} (seq {seq})")
    if bad:
        return RuleVerdict(rule=rule.name, passed=False, reason=_listed(bad, sep="; "), evidence_seqs=_seqs(seqs))
    if not found:
        return RuleVerdict(
            rule=rule.name,
            passed=False,
            reason=f"no run that generated the model recorded {rule.metric} ({_listed([v.name(r) for r in runs])})",
            evidence_seqs=_seqs(read),
        )
    return RuleVerdict(
        rule=rule.name, passed=True, reason=f"{_listed(found)}, within {rule.bounds()}", evidence_seqs=_seqs(seqs)
    )


_RULES = {
    ProvenanceRule: _provenance,
    SignersRule: _signers,
    QuarantineRule: _quarantine,
    ApprovalsRule: _approvals,
    MetricRule: _metric,
}


def evaluate(policy: Policy, evidence: ModelEvidence) -> Decision:
    """Each rule of ``policy`` checked against the verified ``evidence`` (pure)."""
    view = _View(evidence, behind_model(evidence))
    verdicts = []
    for rule in policy.rules:
        verdict: RuleVerdict = _RULES[type(rule)](view, rule)  # type: ignore[operator]
        verdicts.append(dataclasses.replace(verdict, description=rule.description))
    return Decision(
        allowed=all(r.passed for r in verdicts),
        rules=tuple(verdicts),
        model=evidence.model,
        label=evidence.label(),
        policy_digest=policy.digest,
        as_of_seq=evidence.as_of_seq,
        checkpoint_size=evidence.bundle.checkpoint.tree_size,
        bundle_digest=evidence.bundle_digest,
    )


# --- recording ----------------------------------------------------------------------------------------


def _json_text(doc: Any) -> str:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def gate_event(decision: Decision, producer_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``gate.decided`` event's PROV document and data (docs/supply-chain.md, "New event kinds")."""
    act = gate_activity_id(new_event_id())
    service = service_id(producer_id)
    rules = []
    for r in decision.rules:
        doc = r.to_json()
        if len(r.evidence_seqs) > MAX_RECORDED_SEQS:
            doc["evidence_seqs"] = list(r.evidence_seqs[:MAX_RECORDED_SEQS])
            doc["evidence_seqs_total"] = len(r.evidence_seqs)
        rules.append(doc)
    prov = {
        "activity": {
            act: {
                "prov:type": {"$": "provault:GateDecision", "type": "prov:QUALIFIED_NAME"},
                "prov:startTime": format_time(datetime.now(UTC)),
                "provault:verdict": decision.verdict,
                "provault:policy": decision.policy_digest,
                "provault:rules": _json_text([{k: d[k] for k in ("rule", "passed", "reason")} for d in rules]),
            }
        },
        "entity": {decision.model: {}},
        "agent": {service: {"prov:type": {"$": "prov:SoftwareAgent", "type": "prov:QUALIFIED_NAME"}}},
        "used": {"_:u1": {"prov:activity": act, "prov:entity": decision.model}},
        "wasAssociatedWith": {"_:w1": {"prov:activity": act, "prov:agent": service}},
    }
    data = {
        "model": decision.model,
        "verdict": decision.verdict,
        "policy_digest": decision.policy_digest,
        "as_of_seq": decision.as_of_seq,
        "checkpoint_size": decision.checkpoint_size,
        "rules": rules,
    }
    return prov, data


def record_decision(settings: Settings, signer: Signer, decision: Decision) -> RecordedEvent:
    """Sign ``gate.decided`` with the attestation key, spool it and wait up to ``agent.publish_timeout_s``."""
    prov, data = gate_event(decision, attestor.producer_id(settings))
    return attestor.record(settings, signer, GATE_DECIDED, prov, data, what="the decision")


def decide(
    conn: psycopg.Connection,
    settings: Settings,
    model: str,
    policy_text: str | bytes,
    *,
    as_of_seq: int | None = None,
    record: bool = True,
    signer: Signer | None = None,
    source: str = "policy.toml",
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> tuple[Decision, RecordedEvent | None]:
    """Parse the policy, gather the model's verified evidence, evaluate, and record unless ``record`` is false.

    The policy is parsed first (``PolicyError``) and the attestation key loaded next (``KeyMaterialError``
    naming how to register it), both before the ledger is read.  The event id returned is a
    :class:`RecordedEvent`: a ``str`` that also says whether it was delivered or waits in the spool.
    """
    policy = parse_policy(policy_text, source=source)
    key = (signer or attestor.load_key(settings)) if record else None
    evidence = gate_evidence(
        conn, model, as_of_seq=as_of_seq, recorder=key, max_depth=max_depth, max_nodes=max_nodes, timeout_s=timeout_s
    )
    decision = evaluate(policy, evidence)
    if key is None:
        return decision, None
    return decision, record_decision(settings, key, decision)


def gate_evidence(
    conn: psycopg.Connection,
    model: str,
    *,
    as_of_seq: int | None,
    recorder: Signer | None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_nodes: int = DEFAULT_MAX_NODES,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> ModelEvidence:
    """The evidence a decision is made from.  A decision that is recorded (``recorder``, the attestation key) is
    made as of the latest checkpoint only, and only with a key the ledger registers for gate decisions: a
    signed "allow" as of a seq before a quarantine, or by a key whose decisions nobody may count, would mislead."""
    from .attest import NoAttestationKey, check_signer_registered  # noqa: PLC0415 - one check, with attest

    if recorder is None:
        return gather(conn, model, as_of_seq=as_of_seq, max_depth=max_depth, max_nodes=max_nodes, timeout_s=timeout_s)
    if as_of_seq is not None:
        raise InvalidArgument(
            "a decision is recorded only as of the latest checkpoint, not as of an earlier seq",
            hint="decide without recording (--no-record, or dry_run) to see how the gate stood at that seq",
        )
    check_signer_registered(conn, recorder.keyid)
    ev = gather(
        conn, model, max_depth=max_depth, max_nodes=max_nodes, timeout_s=timeout_s, extra_keys=(recorder.keyid,)
    )
    record = ev.keys.get(recorder.keyid)
    if record is None or record.revoked or not grants_explicitly(record, GATE_DECIDED):
        raise NoAttestationKey(
            f"the attestation key {recorder.keyid} is not registered as a service's producer key for gate.* "
            "(or it is revoked), so no one could count the decisions it signs",
            hint="register it with `provault keys register <attestor.key>.pub --role producer --identity "
            "service:<its producer id> --kinds 'attestation.*,gate.*'` (docs/supply-chain.md, 'The signer')",
        )
    return ev


__all__ = [
    "Decision",
    "NotRecorded",
    "RecordedEvent",
    "RuleVerdict",
    "behind_model",
    "decide",
    "evaluate",
    "gate_event",
    "record_decision",
]
