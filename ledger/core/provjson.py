"""Validate PROV-JSON documents (W3C Member Submission, 24 April 2013).

An event's ``prov`` member is a PROV-JSON document::

    {"prefix": {"ex": "https://example.org/"},
     "entity": {"ex:data": {"prov:type": "ex:Dataset"}},
     "activity": {"ex:run": {"prov:startTime": "2026-11-23T01:55:25Z"}},
     "used": {"_:u1": {"prov:activity": "ex:run", "prov:entity": "ex:data"}}}

What :func:`validate_prov` enforces, beyond the submission's shape:

* every qualified name uses a declared prefix, a predefined one (``prov``,
  ``xsd``) or, for a name without a colon, a declared ``default``; ``prov``
  and ``xsd`` may only be declared with their standard IRIs;
* element ids are qualified names; relation ids may also be blank nodes
  (``_:name``), as writers emit them for anonymous relations;
* each relation carries its required formal attributes (PROV-DM) and no
  formal attribute that belongs to another statement kind; formal
  attributes hold one qualified name (``hadMember`` may list several
  entities) or, for times, one ``xsd:dateTime`` string with a timezone;
* other ``prov:`` attributes are limited to label, location, role, type, value;
* attribute values are strings, finite numbers, booleans, value objects
  (``"$"`` with a lexical form, plus ``"type"``, ``"lang"`` or both; a
  language tag goes with no datatype or with ``prov:InternationalizedString``,
  never with ``rdf:langString`` as a datatype)
  or non-empty arrays of those; ``null`` is refused;
* an id maps to one statement object or, for several statements that share
  it, to a non-empty array of them (the submission's form; PROV merges them);
* ``bundle`` is refused: provenance of provenance is the ledger's own job.

Every document these rules accept is read without a warning by the
independent reader ``prov`` (trungdong/prov); tests check that property on
generated documents.  Where the reader is lenient (times without a timezone,
``null`` values it drops) these rules are stricter.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .errors import InvalidProvDocument, expected_found

PROV_NS = "http://www.w3.org/ns/prov#"
XSD_NS = "http://www.w3.org/2001/XMLSchema#"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
PREDEFINED_PREFIXES: Mapping[str, str] = MappingProxyType({"prov": PROV_NS, "xsd": XSD_NS})

ELEMENT_SECTIONS = ("entity", "activity", "agent")

# Relation section -> (required formal attributes, optional formal attributes), per PROV-DM.
RELATIONS: Mapping[str, tuple[tuple[str, ...], tuple[str, ...]]] = MappingProxyType(
    {
        "wasGeneratedBy": (("prov:entity",), ("prov:activity", "prov:time")),
        "used": (("prov:activity",), ("prov:entity", "prov:time")),
        "wasInformedBy": (("prov:informed", "prov:informant"), ()),
        "wasStartedBy": (("prov:activity",), ("prov:trigger", "prov:starter", "prov:time")),
        "wasEndedBy": (("prov:activity",), ("prov:trigger", "prov:ender", "prov:time")),
        "wasInvalidatedBy": (("prov:entity",), ("prov:activity", "prov:time")),
        "wasDerivedFrom": (
            ("prov:generatedEntity", "prov:usedEntity"),
            ("prov:activity", "prov:generation", "prov:usage"),
        ),
        "wasAttributedTo": (("prov:entity", "prov:agent"), ()),
        "wasAssociatedWith": (("prov:activity",), ("prov:agent", "prov:plan")),
        "actedOnBehalfOf": (("prov:delegate", "prov:responsible"), ("prov:activity",)),
        "wasInfluencedBy": (("prov:influencee", "prov:influencer"), ()),
        "specializationOf": (("prov:specificEntity", "prov:generalEntity"), ()),
        "alternateOf": (("prov:alternate1", "prov:alternate2"), ()),
        "hadMember": (("prov:collection", "prov:entity"), ()),
    }
)
ELEMENT_FORMALS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "entity": (),
        "activity": ("prov:startTime", "prov:endTime"),
        "agent": (),
    }
)
SECTIONS = ELEMENT_SECTIONS + tuple(RELATIONS)
TIME_ATTRIBUTES = frozenset({"prov:time", "prov:startTime", "prov:endTime"})
COMMON_PROV_ATTRIBUTES = frozenset({"prov:label", "prov:location", "prov:role", "prov:type", "prov:value"})
# PROV-DM's datatype of strings with an optional language tag (RDF's rdf:langString, which
# always has one, is written with "lang" alone; the prov reader does not take it as a "type").
INTERNATIONALIZED_STRING = PROV_NS + "InternationalizedString"
_RDF_LANG_STRING = RDF_NS + "langString"
QNAME_TYPES = frozenset({XSD_NS + "QName", PROV_NS + "QUALIFIED_NAME"})
_VALUE_MEMBERS = frozenset({"$", "type", "lang"})

# PROV-N name characters ([53]-[55]; the XML NCName ranges).  A local part is
# made of these, PN_CHARS_OTHER, the backslash-escapable metacharacters and
# %XX escapes, and may not start with a combining mark: anything else cannot
# be written in PROV-N without changing the IRI, so readers refuse it.
_PN_BASE = (
    "A-Za-z\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u02ff\u0370-\u037d\u037f-\u1fff\u200c-\u200d"
    "\u2070-\u218f\u2c00-\u2fef\u3001-\ud7ff\uf900-\ufdcf\ufdf0-\ufffd\U00010000-\U000effff"
)
_PN_MARKS = "\u00b7\u0300-\u036f\u203f-\u2040"
_PN_LOCAL_CHARS = _PN_BASE + _PN_MARKS + "_0-9\\-." + "/@~&+*?#$!" + "='(),:;\\[\\]"
PN_LOCAL = re.compile(f"(?![{_PN_MARKS}])(?:[{_PN_LOCAL_CHARS}]|%[0-9A-Fa-f]{{2}})+")
_PREFIX = re.compile(r"[A-Za-z]([A-Za-z0-9_.-]*[A-Za-z0-9_-])?")
_IRI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s<>\"{}|^`\\]*")
_LANG = re.compile(r"[A-Za-z]{1,8}(-[A-Za-z0-9]{1,8})*")
_XSD_DATETIME = re.compile(
    r"-?\d{4,}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d+)?(Z|[+-](0\d|1[0-4]):[0-5]\d)"
)


# --- locations ------------------------------------------------------------------


def _at(path: str, key: str) -> str:
    if key.isascii() and key.isidentifier():  # [A-Za-z_][A-Za-z0-9_]*
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def _fail(path: str, message: str, hint: str | None = None) -> InvalidProvDocument:
    return InvalidProvDocument(f"{path}: {message}", field=path, hint=hint)


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "array"
    return type(value).__name__


def _object(value: Any, path: str, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise _fail(path, expected_found(what, "a JSON object", json_type(value)))
    return value


# --- names ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class _Names:
    """The prefixes in scope for one document."""

    prefixes: Mapping[str, str]
    default: str | None

    def check(self, name: Any, path: str, what: str, *, blank_ok: bool = False) -> str:
        if not isinstance(name, str):
            raise _fail(path, expected_found(what, "a qualified name string", json_type(name)))
        if name.startswith("_:"):
            if blank_ok and PN_LOCAL.fullmatch(name[2:]):
                return name
            raise _fail(
                path,
                f"{what} {name!r} is a blank node; only relation ids may be blank nodes",
                hint="give elements a qualified name with a declared prefix",
            )
        prefix, colon, local = name.partition(":")
        if not colon:
            if self.default is None:
                raise _fail(
                    path,
                    f"{what} {name!r} has no prefix and no default namespace is declared",
                    hint="write prefix:name with a prefix declared in 'prefix'",
                )
            prefix, local = "", name
        elif prefix not in self.prefixes:
            raise _fail(
                path,
                f"{what} {name!r} uses the undeclared prefix {prefix!r}",
                hint=f'declare it in \'prefix\', e.g. "{prefix}": "https://example.org/{prefix}/"',
            )
        if not local or not PN_LOCAL.fullmatch(local):
            raise _fail(
                path,
                expected_found(f"local part of {what} {name!r}", "PROV-N name characters", repr(local)),
                hint="use letters, digits and _-./@~&+*?#$!='(),:;[] or %XX escapes",
            )
        return name

    def expand(self, name: str) -> str:
        if name.startswith("_:"):
            return name
        prefix, colon, local = name.partition(":")
        if not colon:
            return f"{self.default}{name}"
        return self.prefixes[prefix] + local


def _names(doc: Mapping[str, Any], path: str) -> _Names:
    declared = _object(doc.get("prefix", {}), _at(path, "prefix"), "prefix")
    prefixes = dict(PREDEFINED_PREFIXES)
    default = None
    for p, iri in declared.items():
        where = _at(_at(path, "prefix"), p)
        if not isinstance(iri, str) or not _IRI.fullmatch(iri):
            raise _fail(
                where, expected_found(f"namespace IRI of prefix {p!r}", "an absolute IRI string", repr(iri)[:120])
            )
        if p == "default":
            default = iri
            continue
        if not _PREFIX.fullmatch(p) or p == "_":
            raise _fail(
                where, expected_found("prefix name", "letters, digits, '_', '.', '-', starting with a letter", repr(p))
            )
        if p in PREDEFINED_PREFIXES and iri != PREDEFINED_PREFIXES[p]:
            raise _fail(where, expected_found(f"IRI of predefined prefix {p!r}", PREDEFINED_PREFIXES[p], iri))
        prefixes[p] = iri
    return _Names(prefixes=MappingProxyType(prefixes), default=default)


# --- values -----------------------------------------------------------------------


def _check_literal(value: Any, names: _Names, path: str) -> None:
    if value is None:
        raise _fail(path, "null is not a PROV value", hint="omit the attribute instead")
    if isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _fail(path, expected_found("number", "a finite number", value))
        return
    if isinstance(value, Mapping):
        _check_value_object(value, names, path)
        return
    raise _fail(
        path, expected_found("attribute value", 'string, number, boolean or {"$": ...} object', json_type(value))
    )


def _check_value_object(value: Mapping[str, Any], names: _Names, path: str) -> None:
    keys = set(value)
    if "$" not in keys or not keys <= _VALUE_MEMBERS:
        raise _fail(
            path,
            expected_found("value object members", '"$" with "type", "lang" or both', sorted(map(str, keys))),
            hint='write {"$": "10", "type": "xsd:int"} or {"$": "bonjour", "lang": "fr"}',
        )
    text = value["$"]
    if not isinstance(text, str):
        raise _fail(_at(path, "$"), expected_found('value object "$"', "a string", json_type(text)))
    datatype = names.check(value["type"], _at(path, "type"), "datatype") if "type" in keys else None
    datatype_iri = names.expand(datatype) if datatype is not None else None
    if "lang" in keys:
        lang = value["lang"]
        if not isinstance(lang, str) or not _LANG.fullmatch(lang):
            raise _fail(_at(path, "lang"), expected_found("language tag", "a BCP 47 tag like en or en-GB", repr(lang)))
        if datatype is not None and datatype_iri != INTERNATIONALIZED_STRING:
            raise _fail(
                _at(path, "type"),
                f"a language tag goes with prov:InternationalizedString, not with the datatype {datatype}",
                hint='drop "type": {"$": "bonjour", "lang": "fr"} is a language-tagged string',
            )
        return
    if datatype_iri == _RDF_LANG_STRING:
        raise _fail(
            _at(path, "type"),
            f"{datatype} is written as a language tag, not as a datatype",
            hint='write {"$": "bonjour", "lang": "fr"}',
        )
    if datatype_iri in QNAME_TYPES:
        names.check(text, _at(path, "$"), "qualified name value")
    elif datatype_iri == XSD_NS + "dateTime" and not _XSD_DATETIME.fullmatch(text):
        raise _fail(
            _at(path, "$"),
            expected_found("xsd:dateTime", "one with a timezone, e.g. 2026-11-23T01:55:25Z", repr(text)[:80]),
        )


def _check_values(value: Any, names: _Names, path: str) -> None:
    if isinstance(value, (list, tuple)):
        if not value:
            raise _fail(path, "an attribute array must not be empty", hint="omit the attribute instead")
        for i, item in enumerate(value):
            _check_literal(item, names, f"{path}[{i}]")
        return
    _check_literal(value, names, path)


def _check_time(value: Any, path: str) -> None:
    if not isinstance(value, str) or not _XSD_DATETIME.fullmatch(value):
        raise _fail(
            path,
            expected_found(
                "time", "an xsd:dateTime string with a timezone, e.g. 2026-11-23T01:55:25Z", repr(value)[:80]
            ),
        )


def _check_formal(section: str, attr: str, value: Any, names: _Names, path: str) -> None:
    if attr in TIME_ATTRIBUTES:
        _check_time(value, path)
        return
    if section == "hadMember" and attr == "prov:entity" and isinstance(value, (list, tuple)):
        if not value:
            raise _fail(path, "hadMember lists no entity")
        for i, item in enumerate(value):
            names.check(item, f"{path}[{i}]", "member")
        return
    names.check(value, path, f"{attr} reference")


# --- statements ---------------------------------------------------------------------


def _formals(section: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if section in RELATIONS:
        return RELATIONS[section]
    return (), ELEMENT_FORMALS[section]


def _check_statement(section: str, attrs: Mapping[str, Any], names: _Names, path: str) -> None:
    required, optional = _formals(section)
    for attr in required:
        if attr not in attrs:
            raise _fail(path, f"{section} requires {attr}", hint=f"{section} needs {', '.join(required)}")
    for attr, value in attrs.items():
        where = _at(path, attr)
        if attr in required or attr in optional:
            _check_formal(section, attr, value, names, where)
            continue
        names.check(attr, where, "attribute name")
        if attr.startswith("prov:") and attr not in COMMON_PROV_ATTRIBUTES:
            allowed = sorted(set(required) | set(optional) | COMMON_PROV_ATTRIBUTES)
            raise _fail(
                where,
                f"{attr} is not an attribute of {section}",
                hint=f"allowed prov: attributes: {', '.join(allowed)}",
            )
        _check_values(value, names, where)


def _statement_objects(section: str, sid: str, body: Any, path: str) -> list[tuple[str, Mapping[str, Any]]]:
    """The statement objects under one id, with their locations: one object, or an array of them."""
    if not isinstance(body, (list, tuple)):
        return [(path, _object(body, path, f"{section} {sid}"))]
    if not body:
        raise _fail(path, f"{section} {sid!r} lists no statement", hint="give one statement object, or omit the id")
    return [(f"{path}[{i}]", _object(item, f"{path}[{i}]", f"{section} {sid}")) for i, item in enumerate(body)]


def _check_section(section: str, body: Any, names: _Names, path: str) -> None:
    statements = _object(body, path, section)
    for sid, attrs in statements.items():
        where = _at(path, sid)
        names.check(sid, where, f"{section} id", blank_ok=section in RELATIONS)
        for at, obj in _statement_objects(section, sid, attrs, where):
            _check_statement(section, obj, names, at)


def validate_prov(doc: Any, *, path: str = "$") -> None:
    """Return None when ``doc`` is a valid PROV-JSON document, else raise InvalidProvDocument.

    The error's ``field`` (and message prefix) is a JSON-path-like location,
    e.g. ``$.used['_:u1']['prov:activity']``.
    """
    doc = _object(doc, path, "PROV-JSON document")
    if "bundle" in doc:
        raise _fail(
            _at(path, "bundle"),
            "PROV bundles are not supported",
            hint="put the statements at the top level; the ledger records who asserted them",
        )
    for key in doc:
        if key != "prefix" and key not in SECTIONS:
            raise _fail(
                _at(path, key), f"unknown PROV-JSON section {key!r}", hint=f"sections are prefix, {', '.join(SECTIONS)}"
            )
    names = _names(doc, path)
    for section in SECTIONS:
        if section in doc:
            _check_section(section, doc[section], names, _at(path, section))


# --- iteration ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Statement:
    """One element or relation of a validated document.

    ``refs`` lists the formal attributes that name other statements, in
    PROV-DM order, as ``(attribute, qualified name)`` pairs (a ``hadMember``
    with several entities yields one pair per member).  ``attributes`` is the
    statement's object, read-only.
    """

    section: str
    id: str
    refs: tuple[tuple[str, str], ...]
    attributes: Mapping[str, Any] = field(hash=False)

    @property
    def is_relation(self) -> bool:
        return self.section in RELATIONS


def _refs(section: str, attrs: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    required, optional = _formals(section)
    pairs: list[tuple[str, str]] = []
    for attr in required + optional:
        if attr in attrs and attr not in TIME_ATTRIBUTES:
            value = attrs[attr]
            items = value if isinstance(value, (list, tuple)) else (value,)
            pairs.extend((attr, item) for item in items)
    return tuple(pairs)


def iter_statements(doc: Mapping[str, Any], *, validated: bool = False) -> Iterator[Statement]:
    """Validate ``doc`` (unless ``validated``: an Event's ``prov`` was) and yield its statements in a stable order.

    Order: entity, activity, agent, then relations in :data:`RELATIONS`
    order; within a section, ids in code-point order; several statements
    that share an id, in array order (one :class:`Statement` each).
    """
    if not validated:
        validate_prov(doc)
    for section in SECTIONS:
        body = doc.get(section, {})
        for sid in sorted(body):
            for _, attrs in _statement_objects(section, sid, body[sid], sid):
                yield Statement(
                    section=section, id=sid, refs=_refs(section, attrs), attributes=MappingProxyType(dict(attrs))
                )


def expand_name(doc: Mapping[str, Any], name: str) -> str:
    """The IRI a qualified name of ``doc`` stands for (blank nodes are returned unchanged)."""
    names = _names(doc, "$")
    names.check(name, "$", "name", blank_ok=True)
    return names.expand(name)


def prefixes(doc: Mapping[str, Any]) -> Mapping[str, str]:
    """Declared and predefined prefixes of ``doc`` (``default`` excluded)."""
    return _names(doc, "$").prefixes


__all__ = [
    "ELEMENT_SECTIONS",
    "INTERNATIONALIZED_STRING",
    "PREDEFINED_PREFIXES",
    "PROV_NS",
    "QNAME_TYPES",
    "RDF_NS",
    "RELATIONS",
    "SECTIONS",
    "Statement",
    "XSD_NS",
    "expand_name",
    "iter_statements",
    "prefixes",
    "validate_prov",
]
