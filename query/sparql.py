"""Read-only SPARQL over the PROV-O view of the graph, with row and time limits.

:func:`run_sparql` answers a SPARQL 1.1 SELECT or ASK query over the same
triples as the RDF exports (:mod:`query.export`): the whole graph or the
subgraph of some nodes, as the ledger stood at a seq.

Read-only by parsing: the text must parse as a query (``rdflib``'s SPARQL
grammar); an update (INSERT, DELETE, LOAD, CLEAR, DROP, CREATE, ADD, MOVE,
COPY) is refused with InvalidArgument naming its form, and so are CONSTRUCT,
DESCRIBE, SERVICE (federation would call out to the network) and FROM /
FROM NAMED (rdflib would fetch those graphs).  Evaluation happens on a private
in-memory copy of the graph in any case.

Limits:

* **rows**: at most ``max_rows`` SELECT solutions come back; ``truncated``
  says when there were more.  rdflib yields solutions lazily, so a query with
  many solutions stops early (ORDER BY, DISTINCT and aggregates still
  evaluate everything first -- the time limit covers those).
* **time**: reading the rows, building the graph and evaluating must finish
  within ``timeout_s`` of the worker process starting, or
  :class:`QueryTimeout` (each database fetch also gets that statement
  timeout).
  A thread cannot be stopped and rdflib can stall between two solutions for
  as long as a cartesian product takes, so the graph is built and queried in
  a child process that is killed at the deadline.  Children come from a
  ``forkserver`` (started once, with rdflib preloaded): forking the caller,
  a multi-threaded gRPC server, would be unsafe.  The parent streams the
  triples to the child as it reads them, so it never holds the graph itself.
* **size**: graphs above ``max_triples`` (:data:`query.export.MAX_TRIPLES`)
  are refused with :class:`~query.export.GraphTooLarge` before the child has
  built them; narrow the scope.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import psycopg
from pyparsing import ParseException, ParseResults
from rdflib import BNode, Graph, Literal, URIRef
from rdflib.plugins import sparql as rdflib_sparql
from rdflib.plugins.sparql.parser import parseQuery, parseUpdate
from rdflib.plugins.sparql.parserutils import CompValue
from rdflib.plugins.sparql.processor import prepareQuery

from ledger.core.errors import InvalidArgument, ProvaultError

from .export import (
    MAX_TRIPLES,
    NAMESPACES,
    RDF_NS,
    XSD_STRING,
    Scope,
    Triple,
    rdflib_term,
    read_rows,
    too_large,
    triples,
)

DEFAULT_MAX_ROWS = 10_000
DEFAULT_TIMEOUT_S = 10.0
MAX_QUERY_CHARS = 65_536
SEND_TRIPLES = 5000
"""Triples per message to the evaluating child."""

_UPDATE_FORMS = {
    "InsertData": "INSERT DATA",
    "DeleteData": "DELETE DATA",
    "DeleteWhere": "DELETE WHERE",
    "Load": "LOAD",
    "Clear": "CLEAR",
    "Drop": "DROP",
    "Create": "CREATE",
    "Add": "ADD",
    "Move": "MOVE",
    "Copy": "COPY",
}
_QUERY_KINDS = {"SelectQuery": "select", "AskQuery": "ask", "ConstructQuery": "CONSTRUCT", "DescribeQuery": "DESCRIBE"}
_RDF_LANGSTRING = RDF_NS + "langString"


class QueryTimeout(ProvaultError):
    """The query did not finish within its time limit (it was stopped)."""

    reason = "query_timeout"


class QueryFailed(ProvaultError):
    """The evaluating process ended without an answer (killed, out of memory)."""

    reason = "query_failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class RdfValue:
    """One RDF term of a solution.  Literals carry their datatype IRI (RDF 1.1:
    ``xsd:string`` for simple literals, ``rdf:langString`` with a ``lang``)."""

    type: str
    """``iri``, ``literal`` or ``bnode``."""
    value: str
    """The IRI, the literal's lexical form, or the blank node's label (stable within one result)."""
    datatype: str | None = None
    lang: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class SparqlResult:
    """The answer: ``variables`` and ``rows`` for a SELECT (None where unbound), ``boolean`` for an ASK."""

    kind: str
    """``select`` or ``ask``."""
    variables: tuple[str, ...] = ()
    rows: tuple[tuple[RdfValue | None, ...], ...] = ()
    boolean: bool | None = None
    truncated: bool = False
    """True when ``max_rows`` cut the solutions short."""
    graph_triples: int = 0
    """The number of triples the query ran over."""


# --- checking a query (parent, no database) --------------------------------------------------


def _walk(node: Any) -> Iterator[CompValue]:
    if isinstance(node, CompValue):
        yield node
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, (list, tuple, ParseResults)):
        for value in node:
            yield from _walk(value)


def _update_forms(text: str) -> list[str] | None:
    try:
        parsed = parseUpdate(text)
    except Exception:
        return None
    forms = []
    for request in parsed.request:
        if request.name == "Modify":
            forms.append("/".join(k.upper() for k in ("delete", "insert") if k in request) or "MODIFY")
        else:
            forms.append(_UPDATE_FORMS.get(request.name, request.name.upper()))
    return forms


def check_query(query: str) -> str:
    """``select`` or ``ask`` for an allowed query; InvalidArgument naming what is refused otherwise."""
    if not isinstance(query, str) or not query.strip():
        raise InvalidArgument("query: expected a SPARQL SELECT or ASK query, found an empty string")
    if len(query) > MAX_QUERY_CHARS:
        raise InvalidArgument(f"query: expected at most {MAX_QUERY_CHARS} characters, found {len(query)}")
    try:
        parsed = parseQuery(query)
    except ParseException as e:
        forms = _update_forms(query)
        if forms:
            raise InvalidArgument(
                f"SPARQL updates are refused: the request is {', '.join(forms)}; this endpoint is read-only",
                hint="send a SELECT or ASK query",
            ) from None
        raise InvalidArgument(f"query is not valid SPARQL: {e.msg} (line {e.lineno}, column {e.col})") from None
    kind = _QUERY_KINDS.get(parsed[1].name, parsed[1].name)
    if kind not in ("select", "ask"):
        raise InvalidArgument(f"{kind} queries are refused: this endpoint answers SELECT and ASK", hint="use SELECT")
    for part in _walk(parsed):
        if part.name == "ServiceGraphPattern":
            raise InvalidArgument("SERVICE clauses are refused: the endpoint never calls out to other endpoints")
        if part.name == "DatasetClause":
            raise InvalidArgument(
                "FROM / FROM NAMED are refused: the query runs over the PROV graph only", hint="drop the FROM clause"
            )
    try:
        prepareQuery(query, initNs=dict(NAMESPACES))
    except Exception as e:
        raise InvalidArgument(f"query cannot be prepared: {e}") from None
    return kind


# --- evaluating (child process) ------------------------------------------------------------------


def _value(term: Any) -> tuple[str, str, str | None, str | None] | None:
    if term is None:
        return None
    if isinstance(term, Literal):
        datatype = str(term.datatype) if term.datatype else (_RDF_LANGSTRING if term.language else XSD_STRING)
        return ("literal", str(term), datatype, term.language)
    if isinstance(term, BNode):
        return ("bnode", str(term), None, None)
    if isinstance(term, URIRef):
        return ("iri", str(term), None, None)
    return ("literal", str(term), XSD_STRING, None)


def _evaluate(graph: Graph, query: str, max_rows: int) -> tuple[Any, ...]:
    result = graph.query(prepareQuery(query, initNs=dict(NAMESPACES)))
    if result.type == "ASK":
        return ("ask", bool(result.askAnswer))
    variables = tuple(str(v) for v in (result.vars or ()))
    rows: list[tuple[Any, ...]] = []
    truncated = False
    for row in result:
        if len(rows) == max_rows:
            truncated = True
            break
        rows.append(tuple(_value(row[v]) for v in variables))
    return ("select", variables, tuple(rows), truncated)


def _child_main(pipe: Connection, query: str, max_rows: int) -> None:
    """Entry point of the evaluating process: triples in, one answer out."""
    rdflib_sparql.SPARQL_LOAD_GRAPHS = False
    terms: dict[Any, Any] = {}  # one rdflib object per distinct term: faster, and the graph shares them

    def term(t: Any) -> Any:
        found = terms.get(t)
        if found is None:
            found = terms[t] = rdflib_term(t)
        return found

    try:
        graph = Graph()
        while (chunk := pipe.recv()) is not None:
            for s, p, o in chunk:
                graph.add((term(s), term(p), term(o)))
        terms.clear()
        pipe.send(("ok", _evaluate(graph, query, max_rows)))
    except (EOFError, OSError):  # the parent gave up
        return
    except Exception as e:
        pipe.send(("error", f"{type(e).__name__}: {e}"[:2000]))


_CONTEXT: Any = None


def _context() -> Any:
    global _CONTEXT
    if _CONTEXT is None:
        methods = multiprocessing.get_all_start_methods()
        ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
        if "forkserver" in methods:
            ctx.set_forkserver_preload(["query.sparql"])
        _CONTEXT = ctx
    return _CONTEXT


# --- the entry point --------------------------------------------------------------------------


def _timeout(timeout_s: float) -> QueryTimeout:
    return QueryTimeout(
        f"the query did not finish within {timeout_s:g} s and was stopped",
        hint="narrow the scope (some nodes, an earlier as-of), add selective patterns, or raise the time limit",
    )


def _check_limits(max_rows: int, timeout_s: float, max_triples: int) -> None:
    if isinstance(max_rows, bool) or not isinstance(max_rows, int) or max_rows < 1:
        raise InvalidArgument(f"max_rows: expected at least 1, found {max_rows!r}")
    if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise InvalidArgument(f"timeout_s: expected a positive number of seconds, found {timeout_s!r}")
    if isinstance(max_triples, bool) or not isinstance(max_triples, int) or max_triples < 1:
        raise InvalidArgument(f"max_triples: expected at least 1, found {max_triples!r}")


def _feed(pipe: Connection, source: Iterator[Triple], deadline: float, max_triples: int) -> int:
    count = 0
    batch: list[Triple] = []
    for t in source:
        batch.append(t)
        count += 1
        if count > max_triples:
            raise too_large("triples", max_triples)
        if len(batch) == SEND_TRIPLES:
            if time.monotonic() > deadline:
                raise QueryTimeout("")
            pipe.send(batch)
            batch = []
    pipe.send(batch)
    pipe.send(None)
    return count


def _answer(message: tuple[Any, ...], graph_triples: int) -> SparqlResult:
    if message[0] == "error":
        raise InvalidArgument(f"the query failed during evaluation: {message[1]}")
    result = message[1]
    if result[0] == "ask":
        return SparqlResult(kind="ask", boolean=result[1], graph_triples=graph_triples)
    _, variables, rows, truncated = result
    values = tuple(
        tuple(None if v is None else RdfValue(type=v[0], value=v[1], datatype=v[2], lang=v[3]) for v in row)
        for row in rows
    )
    return SparqlResult(
        kind="select", variables=variables, rows=values, truncated=truncated, graph_triples=graph_triples
    )


def run_sparql(
    conn: psycopg.Connection,
    query: str,
    *,
    node_ids: Sequence[str] | None = None,
    as_of_seq: int | None = None,
    max_rows: int = DEFAULT_MAX_ROWS,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_triples: int = MAX_TRIPLES,
) -> SparqlResult:
    """Answer a read-only SELECT / ASK over the PROV-O graph (or the subgraph of ``node_ids``) as of a seq.

    Raises InvalidArgument (refused or invalid query, bad limits), GraphTooLarge,
    QueryTimeout, QueryFailed, StorageUnavailable.
    """
    _check_limits(max_rows, timeout_s, max_triples)
    check_query(query)
    scope = Scope.of(node_ids, as_of_seq)
    parent, child = _context().Pipe(duplex=True)
    proc = _context().Process(target=_child_main, args=(child, query, max_rows), name="provault-sparql", daemon=True)
    proc.start()  # the first start also starts the forkserver (rdflib import): not counted against the query
    child.close()
    deadline = time.monotonic() + timeout_s
    rows = read_rows(conn, scope, statement_timeout_ms=int(timeout_s * 1000) + 1)
    try:
        count = _feed(parent, triples(rows), deadline, max_triples)
        if not parent.poll(max(0.0, deadline - time.monotonic())):
            raise _timeout(timeout_s)
        return _answer(parent.recv(), count)
    except QueryTimeout:
        raise _timeout(timeout_s) from None
    except psycopg.errors.QueryCanceled:
        raise _timeout(timeout_s) from None
    except (EOFError, BrokenPipeError, ConnectionResetError):
        proc.join(1)
        raise QueryFailed(
            f"the query process ended without an answer (exit code {proc.exitcode})",
            hint="the graph or the query may need more memory than allowed; narrow the scope",
        ) from None
    finally:
        rows.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        parent.close()


__all__ = [
    "DEFAULT_MAX_ROWS",
    "DEFAULT_TIMEOUT_S",
    "QueryFailed",
    "QueryTimeout",
    "RdfValue",
    "SparqlResult",
    "check_query",
    "run_sparql",
]
