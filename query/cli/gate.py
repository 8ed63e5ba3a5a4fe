"""``provault approve``, ``provault quarantine`` and ``provault gate`` (docs/supply-chain.md).

``approve`` and ``quarantine`` are statements of the person who runs them: they are signed with that
person's own producer key through the agents' runtime (as ``model deploy`` is) and delivered, or spooled
when the ledger cannot be reached.  ``quarantine`` then prints what the target reaches downstream, read
from the projection as ``provault impact`` does.  ``gate`` reads the ledger as ``provault_auditor``,
decides from the model's verified evidence and records the decision with the attestation key; its exit
code is the verdict (below), so CI can gate on it.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.config import settings_from
from ledger.core.errors import InvalidArgument, KeyMaterialError, ProvaultError
from ledger.core.ids import is_content_id
from query.bundle_verify import printable
from query.cli.bundle import auditor_connection

if TYPE_CHECKING:
    import psycopg

    from agents.governance import Statement
    from ledger.config import Settings

ALLOWED, DENIED, MALFORMED, NO_DECISION = 0, 1, 2, 3
"""``provault gate``'s exit codes."""


# --- helpers ------------------------------------------------------------------------------------------


def _seq(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a log seq (a non-negative integer), found {text!r}")
    return int(text)


def seq_ranges(seqs: Sequence[int]) -> str:
    """``3-6, 14``: sorted seqs with runs collapsed."""
    out: list[str] = []
    items = sorted(set(seqs))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ", ".join(out) or "none"


def _connect(settings: Settings) -> psycopg.Connection:
    return auditor_connection(settings)


def _emit(settings: Settings, statement: Statement) -> tuple[str, bool]:
    """Sign ``statement`` with the user's producer key, spool it, and wait up to ``agent.publish_timeout_s``."""
    from agents.cli import emit_once  # noqa: PLC0415 - keeps `provault --help` fast

    return emit_once(settings, statement.kind, statement.prov, statement.data)


def _model_id(settings: Settings, name: str) -> str:
    """A ``sha256:`` id as given (an approver needs no database), else the one model with that exact label."""
    if is_content_id(name):
        return name
    if name.startswith("sha256:"):
        raise InvalidArgument(f"model: expected 'sha256:<64 lowercase hex digits>' or a model's label, found {name!r}")
    from query import traverse  # noqa: PLC0415
    from query.report.build import resolve_model  # noqa: PLC0415

    with _connect(settings) as conn:
        return resolve_model(conn, name, traverse.position(conn))


# --- approve --------------------------------------------------------------------------------------------


def run_approve(args: argparse.Namespace) -> int:
    from agents.governance import approval_event  # noqa: PLC0415

    settings = settings_from(args)
    model = _model_id(settings, args.model)
    statement = approval_event(model, comment=args.comment)
    event_id, delivered = _emit(settings, statement)
    if args.json:
        print(
            json.dumps(
                {"kind": statement.kind, "id": statement.id, "model": model, "event": event_id, "delivered": delivered}
            )
        )
    else:
        print(f"{statement.kind} {model} event {event_id} {'delivered' if delivered else 'spooled'}")
    return 0


# --- quarantine ----------------------------------------------------------------------------------------


def impact_of(conn: psycopg.Connection, node: str, *, keyid: str | None = None) -> dict[str, Any]:
    """What ``node`` reaches downstream in the projection: models, deployments, predictions (and a key's entries)."""
    from query import traverse  # noqa: PLC0415
    from query.projector import lag  # noqa: PLC0415

    projected, size = lag(conn)
    out: dict[str, Any] = {"node": node, "projected_seq": projected, "log_size": size}
    if keyid is not None:
        rows = conn.execute("SELECT seq FROM prov.entries WHERE keyid = %s ORDER BY seq", (keyid,)).fetchall()
        out["entries_signed"] = [int(r[0]) for r in rows]
    try:
        answer = traverse.trace(conn, node, direction=traverse.DOWNSTREAM, predictions_limit=0)
    except traverse.NodeNotFound as e:
        out["found"], out["note"] = False, e.message
        return out
    kinds = {"models": "provault:Model", "deployments": "provault:Deployment"}
    for group, kind in kinds.items():
        out[group] = [{"id": n.id, "label": n.label} for n in answer.nodes if n.kind == kind and n.id != node]
    out.update(found=True, as_of_seq=answer.as_of_seq, predictions=answer.predictions_total, truncated=answer.truncated)
    return out


def _impact_lines(impact: dict[str, Any]) -> list[str]:
    from query.cli.trace import projection_line  # noqa: PLC0415
    from query.render import short  # noqa: PLC0415

    lines = [f"impact of {short(impact['node'])}, {projection_line(impact['projected_seq'], impact['log_size'])}:"]
    if "entries_signed" in impact:
        signed = impact["entries_signed"]
        lines.append(f"  entries signed by the key: {len(signed)} (seqs {seq_ranges(signed)})")
    if not impact["found"]:
        return [*lines, f"  {impact['note']}"]
    for group in ("models", "deployments"):
        items = impact[group]
        lines.append(f"  {group}: {len(items)}")
        lines += [f"    {short(it['id'])}" + (f"  {it['label']}" if it["label"] else "") for it in items]
    lines.append(f"  predictions: {impact['predictions']}")
    if impact["truncated"]:
        lines.append("  TRUNCATED: a depth or node limit cut the walk; `provault impact` with higher limits shows more")
    return lines


FULL_COMMIT = 40
"""Hex digits of a full git commit id (SHA-1); the agents record commits by their full id."""


def _recorded_commit(settings: Settings, short_id: str) -> str:
    """The one commit the projection holds whose id starts with ``short_id``: a quarantine must name the id the
    commit was recorded under, or the gate would never see it.  Refused when none or several match."""
    with _connect(settings) as conn:
        rows = conn.execute(
            "SELECT id FROM prov.nodes WHERE id LIKE %s ORDER BY id LIMIT 11", (short_id.replace("_", r"\_") + "%",)
        ).fetchall()
    found = [r[0] for r in rows]
    if len(found) == 1:
        return found[0]
    if not found:
        raise InvalidArgument(
            f"no commit recorded in the ledger starts with {short_id}, so a quarantine of it would match nothing",
            hint=f"name the commit by its full {FULL_COMMIT}-digit id (the ledger may quarantine one it has not seen)",
        )
    raise InvalidArgument(
        f"{short_id} is the start of {'more than 10' if len(found) > 10 else len(found)} recorded commits: "
        + ", ".join(found[:10]),
        hint="name the commit by more digits, or its full id",
    )


def run_quarantine(args: argparse.Namespace) -> int:
    from agents.governance import quarantine_event, quarantine_target  # noqa: PLC0415

    settings = settings_from(args)
    target, kind, node = quarantine_target(args.target)
    if kind == "commit" and len(target) - len("provault:git/") < FULL_COMMIT:
        target = node = _recorded_commit(settings, target)
    statement = quarantine_event(target, reason=args.reason)
    event_id, delivered = _emit(settings, statement)
    doc: dict[str, Any] = {"kind": statement.kind, "target": target, "target_type": kind, "event": event_id}
    doc["delivered"] = delivered
    try:
        with _connect(settings) as conn:
            doc["impact"] = impact_of(conn, node, keyid=target.split(":", 1)[1] if kind == "key" else None)
    except ProvaultError as e:
        doc["impact_error"] = e.message
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{statement.kind} {kind} {target} event {event_id} {'delivered' if delivered else 'spooled'}")
    if "impact" in doc:
        print("\n".join(printable(line) for line in _impact_lines(doc["impact"])))
    else:
        print(f"provault: the impact could not be read: {doc['impact_error']}", file=sys.stderr)
    return 0


# --- gate ------------------------------------------------------------------------------------------------


def report_lines(decision: Any, *, policy: str, recorded: Any, record: bool) -> list[str]:
    """The human report of a decision: the verdict, then each rule, its reason and its evidence seqs."""
    from query.render import short  # noqa: PLC0415

    model = short(decision.model) + (f" ({decision.label})" if decision.label else "")
    lines = [
        f"provault gate: {'ALLOWED' if decision.allowed else 'DENIED'}: model {model}",
        f"  policy      {policy} ({short(decision.policy_digest)})",
        f"  evidence    verified audit bundle {short(decision.bundle_digest)}, as of seq {decision.as_of_seq}, "
        f"checkpoint tree size {decision.checkpoint_size}",
    ]
    width = max(len(r.rule) for r in decision.rules)
    for r in decision.rules:
        lines.append(f"  {'PASS' if r.passed else 'FAIL'}  {r.rule:<{width}}  {r.reason}")
        if r.description:
            lines.append(f"        {'':<{width}}  ({r.description})")
        lines.append(f"        {'':<{width}}  evidence seqs: {seq_ranges(r.evidence_seqs)}")
    if recorded is not None:
        state = "delivered" if recorded.delivered else f"spooled in {recorded.spool}, sent when the ledger is reachable"
        lines.append(f"  recorded    gate.decided event {recorded} ({state})")
    elif not record:
        lines.append("  recorded    no (--no-record)")
    return lines


def run_gate(args: argparse.Namespace) -> int:
    from query.supply.gate import decide  # noqa: PLC0415
    from query.supply.policy import PolicyError, parse_policy  # noqa: PLC0415

    try:
        text = Path(args.policy).read_bytes()
    except OSError as e:
        print(f"provault gate: cannot read the policy {args.policy}: {e.strerror or type(e).__name__}", file=sys.stderr)
        return MALFORMED
    try:
        parse_policy(text, source=args.policy)
    except PolicyError as e:
        print(f"provault gate: malformed policy: {printable(e.diagnostics())}", file=sys.stderr)
        return MALFORMED
    if args.as_of is not None and not args.no_record:
        print(
            "provault gate: --as-of needs --no-record: a decision is recorded only as of the latest checkpoint",
            file=sys.stderr,
        )
        return MALFORMED
    try:
        settings = settings_from(args)
    except ProvaultError as e:  # the configuration: no decision, not a denial
        print(f"provault gate: no decision [{e.reason}]: {printable(e.diagnostics())}", file=sys.stderr)
        return NO_DECISION
    import psycopg  # noqa: PLC0415 - the database side loads only here

    record = not args.no_record
    try:
        from agents.cli import quiet_retries  # noqa: PLC0415

        with quiet_retries(), _connect(settings) as conn:
            decision, recorded = decide(
                conn, settings, args.model, text, as_of_seq=args.as_of, record=record, source=args.policy
            )
    except ProvaultError as e:
        print(f"provault gate: no decision [{e.reason}]: {printable(e.diagnostics())}", file=sys.stderr)
        if isinstance(e, KeyMaterialError) and "attestation key" in e.message:
            print("provault gate: to decide without recording, add --no-record", file=sys.stderr)
        return NO_DECISION
    except psycopg.Error as e:
        print(f"provault gate: no decision [database]: {type(e).__name__}: {printable(str(e))}", file=sys.stderr)
        return NO_DECISION
    except Exception:  # a defect: CI must not read its exit status as a denial (1), nor as an allow
        logging.getLogger("provault.gate").exception("provault gate: no decision: unexpected error")
        return NO_DECISION
    if args.json:
        doc = {
            **decision.to_json(),
            "policy": args.policy,
            "decision_event": str(recorded) if recorded is not None else None,
            "delivered": recorded.delivered if recorded is not None else None,
        }
        print(json.dumps(doc, indent=2, ensure_ascii=True))
    else:
        lines = report_lines(decision, policy=args.policy, recorded=recorded, record=record)
        print("\n".join(printable(line) for line in lines))
    return ALLOWED if decision.allowed else DENIED


# --- the parser --------------------------------------------------------------------------------------


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    a = sub.add_parser(
        "approve",
        parents=[common],
        help="approve a model: a model.approved event signed by your own key",
        description=(
            "Record your approval of MODEL, signed with your producer key (agent.key_file). It counts for a "
            "gate policy's [rules.approvals] only if your key was registered with the policy's role "
            "(`provault keys register --roles`)."
        ),
    )
    a.add_argument(
        "model", metavar="MODEL", help="the model's id sha256:<hex>, or its exact label (read from the ledger)"
    )
    a.add_argument("--comment", metavar="TEXT", help="why, or what you reviewed")
    a.add_argument("--json", action="store_true", help="print one JSON object (kind, id, model, event, delivered)")
    a.set_defaults(run=run_approve)

    q = sub.add_parser(
        "quarantine",
        parents=[common],
        help="take a dataset, a commit or a key out of use, and show what it reaches",
        description=(
            "Record a quarantine.placed event signed by your producer key, then print what the target reaches "
            "downstream: the models, the deployments and the predictions. The gate's [rules.quarantine] "
            "refuses every model it reaches. A quarantine is not a revocation: `provault keys revoke` stays "
            "the admin's."
        ),
    )
    q.add_argument(
        "target",
        metavar="DATASET|COMMIT|KEY",
        help="a dataset sha256:<hex>, a commit provault:git/<sha> or 7-40 hex digits, or a key key:<keyid>",
    )
    q.add_argument("--reason", required=True, metavar="TEXT", help="why (recorded, shown in gate reports)")
    q.add_argument("--json", action="store_true", help="print one JSON object, the impact included")
    q.set_defaults(run=run_quarantine)

    g = sub.add_parser(
        "gate",
        parents=[common],
        help="decide whether a model may ship under a policy (exit 0 allowed, 1 denied, 2 malformed, 3 no decision)",
        description=(
            "Evaluate a gate policy (TOML, docs/supply-chain.md) against the model's lifecycle, bundled and "
            "verified from the ledger, and print each rule's verdict, reason and evidence seqs. The decision is "
            "recorded as gate.decided, signed by the attestation key, unless --no-record. Exit codes: 0 allowed, "
            "1 denied, 2 the command line or the policy is malformed, 3 no decision (unknown model, no "
            "checkpoint, ledger unreachable, a limit hit, no attestation key)."
        ),
    )
    g.add_argument("model", metavar="MODEL", help="the model's id sha256:<hex> or its exact label")
    g.add_argument("--policy", required=True, metavar="FILE", help="the gate policy (TOML)")
    g.add_argument("--json", action="store_true", help="print the decision as JSON")
    g.add_argument("--no-record", action="store_true", help="decide without recording gate.decided")
    g.add_argument("--as-of", type=_seq, metavar="SEQ", help="decide as the ledger stood at this seq (checkpointed)")
    g.set_defaults(run=run_gate, error_exit=NO_DECISION)


__all__ = ["ALLOWED", "DENIED", "MALFORMED", "NO_DECISION", "impact_of", "register", "report_lines", "seq_ranges"]
