"""The evidence a compliance report embeds, its one canonical encoding, and its offline check (pure).

A report's HTML carries one ``<script type="application/json" id="provault-evidence">`` block: a JSON
object written by :func:`encode_evidence` (sorted keys, no spaces, ASCII only, and ``<``, ``>``, ``&``
as ``\\u003c`` ... so that it can never close the script element).  Its members:

* ``format``: ``provault.report.v1``; ``kind``: ``model`` or ``period``;
* ``subject``: what was asked (``{"query", "model"}`` or ``{"from", "to"}``) and ``limits`` used;
* ``bundle``: the canonical JSON text of a ``provault.v1.AuditBundle`` without its final newline
  (``jq -r .bundle REPORT`` writes the bundle file ``provault verify-bundle`` accepts), or null for a
  period in which nothing was logged;
* ``checkpoint_key``: the log's checkpoint verifier key (C2SP ``name+hash+key``);
* ``continuity``: signed checkpoints in tree-size order, each with the ledger's (unsigned) signing time,
  and an RFC 9162 consistency proof between each pair of neighbours; the last is the bundle's checkpoint;
* ``period`` (period reports): ``first_seq`` / ``end_seq``, the seqs the log grew by between the first
  and the last checkpoint of the period, every one of which must be in the bundle.

:func:`check_evidence` verifies all of it with the pure core and :func:`query.bundle_verify.verify_bundle`,
and returns what the tables are then computed from (:mod:`query.report.content`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.core import merkle
from ledger.core.checkpoint import Checkpoint, NoteVerifier, open_checkpoint, parse_vkey
from ledger.core.errors import (
    DecodeError,
    KeyMaterialError,
    ProvaultError,
    VerificationFailed,
    expected_found,
)
from provault.v1 import query_pb2
from query.bundle_verify import BundleReport, decode_bundle, verify_bundle

REPORT_FORMAT = "provault.report.v1"
KINDS = ("model", "period")
MAX_CHECKPOINTS = 64

# --- errors ----------------------------------------------------------------------------------

REPORT_STEPS = {
    0: "report format",
    1: "bundle",
    2: "retention continuity",
    3: "period completeness",
    4: "tables match the evidence",
}


class MalformedReport(DecodeError):
    """A report file whose evidence block is missing, unparseable or not in canonical form."""

    reason = "malformed_report"


class ReportAltered(VerificationFailed):
    """The report's human-readable content is not what its evidence states."""

    reason = "report_altered"


def fail(cls: type[ProvaultError], step: int, message: str, hint: str | None = None) -> ProvaultError:
    """An error located at a report step (``e.step``, ``e.step_name``), its text led by the step."""
    text = f"step {step} ({REPORT_STEPS[step]}): {message}"
    try:
        err = cls(text, hint=hint)
    except TypeError:  # an error class with another constructor: keep the family
        err = VerificationFailed(text, hint=hint)
    err.step, err.step_name, err.detail = step, REPORT_STEPS[step], message  # type: ignore[attr-defined]
    return err


