"""What a report shows, computed from verified evidence alone (pure).

Every row of every table is a statement of a signed, logged entry of the embedded bundle, shown with
the entry's seq and the key that signed it (and the identity that key was registered for); the
report's HTML is rendered from this and nothing else, so ``provault verify-report`` can render it
again from the evidence and compare.

Sections of a model report: the model's data, code, environment, parameters, metrics, authors,
approvals, deployments, serving (prediction batches), quarantines and revocations, every statement
in log order, the retention continuity and the duty mapping.  A period report shows the statements
logged in the period, the models, deployments, approvals, quarantines and revocations and key
registrations among them, the continuity and the duty mapping.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ledger.core.errors import ProvaultError
from ledger.core.events import format_time
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, parse_registration, parse_revocation

from .duties import DUTIES
from .evidence import Checked
from .facts import Facts, facts, reach, role, value

MODEL, DATASET, CODE, ENVIRONMENT, DEPLOYMENT = (
    "provault:Model",
    "provault:Dataset",
    "provault:Code",
    "provault:Environment",
    "provault:Deployment",
)
APPROVER = "provault:approver"

# --- the view ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Table:
    id: str
    title: str
    serves: str
    """The duties the table serves (short references into :data:`DUTIES`)."""
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    empty: str = "none stated"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportView:
    kind: str
    title: str
    summary: tuple[tuple[str, str], ...]
    tables: tuple[Table, ...]
    continuity: Table
    continuity_notes: tuple[str, ...]
    duties: Table
    notes: tuple[str, ...] = ()


# --- tables ---------------------------------------------------------------------------------------


def _edge_rows(f: Facts, keep: Any, columns: Any, seqs: range | None) -> tuple[tuple[str, ...], ...]:
    out = []
    for seq, rel, src, dst, attrs in f.edges:
        if (seqs is None or seq in seqs) and keep(rel, src, dst, attrs):
            out.append((*columns(rel, src, dst, attrs), str(seq), f.signer(seq)))
    return tuple(dict.fromkeys(out))


def _attr_rows(f: Facts, name: str, nodes: set[str] | None, seqs: range | None) -> tuple[tuple[str, ...], ...]:
    return tuple(
        (f.name(node), value(v), str(seq), f.signer(seq))
        for seq, node, attr, v in f.attrs
        if attr == name and (nodes is None or node in nodes) and (seqs is None or seq in seqs)
    )


def _statement(f: Facts, rel: str, src: str, dst: str) -> str:
    return f"{f.name(src)} {rel} {f.name(dst)}"


def _is(f: Facts, node: str, kind: str) -> bool:
    return f.kinds.get(node) == kind


def _lifecycle(f: Facts, model: str) -> list[Table]:
    up = reach(f, model, upstream=True)
    down = reach(f, model, upstream=False)
    stmt_cols = ("what", "statement", "seq", "signer")

    def used(kind: str, prefix: str = "") -> Any:
        def keep(rel: str, src: str, dst: str, attrs: Mapping[str, Any]) -> bool:
            hit = _is(f, dst, kind) or bool(prefix and dst.startswith(prefix))
            return rel in ("used", "wasDerivedFrom") and src in up and dst in up and hit

        return keep

    def cols(rel: str, src: str, dst: str, attrs: Mapping[str, Any]) -> tuple[str, ...]:
        return (f.name(dst), _statement(f, rel, src, dst))

    authors = _edge_rows(
        f,
        lambda rel, src, dst, a: (
            rel in ("wasAssociatedWith", "wasAttributedTo", "actedOnBehalfOf") and src in up and role(a) != APPROVER
        ),
        lambda rel, src, dst, a: (f.name(dst), _statement(f, rel, src, dst) + (f" as {role(a)}" if role(a) else "")),
        None,
    )
    deployments = {n for n in down if _is(f, n, DEPLOYMENT)}
    retired = {model} | deployments
    return [
        Table(
            id="data",
            title="Data",
            serves="GOVERN 1.6; Art. 12",
            columns=stmt_cols,
            rows=_edge_rows(f, used(DATASET), cols, None),
        ),
        Table(
            id="code",
            title="Code",
            serves="GOVERN 1.6; Art. 12",
            columns=stmt_cols,
            rows=_edge_rows(f, used(CODE, "provault:git/"), cols, None),
        ),
        Table(
            id="environment",
            title="Environment",
            serves="GOVERN 1.6; Art. 12",
            columns=stmt_cols,
            rows=_edge_rows(f, used(ENVIRONMENT), cols, None),
        ),
        Table(
            id="params",
            title="Parameters",
            serves="GOVERN 1.6",
            columns=("run", "parameters", "seq", "signer"),
            rows=_attr_rows(f, "provault:params", up, None),
        ),
        Table(
            id="metrics",
            title="Metrics",
            serves="GOVERN 1.6; MANAGE 4.1",
            columns=("run", "metrics", "seq", "signer"),
            rows=_attr_rows(f, "provault:metrics", up, None),
        ),
        Table(
            id="authors",
            title="Authors",
            serves="GOVERN 1.6; A.6.2.8",
            columns=("who", "statement", "seq", "signer"),
            rows=authors,
        ),
        _approvals(f, down, None),
        _deployments(f, model, deployments),
        _serving(f, down),
        _revocations(f, retired, None),
    ]


def _approvals(f: Facts, scope: set[str] | None, seqs: range | None) -> Table:
    rows = _edge_rows(
        f,
        lambda rel, src, dst, a: rel == "wasAssociatedWith" and role(a) == APPROVER and (scope is None or src in scope),
        lambda rel, src, dst, a: (f.name(dst), _statement(f, rel, src, dst) + f" as {APPROVER}"),
        seqs,
    )
    return Table(
        id="approvals",
        title="Approvals",
        serves="MANAGE 4.1; A.6.2.8",
        columns=("approver", "statement", "seq", "signer"),
        rows=rows,
    )


def _deployments(f: Facts, model: str | None, deployments: set[str], seqs: range | None = None) -> Table:
    rows = _edge_rows(
        f,
        lambda rel, src, dst, a: (
            src in deployments
            and rel in ("wasDerivedFrom", "wasGeneratedBy")
            and (model is None or rel != "wasDerivedFrom" or dst == model)
        ),
        lambda rel, src, dst, a: (f.name(src), _statement(f, rel, src, dst)),
        seqs,
    )
    return Table(
        id="deployments",
        title="Deployments",
        serves="MANAGE 4.1; Art. 26(6)",
        columns=("deployment", "statement", "seq", "signer"),
        rows=rows,
    )


def _serving(f: Facts, scope: set[str]) -> Table:
    rows = []
    for seq, e in sorted(f.entries.items()):
        batches = sorted({p.activity for p in e.rows.predictions if p.activity in scope})
        for b in batches:
            n = sum(1 for p in e.rows.predictions if p.activity == b)
            rows.append(
                (f.name(b), f"{n} predictions, event time {format_time(e.event.time)}", str(seq), f.signer(seq))
            )
    return Table(
        id="serving",
        title="Serving (prediction batches)",
        serves="MANAGE 4.1; Art. 12; Art. 26(6)",
        columns=("batch", "predictions", "seq", "signer"),
        rows=tuple(rows),
    )


def _revocations(f: Facts, retired: set[str] | None, seqs: range | None) -> Table:
    rows = list(
        _edge_rows(
            f,
            lambda rel, src, dst, a: rel == "wasInvalidatedBy" and (retired is None or src in retired),
            lambda rel, src, dst, a: ("invalidation", _statement(f, rel, src, dst) + _kind_note(f, dst)),
            seqs,
        )
    )
    for seq, e in sorted(f.entries.items()):
        if e.event.kind == KEY_REVOKED and (seqs is None or seq in seqs):
            rev = parse_revocation(e.event)
            who = f.signers.get(rev.keyid, "a key")
            text = (
                f"key {rev.keyid[:16]} of {who} revoked, effective from {format_time(rev.effective_from)}: {rev.reason}"
            )
            rows.append(("key revocation", text, str(seq), f.signer(seq)))
    return Table(
        id="revocations",
        title="Quarantines and revocations",
        serves="MANAGE 4.1",
        columns=("what", "statement", "seq", "signer"),
        rows=tuple(rows),
    )


def _kind_note(f: Facts, activity: str) -> str:
    kind = f.kinds.get(activity)
    return f" ({kind})" if kind else ""


def _ledger(f: Facts, seqs: Iterable[int]) -> Table:
    rows = []
    for seq in seqs:
        e = f.entries[seq]
        ev = e.event
        rows.append((str(seq), ev.kind, format_time(ev.time), ev.producer.id, ev.id, f.signer(seq)))
    return Table(
        id="statements",
        title="Every statement, in log order",
        serves="Art. 12; A.6.2.8",
        columns=("seq", "kind", "event time (producer's clock, signed)", "producer", "event id", "signer"),
        rows=tuple(rows),
    )


def _models(f: Facts, seqs: range) -> Table:
    rows = tuple(
        (f.name(node), f"version {_version(f, node)}", str(seq), f.signer(seq))
        for seq, node, attr, v in f.attrs
        if attr == "prov:type" and value(v) == MODEL and seq in seqs
    )
    return Table(
        id="models", title="Models", serves="GOVERN 1.6", columns=("model", "version", "seq", "signer"), rows=rows
    )


def _version(f: Facts, node: str) -> str:
    return next((value(v) for _, n, a, v in f.attrs if n == node and a == "provault:version"), "not stated")


def _keys(f: Facts, seqs: range) -> Table:
    rows = []
    for seq, e in sorted(f.entries.items()):
        if e.event.kind == KEY_REGISTERED and seq in seqs:
            reg = parse_registration(e.event)
            who = f"{reg.identity.get('name', '?')} ({reg.identity.get('type', '?')})"
            rows.append(
                (
                    f"key {reg.keyid[:16]}",
                    f"{who}, role {reg.role}, kinds {', '.join(reg.kinds)}",
                    str(seq),
                    f.signer(seq),
                )
            )
    return Table(
        id="keys",
        title="Key registrations",
        serves="A.6.2.8",
        columns=("key", "bound to", "seq", "signer"),
        rows=tuple(rows),
    )


# --- continuity and duties ---------------------------------------------------------------------------


def _continuity(c: Checked) -> tuple[Table, tuple[str, ...]]:
    rows = []
    for i, (cp, point) in enumerate(zip(c.checkpoints, c.evidence.checkpoints, strict=True)):
        proof = ""
        if i:
            p = c.evidence.proofs[i - 1]
            proof = (
                "extends the empty tree of size 0, as every tree does"
                if p.old_size == 0
                else f"extends size {p.old_size}: consistency proof of {len(p.hashes)} hashes verifies"
            )
        rows.append((str(cp.size), cp.root_hash.hex(), point.signed_at, proof or "first checkpoint of the chain"))
    first, last = c.evidence.checkpoints[0].signed_at, c.evidence.checkpoints[-1].signed_at
    days = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds() / 86400
    notes = (
        f"The log at tree size {c.checkpoints[-1].size} extends the log at tree size {c.checkpoints[0].size}: "
        "no entry logged before the first checkpoint was removed, changed or reordered up to the last.",
        f"The chain spans {days:.1f} days by the ledger's clock ({first} to {last}); "
        "Art. 19(1) and Art. 26(6) ask for logs to be kept at least six months (about 183 days).",
        f"Checkpoint key: {c.evidence.checkpoint_key}.",
    )
    table = Table(
        id="continuity",
        title="Retention continuity",
        serves="Art. 19(1); Art. 26(6); A.6.2.8",
        columns=("tree size", "root hash", "signed at (ledger clock, not signed)", "proof"),
        rows=tuple(rows),
    )
    return table, notes


def _duties() -> Table:
    return Table(
        id="duties",
        title="Record-keeping duties this report serves",
        serves="",
        columns=("duty", "what it asks", "where this report answers it"),
        rows=DUTIES,
    )


# --- the views ---------------------------------------------------------------------------------------


def model_view(c: Checked) -> ReportView:
    """The model report's content: the lifecycle of the subject, every statement, continuity, duties."""
    b = c.bundle
    assert b is not None
    f = facts(b)
    model = b.node_id
    node = next(n for n in b.nodes if n.id == model)
    continuity, notes = _continuity(c)
    summary = (
        ("model", model),
        ("label", node.label or "not stated"),
        ("version", _version(f, model)),
        ("asked for", c.evidence.subject.get("query", model)),
        ("as of seq", str(b.as_of_seq)),
        (
            "checkpoint",
            f"{b.checkpoint.origin}, tree size {b.checkpoint.tree_size}, root {b.checkpoint.root_hash.hex()}",
        ),
        ("first statement", f"seq {node.introduced_seq}"),
        ("entries", f"{len(b.entries)} statements, {len(b.key_entries)} key entries"),
    )
    tables = (
        *_lifecycle(f, model),
        _ledger(f, sorted(pe.entry.seq for pe in b.entries)),
        _keys(f, range(b.checkpoint.tree_size)),
    )
    return ReportView(
        kind="model",
        title=f"Compliance report: model {node.label or model}",
        summary=summary,
        tables=tables,
        continuity=continuity,
        continuity_notes=notes,
        duties=_duties(),
        notes=_bundle_notes(c),
    )


