"""``provault export`` and ``provault sparql``: the PROV graph out of the database, as an auditor.

Both read the projection directly (role ``provault_auditor``) from the
configured PostgreSQL or the one of a running ``provault up``.  ``export``
streams the document to stdout or a file; ``sparql`` prints a table, or
SPARQL 1.1 Query Results JSON with ``--json``.  The heavy modules (rdflib) are
imported only when one of these commands runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from ledger.core.errors import InvalidArgument
from query.cli.bundle import auditor_connection

FORMATS = ("turtle", "jsonld", "provjson", "ntriples")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    scope = argparse.ArgumentParser(add_help=False)
    scope.add_argument(
        "--node",
        metavar="ID",
        action="append",
        dest="nodes",
        help="limit to this node and the edges among the nodes given (repeatable; default: the whole graph)",
    )
    scope.add_argument("--as-of", metavar="SEQ", type=int, help="the graph as the ledger stood at this log seq")
    p = sub.add_parser(
        "export",
        parents=[common, scope],
        help="export the PROV graph as PROV-O (Turtle, JSON-LD, N-Triples) or PROV-JSON",
        description="Write the projected PROV graph (or the subgraph of --node ids) as of a log seq. "
        "N-Triples streams and suits whole large ledgers; the other formats are built in memory.",
    )
    p.add_argument("--format", choices=FORMATS, default="turtle", help="serialization (default: turtle)")
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(run=run_export)
    q = sub.add_parser(
        "sparql",
        parents=[common, scope],
        help="run a read-only SPARQL SELECT or ASK query over the PROV-O graph",
        description="Answer a SPARQL 1.1 SELECT or ASK query over the PROV-O view of the graph (the same triples "
        "as `provault export`). Updates, CONSTRUCT, DESCRIBE, SERVICE and FROM are refused. Prefixes prov, "
        "provault, sha256, rdf, rdfs and xsd are predeclared.",
    )
    q.add_argument(
        "query", metavar="QUERY_OR_@FILE", help="the query text, or @FILE to read it from FILE ('@-': stdin)"
    )
    q.add_argument("--limit", type=int, default=None, metavar="N", help="return at most N solutions (default: 10000)")
    q.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="stop the query after S seconds (default: 10)"
    )
    q.add_argument("--json", action="store_true", help="print SPARQL 1.1 Query Results JSON")
    q.set_defaults(run=run_sparql)


def _connect(args: argparse.Namespace):  # -> psycopg.Connection
    from ledger.config import settings_from  # noqa: PLC0415 - keep `provault --help` light

    return auditor_connection(settings_from(args))


def _check_as_of(conn: Any, as_of: int | None) -> None:
    if as_of is None:
        return
    (last,) = conn.execute("SELECT last_seq FROM prov.position").fetchone()
    if as_of > last:
        raise InvalidArgument(
            f"--as-of {as_of}: the projection has only reached seq {last}",
            hint="wait for the projector to catch up (`provault up` runs it), or ask for an earlier seq",
        )


def run_export(args: argparse.Namespace) -> int:
    from query.export import export_stream  # noqa: PLC0415

    with _connect(args) as conn:
        _check_as_of(conn, args.as_of)
        chunks = export_stream(conn, fmt=args.format, node_ids=args.nodes, as_of_seq=args.as_of)
        if args.out is None:
            _write(chunks, sys.stdout.buffer)
            sys.stdout.buffer.flush()
            return 0
        out = Path(args.out)
        tmp = out.with_name(f".{out.name}.partial")
        try:
            with tmp.open("wb") as f:
                _write(chunks, f)
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
    print(f"wrote {args.format} export to {out}", file=sys.stderr)
    return 0


def _write(chunks: Any, f: IO[bytes]) -> None:
    for chunk in chunks:
        f.write(chunk)


def _query_text(arg: str) -> str:
    if not arg.startswith("@"):
        return arg
    if arg == "@-":
        return sys.stdin.read()
    try:
        return Path(arg[1:]).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidArgument(f"query file {arg[1:]} cannot be read as UTF-8 text: {type(e).__name__}") from None


def run_sparql(args: argparse.Namespace) -> int:
    from query import sparql  # noqa: PLC0415

    text = _query_text(args.query)
    sparql.check_query(text)  # refuse before connecting
    limits = {"max_rows": args.limit or sparql.DEFAULT_MAX_ROWS, "timeout_s": args.timeout or sparql.DEFAULT_TIMEOUT_S}
    with _connect(args) as conn:
        _check_as_of(conn, args.as_of)
        result = sparql.run_sparql(conn, text, node_ids=args.nodes, as_of_seq=args.as_of, **limits)
    if args.json:
        print(json.dumps(results_json(result), indent=2, ensure_ascii=False))
    else:
        print(table(result))
    if result.truncated:
        print(f"provault: only the first {len(result.rows)} solutions are shown (--limit)", file=sys.stderr)
    return 0


# --- output --------------------------------------------------------------------------------------

_JSON_TYPES = {"iri": "uri", "literal": "literal", "bnode": "bnode"}


def _json_term(v: Any) -> dict[str, str]:
    out = {"type": _JSON_TYPES[v.type], "value": v.value}
    if v.lang:
        out["xml:lang"] = v.lang
    elif v.type == "literal" and v.datatype:
        out["datatype"] = v.datatype
    return out


def results_json(result: Any) -> dict[str, Any]:
    """The W3C SPARQL 1.1 Query Results JSON form (plus ``truncated``)."""
    if result.kind == "ask":
        return {"head": {}, "boolean": result.boolean}
    bindings = [
        {var: _json_term(v) for var, v in zip(result.variables, row, strict=True) if v is not None}
        for row in result.rows
    ]
    return {"head": {"vars": list(result.variables)}, "results": {"bindings": bindings}, "truncated": result.truncated}


def _short(v: Any) -> str:
    from query.export import NAMESPACES  # noqa: PLC0415

    if v is None:
        return ""
    if v.type == "bnode":
        return f"_:{v.value}"
    if v.type == "literal":
        return f"{v.value}@{v.lang}" if v.lang else v.value
    for prefix, ns in sorted(NAMESPACES.items(), key=lambda kv: -len(kv[1])):
        if v.value.startswith(ns) and len(v.value) > len(ns):
            return f"{prefix}:{v.value[len(ns) :]}"
    return f"<{v.value}>"


def table(result: Any) -> str:
    """A plain-text table of a SELECT (prefixed IRIs, literal text), or ``true`` / ``false`` for an ASK."""
    if result.kind == "ask":
        return "true" if result.boolean else "false"
    cells: list[Sequence[str]] = [result.variables, *([_short(v) for v in row] for row in result.rows)]
    widths = [max(len(r[i]) for r in cells) for i in range(len(result.variables))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines.append(f"({len(result.rows)} row{'' if len(result.rows) == 1 else 's'})")
    return "\n".join(lines)