# --- the evidence ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class StoredPoint:
    """One signed checkpoint of the continuity chain."""

    note: str
    signed_at: str
    """The ledger's clock when it signed (RFC 3339); not covered by the signature."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Consistency:
    old_size: int
    new_size: int
    hashes: tuple[bytes, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class Evidence:
    kind: str
    subject: dict[str, str]
    limits: dict[str, int]
    bundle: str | None
    checkpoint_key: str
    checkpoints: tuple[StoredPoint, ...]
    proofs: tuple[Consistency, ...]
    period: dict[str, int] | None = None

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "format": REPORT_FORMAT,
            "kind": self.kind,
            "subject": dict(self.subject),
            "limits": dict(self.limits),
            "bundle": self.bundle,
            "checkpoint_key": self.checkpoint_key,
            "continuity": {
                "checkpoints": [{"note": c.note, "signed_at": c.signed_at} for c in self.checkpoints],
                "proofs": [
                    {"old_size": p.old_size, "new_size": p.new_size, "hashes": [h.hex() for h in p.hashes]}
                    for p in self.proofs
                ],
            },
        }
        if self.period is not None:
            doc["period"] = dict(self.period)
        return doc


def encode_evidence(evidence: Evidence) -> str:
    """The one encoding of the evidence: safe inside an HTML ``<script>`` element."""
    text = json.dumps(evidence.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _member(doc: dict[str, Any], name: str, kind: type | tuple[type, ...], where: str = "evidence") -> Any:
    value = doc.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise fail(MalformedReport, 0, expected_found(f"{where}.{name}", _kind_name(kind), _describe(value)))
    return value


def _kind_name(kind: type | tuple[type, ...]) -> str:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    names = {str: "a string", int: "an integer", dict: "an object", list: "an array", type(None): "null"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _describe(value: Any) -> str:
    return "nothing" if value is None else f"{type(value).__name__} {str(value)[:60]!r}"


def decode_evidence(text: str) -> Evidence:
    """Parse the evidence block's text; refuse anything but the canonical encoding of a valid evidence."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise fail(MalformedReport, 0, f"the evidence block is not JSON: {str(e)[:200]}") from None
    if not isinstance(doc, dict):
        raise fail(MalformedReport, 0, expected_found("evidence", "a JSON object", type(doc).__name__))
    if doc.get("format") != REPORT_FORMAT:
        raise fail(MalformedReport, 0, expected_found("format", repr(REPORT_FORMAT), _describe(doc.get("format"))))
    evidence = _parse(doc)
    if encode_evidence(evidence) != text:
        raise fail(
            MalformedReport,
            0,
            "the evidence block is not in canonical form (it was edited or re-formatted)",
            hint="keep report files as `provault report` wrote them",
        )
    return evidence


def _parse(doc: dict[str, Any]) -> Evidence:
    kind = _member(doc, "kind", str)
    if kind not in KINDS:
        raise fail(MalformedReport, 0, expected_found("kind", " or ".join(KINDS), repr(kind[:40])))
    continuity = _member(doc, "continuity", dict)
    points = []
    for i, c in enumerate(_member(continuity, "checkpoints", list, "continuity")):
        if not isinstance(c, dict):
            raise fail(MalformedReport, 0, expected_found(f"continuity.checkpoints[{i}]", "an object", _describe(c)))
        where = f"continuity.checkpoints[{i}]"
        points.append(StoredPoint(note=_member(c, "note", str, where), signed_at=_member(c, "signed_at", str, where)))
    proofs = []
    for i, p in enumerate(_member(continuity, "proofs", list, "continuity")):
        if not isinstance(p, dict):
            raise fail(MalformedReport, 0, expected_found(f"continuity.proofs[{i}]", "an object", _describe(p)))
        where = f"continuity.proofs[{i}]"
        hashes = _member(p, "hashes", list, where)
        try:
            raw = tuple(bytes.fromhex(h) for h in hashes)
        except (TypeError, ValueError):
            raise fail(MalformedReport, 0, f"{where}.hashes: expected hex strings") from None
        proofs.append(
            Consistency(
                old_size=_member(p, "old_size", int, where), new_size=_member(p, "new_size", int, where), hashes=raw
            )
        )
    period = doc.get("period")
    if kind == "period":
        period = _member(doc, "period", dict)
        period = {
            "first_seq": _member(period, "first_seq", int, "period"),
            "end_seq": _member(period, "end_seq", int, "period"),
        }
    return Evidence(
        kind=kind,
        subject={str(k): str(v) for k, v in _member(doc, "subject", dict).items()},
        limits={str(k): v for k, v in _member(doc, "limits", dict).items() if isinstance(v, int)},
        bundle=_member(doc, "bundle", (str, type(None))),
        checkpoint_key=_member(doc, "checkpoint_key", str),
        checkpoints=tuple(points),
        proofs=tuple(proofs),
        period=period if kind == "period" else None,
    )