def period_view(c: Checked) -> ReportView:
    """The period report's content: what was logged between two checkpoints, continuity, duties."""
    assert c.evidence.period is not None
    first, end = c.evidence.period["first_seq"], c.evidence.period["end_seq"]
    seqs = range(first, end)
    continuity, notes = _continuity(c)
    summary = [
        ("from", c.evidence.subject.get("from", "")),
        ("to", c.evidence.subject.get("to", "")),
        ("entries logged", f"seqs {first} to {end - 1} ({end - first} entries)" if end > first else "none"),
    ]
    tables: list[Table] = []
    if c.bundle is not None:
        f = facts(c.bundle)
        deployments = {n for n, k in f.kinds.items() if k == DEPLOYMENT}
        tables = [
            _models(f, seqs),
            _deployments(f, None, deployments, seqs),
            _approvals(f, None, seqs),
            _revocations(f, None, seqs),
            _keys(f, seqs),
            _ledger(f, list(seqs)),
        ]
        summary.append(("checkpoint", f"{c.bundle.checkpoint.origin}, tree size {c.bundle.checkpoint.tree_size}"))
    return ReportView(
        kind="period",
        title=f"Compliance report: {c.evidence.subject.get('from', '')} to {c.evidence.subject.get('to', '')}",
        summary=tuple(summary),
        tables=tuple(tables),
        continuity=continuity,
        continuity_notes=notes,
        duties=_duties(),
        notes=_bundle_notes(c),
    )


def _bundle_notes(c: Checked) -> tuple[str, ...]:
    r = c.bundle_report
    return tuple(r.notes) if r is not None else ()


def view(c: Checked) -> ReportView:
    try:
        return model_view(c) if c.evidence.kind == "model" else period_view(c)
    except ProvaultError:
        raise
    except (KeyError, StopIteration) as e:  # verified evidence always has these; say so rather than crash
        raise ProvaultError(f"the evidence verified but its content is incomplete: {e!r}") from None


__all__ = ["DUTIES", "ReportView", "Table", "model_view", "period_view", "view"]
