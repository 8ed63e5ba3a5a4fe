"""``provault trace`` and ``provault impact``: traceback and impact from the command line.

Both read the PROV projection directly (role ``provault_auditor``, read
only; the gRPC QueryService is for remote tools) and never write: they do
not run the projector, they say how far it got ("projected up to seq N of
M") so that an answer missing the newest entries is not mistaken for a
complete one.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from ledger.config import settings_from
from ledger.db import connect
from ledger.stack import resolve_postgres_dsn
from query import render, traverse
from query.projector import lag

AUDITOR_ROLE = "provault_auditor"
FORMATS = ("table", "json", "dot", "svg")
IMPACT_FORMATS = ("table", "json")
DEFAULT_IMPACT_LIMIT = 100

_IMPACT_GROUPS = (
    ("models", lambda n: n.kind == "provault:Model"),
    ("deployments", lambda n: n.kind == "provault:Deployment"),
    ("datasets", lambda n: n.kind == "provault:Dataset"),
    ("runs", lambda n: n.id.startswith("provault:run/")),
)


def _count(text: str, *, minimum: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, found {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected at least {minimum}, found {value}")
    return value


def _as_of(text: str) -> int | datetime:
    """A seq (digits) or an RFC 3339 time with a UTC offset."""
    if text.isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a seq or an RFC 3339 time like 2025-03-02T10:00:00Z, found {text!r}"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expected a time with a UTC offset (e.g. a trailing Z), found {text!r}")
    return when


def _relation(text: str) -> str:
    if text not in traverse.RELATIONS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(traverse.RELATIONS)}, found {text!r}")
    return text


def _walk_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "id",
        help="a node id (sha256:<hex>, provault:run/<uuid>, ...), a prediction id, a keyid, or an OpenLineage "
        "name (dataset:<namespace>:<name>, job:<namespace>:<name>, run:<runId>), or an MLflow URI (runs:/<run id>, "
        "models:/<model id>, models:/<name>/<version>)",
    )
    p.add_argument(
        "--depth",
        type=lambda t: _count(t, minimum=0),
        default=traverse.DEFAULT_MAX_DEPTH,
        metavar="N",
        help=f"follow at most N relation hops (default {traverse.DEFAULT_MAX_DEPTH})",
    )
    p.add_argument(
        "--max-nodes",
        type=lambda t: _count(t, minimum=1),
        default=traverse.DEFAULT_MAX_NODES,
        metavar="N",
        help=f"return at most N nodes (default {traverse.DEFAULT_MAX_NODES})",
    )
    p.add_argument(
        "--relation",
        type=_relation,
        action="append",
        default=[],
        metavar="R",
        help="follow only this PROV relation (repeatable), e.g. used, wasGeneratedBy",
    )
    p.add_argument(
        "--as-of",
        type=_as_of,
        metavar="SEQ|TIME",
        help="answer as the ledger stood at this seq, or at this time of the ledger's clock",
    )
    p.add_argument(
        "--limit", type=lambda t: _count(t, minimum=0), metavar="N", help="list at most N prediction ids (downstream)"
    )
    p.add_argument("--after", metavar="PREDICTION_ID", help="list prediction ids after this one (the next page)")
    p.add_argument("--out", metavar="FILE", help="write the answer to FILE instead of stdout")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    t = sub.add_parser(
        "trace",
        parents=[common],
        help="traceback (or --down: impact) from a node or prediction, with the keys that signed each step",
        description=(
            "Walk the PROV graph from a node, a prediction id or a key: upstream by default (the code, data, "
            "people and runs it came from), downstream with --down (everything it touched). Reads the projection "
            "directly and never writes; the first line says how far the projection has got."
        ),
    )
    _walk_options(t)
    way = t.add_mutually_exclusive_group()
    way.add_argument(
        "--down",
        action="store_const",
        dest="direction",
        const=traverse.DOWNSTREAM,
        help="downstream: what the node touched (impact)",
    )
    way.add_argument(
        "--both",
        action="store_const",
        dest="direction",
        const=traverse.BOTH,
        help="both directions (the union of the two answers)",
    )
    fmt = t.add_mutually_exclusive_group()
    fmt.add_argument("--format", choices=FORMATS, default="table", help="table (default), json, dot or svg")
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")
    t.set_defaults(run=run_trace, direction=traverse.UPSTREAM)

    i = sub.add_parser(
        "impact",
        parents=[common],
        help="what a dataset, commit, model or key touched: affected models, deployments and predictions",
        description=(
            "Walk downstream from a node or key and summarise what it affected: models, deployments, datasets, "
            "runs and prediction ids (paged with --limit / --after). The same walk as `provault trace --down`."
        ),
    )
    _walk_options(i)
    fmt = i.add_mutually_exclusive_group()
    fmt.add_argument("--format", choices=IMPACT_FORMATS, default="table", help="table (default) or json")
    fmt.add_argument("--json", dest="format", action="store_const", const="json", help="the same as --format json")
    i.set_defaults(run=run_impact, direction=traverse.DOWNSTREAM)


# --- running -----------------------------------------------------------------------------


def projection_line(projected: int, size: int) -> str:
    if size == 0:
        return "the log is empty: nothing to answer from"
    behind = size - 1 - projected
    state = "caught up" if behind <= 0 else f"{behind} newer entries not projected yet"
    return f"projected up to seq {projected} of {size - 1} ({state})"


def _query(args: argparse.Namespace, default_limit: int) -> tuple[traverse.Trace, tuple[int, int]]:
    dsn = resolve_postgres_dsn(settings_from(args))
    with connect(dsn, autocommit=True, role=AUDITOR_ROLE) as conn:
        progress = lag(conn)
        answer = traverse.trace(
            conn,
            args.id,
            direction=args.direction,
            max_depth=args.depth,
            max_nodes=args.max_nodes,
            relations=args.relation,
            as_of_seq=_pin(conn, args.as_of),
            predictions_limit=default_limit if args.limit is None else args.limit,
            predictions_after=args.after,
        )
    return answer, progress


def _pin(conn: psycopg.Connection, as_of: int | datetime | None) -> int | None:
    if isinstance(as_of, datetime):
        return traverse.resolve_as_of(conn, time=as_of)
    return as_of


def _projection(progress: tuple[int, int]) -> dict[str, Any]:
    projected, size = progress
    return {"projected_seq": projected, "log_size": size}


def _emit(args: argparse.Namespace, text: str) -> None:
    if args.out:
        Path(args.out).write_text(text, encoding="utf-8")
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)


def run_trace(args: argparse.Namespace) -> int:
    answer, progress = _query(args, traverse.DEFAULT_PREDICTIONS_LIMIT)
    line = projection_line(*progress)
    if args.format == "table":
        text = f"{line}\n{render.as_table(answer)}"
    elif args.format == "json":
        text = json.dumps({"projection": _projection(progress), **render.as_json(answer)}, indent=2) + "\n"
    else:
        print(line, file=sys.stderr)
        text = render.as_dot(answer) if args.format == "dot" else render.as_svg(answer)
    _emit(args, text)
    return 0


def impact_summary(answer: traverse.Trace) -> dict[str, Any]:
    groups = {
        name: [
            {"id": n.id, "label": n.label, "depth": n.depth} for n in answer.nodes if test(n) and n.id != answer.start
        ]
        for name, test in _IMPACT_GROUPS
    }
    return {
        "start": answer.start,
        "as_of_seq": answer.as_of_seq,
        "truncated": answer.truncated,
        **groups,
        "predictions": {
            "total": answer.predictions_total,
            "ids": list(answer.predictions),
            "next_after": answer.predictions_next,
        },
        "nodes": len(answer.nodes),
        "seqs": list(answer.seqs),
    }


def impact_table(summary: dict[str, Any]) -> str:
    cut = " -- TRUNCATED: a depth or node limit cut the walk, there may be more" if summary["truncated"] else ""
    out = [f"impact of {render.short(summary['start'])} as of seq {summary['as_of_seq']}{cut}"]
    for name, _ in _IMPACT_GROUPS:
        items = summary[name]
        out.append(f"  {name} affected: {len(items)}")
        out += [f"    {render.short(it['id'])}" + (f"  {it['label']}" if it["label"] else "") for it in items]
    preds = summary["predictions"]
    ids = preds["ids"]
    out.append(
        f"  predictions affected: {preds['total']}" + (f" (listing {len(ids)})" if len(ids) < preds["total"] else "")
    )
    out += [f"    {pid}" for pid in ids]
    if preds["next_after"]:
        out.append(f"  more: add --after {preds['next_after']}")
    return "\n".join(out) + "\n"


def run_impact(args: argparse.Namespace) -> int:
    answer, progress = _query(args, DEFAULT_IMPACT_LIMIT)
    summary = impact_summary(answer)
    if args.format == "json":
        text = json.dumps({"projection": _projection(progress), **summary}, indent=2) + "\n"
    else:
        text = f"{projection_line(*progress)}\n{impact_table(summary)}"
    _emit(args, text)
    return 0


__all__ = ["impact_summary", "impact_table", "projection_line", "register", "run_impact", "run_trace"]