# --- checking ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Checked:
    """Evidence that verified: what the report's tables are computed from."""

    evidence: Evidence
    bundle: query_pb2.AuditBundle | None
    bundle_report: BundleReport | None
    checkpoints: tuple[Checkpoint, ...]
    key_source: str
    """``given`` (pinned with --key) or ``report`` (named by the report itself)."""


def check_evidence(
    evidence: Evidence, *, vkey: str | None = None, admin_keys: Sequence[bytes] | None = None
) -> Checked:
    """Step 1 (the bundle), step 2 (continuity) and step 3 (a period's completeness); raise at the first failure."""
    if evidence.kind == "model" and (evidence.bundle is None or not evidence.subject.get("model")):
        raise fail(MalformedReport, 0, "a model report needs its bundle and subject.model")
    verifier, source = _verifier(evidence, vkey)
    bundle, bundle_report = None, None
    if evidence.bundle is not None:
        try:
            bundle = decode_bundle((evidence.bundle + "\n").encode("ascii", errors="replace"))
            bundle_report = verify_bundle(bundle, vkey=verifier.vkey(), admin_keys=admin_keys)
        except KeyMaterialError as e:
            if getattr(e, "step", None) is None:
                raise  # the auditor's own keys, not the report
            raise _bundle_failure(e) from e
        except ProvaultError as e:  # a finding (VerificationFailed), a gap (CannotVerify) or a bad encoding
            raise _bundle_failure(e) from e
    if bundle is not None and evidence.kind == "model" and bundle.node_id != evidence.subject["model"]:
        wrong = expected_found(
            "subject.model", f"the bundle's subject {bundle.node_id}", evidence.subject["model"][:80]
        )
        raise fail(VerificationFailed, 1, wrong)
    cps = _check_continuity(evidence, verifier, bundle)
    if evidence.kind == "period":
        _check_period(evidence, bundle, cps)
    return Checked(evidence=evidence, bundle=bundle, bundle_report=bundle_report, checkpoints=cps, key_source=source)


def _verifier(evidence: Evidence, vkey: str | None) -> tuple[NoteVerifier, str]:
    if vkey is None:
        try:
            return parse_vkey(evidence.checkpoint_key), "report"
        except KeyMaterialError as e:
            raise fail(MalformedReport, 0, f"checkpoint_key: {e.message}") from None
    try:
        verifier = parse_vkey(vkey.strip())
    except KeyMaterialError as e:
        raise KeyMaterialError(f"the checkpoint key you gave: {e.message}", hint=e.hint) from None
    if evidence.checkpoint_key != verifier.vkey():
        raise fail(
            VerificationFailed,
            2,
            expected_found(
                "checkpoint key named by the report", f"the key you pinned, {verifier.vkey()}", evidence.checkpoint_key
            ),
            hint="the report was altered, or it comes from another log than the one whose key you pinned",
        )
    return verifier, "given"


def _bundle_failure(e: ProvaultError) -> ProvaultError:
    step = getattr(e, "step", None)
    where = f"step {step} ({e.step_name}), {e.place}: {e.detail}" if step is not None else e.message  # type: ignore[attr-defined]
    err = fail(
        type(e) if isinstance(e, VerificationFailed | DecodeError) else VerificationFailed,
        1,
        f"the embedded audit bundle fails at {where}",
        e.hint,
    )
    err.reason = e.reason  # type: ignore[misc]
    return err


