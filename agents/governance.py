"""Approvals and quarantines: the ``model.approved`` and ``quarantine.placed`` events (docs/supply-chain.md).

Pure builders, like the ``*_event`` functions of :mod:`agents.assets`: each checks its inputs, builds the
PROV document fixed in :mod:`ledger.core.vocab` and returns a :class:`Statement` (a
:class:`~agents.assets.Prepared` that also carries the event's ``data``) without emitting it::

    approval = approval_event("sha256:…", comment="reviewed the bias audit")
    agent.emit(approval.kind, approval.prov, data=approval.data)

An approval counts for a gate only when the key that signs it was registered with the policy's role
(``provault keys register --roles``): the approver named in the document is a claim, the signature is not.
A quarantine is an ordinary signed statement, not a revocation: it changes nothing the ledger accepts, and
the gate refuses what it reaches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.ids import is_content_id, new_event_id
from ledger.core.vocab import (
    APPROVER_ROLE,
    KEY_TARGET_PREFIX,
    MODEL_APPROVED,
    QUARANTINE_PLACED,
    approval_activity_id,
    git_id,
    key_node_id,
    quarantine_activity_id,
)

from . import capture
from ._prov import ProvDoc, add_person, now_text, qname
from .assets import AGENT_ID_PREFIXES, Prepared

MAX_TEXT = 4096
"""Longest reason or comment, in characters."""
GIT_PREFIX = "provault:git/"
_COMMIT = re.compile(r"[0-9a-fA-F]{7,40}")
_KEYID = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement(Prepared):
    """A prepared event with its ``data``; ``id`` is the activity (``provault:approval/…``, ``provault:quarantine/…``)."""

    data: dict[str, Any]


def _text(value: Any, what: str, *, required: bool) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgument(expected_found(what, "a non-empty text", repr(value)[:80]))
    if len(value) > MAX_TEXT:
        raise InvalidArgument(expected_found(what, f"at most {MAX_TEXT} characters", f"{len(value)} characters"))
    return value.strip()


def _who(doc: ProvDoc, who: str | None, what: str) -> str:
    if who is not None and (not isinstance(who, str) or not who.strip()):
        raise InvalidArgument(expected_found(what, "an e-mail address or a provault agent id", repr(who)[:80]))
    if who is not None and who.startswith(AGENT_ID_PREFIXES):
        return doc.element("agent", who)
    return add_person(doc, capture.author(who))


def _model(model_id: Any) -> str:
    if not isinstance(model_id, str) or not is_content_id(model_id):
        raise InvalidArgument(
            expected_found("model", "the model's content id 'sha256:<64 hex digits>'", repr(model_id)[:80]),
            hint="name the model by its digest (`provault trace LABEL` shows it)",
        )
    return model_id


def approval_event(model_id: str, *, approver: str | None = None, comment: str | None = None) -> Statement:
    """The ``model.approved`` event: ``approver`` (default: who runs this, as agents capture it) approves the model."""
    model = _model(model_id)
    note = _text(comment, "comment", required=False)
    act = approval_activity_id(new_event_id())
    doc = ProvDoc()
    doc.element(
        "activity",
        act,
        {"prov:type": qname("provault:Approval"), "prov:startTime": now_text(), "provault:comment": note},
    )
    doc.element("entity", model, {"prov:type": qname("provault:Model")})
    doc.relation("used", activity=act, entity=model)
    doc.relation("wasAssociatedWith", activity=act, agent=_who(doc, approver, "approver"), role=APPROVER_ROLE)
    return Statement(kind=MODEL_APPROVED, id=act, prov=doc.build(), data={"model": model})


def quarantine_target(target: Any) -> tuple[str, str, str]:
    """(target as recorded, its type, the entity it invalidates) for a dataset, a commit or a key.

    A dataset is its content id ``sha256:<hex>``; a commit ``provault:git/<sha>`` or a bare commit of 7 to 40
    hex digits (recorded as ``provault:git/<sha>``, lowercase); a key ``key:<64 hex keyid>``, whose entity is
    ``provault:key/<keyid>``.
    """
    if not isinstance(target, str) or not target.strip():
        raise InvalidArgument(expected_found("target", "a dataset, a commit or a key", repr(target)[:80]))
    text = target.strip()
    if text.startswith(KEY_TARGET_PREFIX):
        keyid = text[len(KEY_TARGET_PREFIX) :]
        if not _KEYID.fullmatch(keyid):
            raise InvalidArgument(
                expected_found("target", f"'{KEY_TARGET_PREFIX}<64 lowercase hex digits>' (a keyid)", repr(text)[:80]),
                hint="`provault keys list` shows the keyids",
            )
        return text, "key", key_node_id(keyid)
    if text.startswith("sha256:"):
        if not is_content_id(text):
            raise InvalidArgument(
                expected_found("target", "a dataset's content id 'sha256:<64 lowercase hex digits>'", repr(text)[:80])
            )
        return text, "dataset", text
    commit = text[len(GIT_PREFIX) :] if text.startswith(GIT_PREFIX) else text
    if _COMMIT.fullmatch(commit):
        node = git_id(commit.lower())
        return node, "commit", node
    raise InvalidArgument(
        expected_found(
            "target",
            "a dataset 'sha256:<hex>', a commit 'provault:git/<sha>' or 7 to 40 hex digits, or a key 'key:<keyid>'",
            repr(text)[:80],
        )
    )


def quarantine_event(target: str, *, reason: str, who: str | None = None) -> Statement:
    """The ``quarantine.placed`` event: ``who`` (default: who runs this) takes ``target`` out of use."""
    recorded, kind, entity = quarantine_target(target)
    why = _text(reason, "reason", required=True)
    act = quarantine_activity_id(new_event_id())
    doc = ProvDoc()
    doc.element(
        "activity",
        act,
        {
            "prov:type": qname("provault:Quarantine"),
            "prov:startTime": now_text(),
            "provault:reason": why,
            "provault:target": recorded,
        },
    )
    doc.element("entity", entity)
    doc.relation("wasInvalidatedBy", entity=entity, activity=act)
    doc.relation("wasAssociatedWith", activity=act, agent=_who(doc, who, "who"))
    return Statement(
        kind=QUARANTINE_PLACED,
        id=act,
        prov=doc.build(),
        data={"target": recorded, "target_type": kind, "reason": why},
    )


__all__ = ["MAX_TEXT", "Statement", "approval_event", "quarantine_event", "quarantine_target"]
