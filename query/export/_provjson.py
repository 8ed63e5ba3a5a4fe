"""Rows back to one PROV-JSON document."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC
from typing import Any

import psycopg

from ledger.core.errors import InvalidArgument
from ledger.core.events import format_time
from ledger.core.provjson import (
    COMMON_PROV_ATTRIBUTES,
    ELEMENT_FORMALS,
    PN_LOCAL,
    RELATIONS,
)
from ledger.core.vocab import PREFIXES
from query._mapping import RELATION_ENDS

from ._names import (
    _FIXED,
    _FIXED_LONGEST_FIRST,
    _NODE_REFS,
    _QNAME_TYPES,
    _RESERVED_EDGE_ATTRIBUTES,
    MAX_STATEMENTS,
    _json_text,
    _qname_iri,
    node_iri,
)
from ._provo import edge_iri, generation_iri, too_large
from ._rows import ExportEdge, ExportNode, ExportPrediction, ExportRow, Scope, read_rows

# --- PROV-JSON ---------------------------------------------------------------------------------


class _QNames:
    """IRIs as PROV-JSON qualified names: fixed prefixes first, else generated ``nsN`` ones."""

    def __init__(self) -> None:
        self.declared: dict[str, str] = dict(PREFIXES)
        self._by_ns: dict[str, str] = {ns: p for p, ns in _FIXED.items()}

    def __call__(self, iri: str) -> str:
        for prefix, ns in _FIXED_LONGEST_FIRST:
            if iri.startswith(ns) and PN_LOCAL.fullmatch(iri[len(ns) :]):
                return f"{prefix}:{iri[len(ns) :]}"
        ns, local = _split(iri)
        prefix = self._by_ns.get(ns)
        if prefix is None:
            prefix = f"ns{len(self._by_ns) - len(_FIXED) + 1}"
            self._by_ns[ns] = prefix
            self.declared[prefix] = ns
        return f"{prefix}:{local}"


def _split(iri: str) -> tuple[str, str]:
    cut = max(iri.rfind("#"), iri.rfind("/"))
    if 0 < cut < len(iri) - 1 and PN_LOCAL.fullmatch(iri[cut + 1 :]):
        return iri[: cut + 1], iri[cut + 1 :]
    for start in range(iri.find(":") + 1, len(iri)):
        if PN_LOCAL.fullmatch(iri[start:]):
            return iri[:start], iri[start:]
    raise InvalidArgument(f"{iri!r} cannot be written as a PROV-JSON qualified name", hint="export it as RDF instead")


def _prov_value(value: Any) -> Any:
    """A valid PROV-JSON value for ``value`` (None: drop it)."""
    if isinstance(value, list):
        items = [v for v in map(_prov_scalar, value) if v is not None]
        return items or None
    return _prov_scalar(value)


def _prov_scalar(value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("$"), str):
        if set(value) == {"$", "lang"}:
            return dict(value)
        if set(value) == {"$", "type"} and isinstance(value["type"], str) and _qname_iri(value["type"]):
            if value["type"] not in _QNAME_TYPES or _qname_iri(value["$"]):
                return dict(value)
            return value["$"]
        if set(value) == {"$", "type"}:
            return value["$"]
    return _json_text(value)


class _ProvJson:
    """Builds one PROV-JSON document from projection rows."""

    def __init__(self, max_statements: int) -> None:
        self.q = _QNames()
        self.sections: dict[str, dict[str, dict[str, Any]]] = {}
        self.count = 0
        self.max = max_statements

    def add(self, section: str, sid: str, attrs: dict[str, Any]) -> None:
        self.count += 1
        if self.count > self.max:
            raise too_large("PROV statements", self.max)
        self.sections.setdefault(section, {})[sid] = attrs

    def attributes(self, attrs: Mapping[str, Any], allowed_prov: frozenset[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in attrs.items():
            if name.startswith("prov:") and name not in allowed_prov:
                continue
            v = _prov_value(value)
            if v is not None:
                out[self.q(node_iri(name))] = v
        return out

    def node(self, n: ExportNode) -> None:
        if n.node_type in ELEMENT_FORMALS:
            allowed = COMMON_PROV_ATTRIBUTES | frozenset(ELEMENT_FORMALS[n.node_type])
            self.add(n.node_type, self.q(node_iri(n.id)), self.attributes(n.attributes, allowed))

    def edge(self, e: ExportEdge) -> None:
        src_attr, dst_attr = RELATION_ENDS[e.relation]
        required, optional = RELATIONS[e.relation]
        formal = frozenset(required + optional)
        plain = {k: v for k, v in e.attributes.items() if k not in _NODE_REFS and k not in _RESERVED_EDGE_ATTRIBUTES}
        attrs = {src_attr: self.q(node_iri(e.src)), dst_attr: self.q(node_iri(e.dst))}
        attrs.update(self.attributes(plain, COMMON_PROV_ATTRIBUTES | formal))
        for name in _NODE_REFS & formal:
            if isinstance(e.attributes.get(name), str):
                attrs[name] = self.q(node_iri(e.attributes[name]))
        for name, ordinal in (("prov:generation", e.generation), ("prov:usage", e.usage)):
            if ordinal is not None and name in formal:
                attrs[name] = self.q(edge_iri(e.seq, ordinal))
        attrs["provault:seq"] = e.seq
        if e.origin != "prov":
            attrs["provault:origin"] = e.origin
        self.add(e.relation, self.q(edge_iri(e.seq, e.ordinal)), attrs)

    def prediction(self, p: ExportPrediction) -> None:
        pid = self.q(node_iri(p.id))
        attrs: dict[str, Any] = {"prov:type": {"$": "provault:Prediction", "type": "prov:QUALIFIED_NAME"}}
        for name, value in (("provault:input", p.input), ("provault:output", p.output)):
            if value is not None:
                attrs[name] = value if isinstance(value, (bool, int, float, str)) else _json_text(value)
        entities = self.sections.setdefault("entity", {})
        if pid not in entities:
            self.count += 1
        entities[pid] = {**entities.get(pid, {}), **attrs}  # a later seq's row wins, as for nodes
        if p.linked:
            self.add(
                "wasGeneratedBy",
                self.q(generation_iri(p.id, p.seq)),
                {
                    "prov:entity": pid,
                    "prov:activity": self.q(node_iri(p.activity)),
                    "prov:time": format_time(p.time.astimezone(UTC)),
                    "provault:seq": p.seq,
                },
            )

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"prefix": dict(self.q.declared)}
        for section in ("entity", "activity", "agent", *RELATIONS):
            if self.sections.get(section):
                doc[section] = self.sections[section]
        return doc


def prov_json_document(
    conn: psycopg.Connection,
    *,
    node_ids: Sequence[str] | None = None,
    as_of_seq: int | None = None,
    max_statements: int = MAX_STATEMENTS,
) -> dict[str, Any]:
    """The graph (or the subgraph of ``node_ids``) as of ``as_of_seq`` as one PROV-JSON document."""
    return prov_json_from_rows(read_rows(conn, Scope.of(node_ids, as_of_seq)), max_statements=max_statements)


def prov_json_from_rows(rows: Iterable[ExportRow], *, max_statements: int = MAX_STATEMENTS) -> dict[str, Any]:
    """One PROV-JSON document from projection rows (pure)."""
    b = _ProvJson(max_statements)
    for row in rows:
        if isinstance(row, ExportNode):
            b.node(row)
        elif isinstance(row, ExportEdge):
            b.edge(row)
        else:
            b.prediction(row)
    return b.document()