def _check_continuity(
    evidence: Evidence, verifier: NoteVerifier, bundle: query_pb2.AuditBundle | None
) -> tuple[Checkpoint, ...]:
    points = evidence.checkpoints
    if not points:
        raise fail(MalformedReport, 0, "continuity.checkpoints is empty: a report needs at least one checkpoint")
    if len(points) > MAX_CHECKPOINTS:
        raise fail(
            MalformedReport, 0, expected_found("continuity.checkpoints", f"at most {MAX_CHECKPOINTS}", len(points))
        )
    cps = []
    for i, p in enumerate(points):
        try:
            cps.append(open_checkpoint(p.note, [verifier]))
        except ProvaultError as e:
            raise fail(VerificationFailed, 2, f"continuity.checkpoints[{i}]: {e.message}", e.hint) from None
        if not _rfc3339(p.signed_at):
            raise fail(
                MalformedReport,
                0,
                expected_found(f"continuity.checkpoints[{i}].signed_at", "an RFC 3339 time", repr(p.signed_at[:40])),
            )
    if len(evidence.proofs) != len(cps) - 1:
        raise fail(
            VerificationFailed,
            2,
            expected_found(
                "consistency proofs", f"one per pair of neighbouring checkpoints ({len(cps) - 1})", len(evidence.proofs)
            ),
        )
    for i, (old, new, proof) in enumerate(zip(cps, cps[1:], evidence.proofs, strict=False)):
        if (proof.old_size, proof.new_size) != (old.size, new.size):
            raise fail(
                VerificationFailed,
                2,
                expected_found(
                    f"continuity.proofs[{i}] sizes",
                    f"{old.size} -> {new.size}",
                    f"{proof.old_size} -> {proof.new_size}",
                ),
            )
        if new.size < old.size:
            raise fail(
                VerificationFailed,
                2,
                f"continuity.checkpoints[{i + 1}] has tree size {new.size}, smaller than {old.size} before it: the log shrank",
            )
        if old.size == 0:  # the empty tree is a prefix of every tree: nothing to prove, and no proof allowed
            if proof.hashes or old.root_hash != merkle.root_hash([]):
                raise fail(
                    VerificationFailed, 2, f"continuity.proofs[{i}]: a tree of size 0 has the empty root and no proof"
                )
            continue
        try:
            merkle.verify_consistency(old.size, new.size, old.root_hash, new.root_hash, list(proof.hashes))
        except ProvaultError as e:
            raise fail(
                VerificationFailed,
                2,
                f"continuity.proofs[{i}]: the tree of size {new.size} does not extend the tree of size {old.size}: {e.message}",
                hint="the log was rewritten between these checkpoints, or the report was altered",
            ) from None
    if bundle is not None:
        last = cps[-1]
        if (last.size, last.root_hash) != (bundle.checkpoint.tree_size, bundle.checkpoint.root_hash):
            raise fail(
                VerificationFailed,
                2,
                expected_found(
                    "the last checkpoint of the chain",
                    f"the bundle's (size {bundle.checkpoint.tree_size})",
                    f"size {last.size}",
                ),
            )
    return tuple(cps)


def _rfc3339(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _check_period(evidence: Evidence, bundle: query_pb2.AuditBundle | None, cps: Sequence[Checkpoint]) -> None:
    assert evidence.period is not None
    first, end = evidence.period["first_seq"], evidence.period["end_seq"]
    sizes = [c.size for c in cps]
    if first not in sizes or end not in sizes or first > end:
        raise fail(
            VerificationFailed,
            3,
            expected_found("the period's seqs", f"between two checkpoints of the chain {sizes}", f"{first} to {end}"),
        )
    logged = {pe.entry.seq for pe in bundle.entries} if bundle is not None else set()
    missing = [s for s in range(first, end) if s not in logged]
    if missing:
        raise fail(
            VerificationFailed,
            3,
            f"the log grew by seqs {first} to {end - 1} in the period, but the bundle lacks seqs {missing[:10]}",
            hint="a period report must hold every entry of its period",
        )


__all__ = [
    "REPORT_FORMAT",
    "REPORT_STEPS",
    "Checked",
    "Consistency",
    "Evidence",
    "MalformedReport",
    "ReportAltered",
    "StoredPoint",
    "check_evidence",
    "decode_evidence",
    "encode_evidence",
    "fail",
]
