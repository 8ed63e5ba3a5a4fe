"""PROV-JSON validation, statement iteration, and agreement with the independent `prov` reader."""

from __future__ import annotations

import copy
import json
import warnings
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.errors import InvalidEvent, InvalidProvDocument
from ledger.core.ids import content_id
from ledger.core.provjson import RELATIONS, expand_name, iter_statements, validate_prov

DATASET = content_id(b"train.parquet bytes")
MODEL = content_id(b"model.safetensors bytes")


def training_run() -> dict[str, Any]:
    """A training run that used a dataset, was run by a person, and generated a model."""
    return {
        "prefix": {"pv": "urn:provault:", "sha256": "urn:sha256:", "people": "https://people.example.org/"},
        "entity": {
            DATASET: {"prov:type": {"$": "pv:Dataset", "type": "xsd:QName"}, "prov:label": "imagenet-subset"},
            MODEL: {
                "prov:type": {"$": "pv:Model", "type": "xsd:QName"},
                "pv:framework": "pytorch",
                "pv:sizeBytes": 523_000_000,
                "pv:accuracy": 0.913,
                "pv:tags": ["resnet", {"$": "vision", "lang": "en"}],
            },
        },
        "activity": {
            "pv:run/0190c8a2": {
                "prov:type": {"$": "pv:TrainingRun", "type": "xsd:QName"},
                "prov:startTime": "2026-11-23T01:00:00Z",
                "prov:endTime": "2026-11-23T01:55:25.123456Z",
            }
        },
        "agent": {"people:alice": {"prov:type": {"$": "prov:Person", "type": "xsd:QName"}}},
        "used": {"_:u1": {"prov:activity": "pv:run/0190c8a2", "prov:entity": DATASET, "prov:role": "pv:training-data"}},
        "wasGeneratedBy": {
            "_:g1": {"prov:entity": MODEL, "prov:activity": "pv:run/0190c8a2", "prov:time": "2026-11-23T01:55:25Z"}
        },
        "wasAssociatedWith": {"_:a1": {"prov:activity": "pv:run/0190c8a2", "prov:agent": "people:alice"}},
        "wasDerivedFrom": {"_:d1": {"prov:generatedEntity": MODEL, "prov:usedEntity": DATASET}},
        "wasAttributedTo": {"_:t1": {"prov:entity": MODEL, "prov:agent": "people:alice"}},
    }


def test_training_run_is_valid() -> None:
    assert validate_prov(training_run()) is None


def test_empty_document_is_valid() -> None:
    validate_prov({})


# --- the independent reader --------------------------------------------------------


def _read_with_prov(doc: dict[str, Any]) -> Any:
    prov_model = pytest.importorskip("prov.model")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # prov warns about what it will reject; treat it as rejection
        return prov_model.ProvDocument.deserialize(content=json.dumps(doc), format="json")


def test_independent_reader_reads_training_run() -> None:
    prov_model = pytest.importorskip("prov.model")
    document = _read_with_prov(training_run())
    records = document.get_records()
    assert len(records) == 9
    model = document.get_record(f"sha256:{MODEL.removeprefix('sha256:')}")[0]
    assert model.identifier.uri == "urn:sha256:" + MODEL.removeprefix("sha256:")
    assert isinstance(model, prov_model.ProvEntity)
    gen = next(iter(document.get_records(prov_model.ProvGeneration)))
    assert str(gen.formal_attributes[0][1]) == MODEL


# --- iteration --------------------------------------------------------------------


def test_iter_statements_stable_order_and_refs() -> None:
    doc = training_run()
    stmts = list(iter_statements(doc))
    assert [s.section for s in stmts] == [
        "entity",
        "entity",
        "activity",
        "agent",
        "wasGeneratedBy",
        "used",
        "wasDerivedFrom",
        "wasAttributedTo",
        "wasAssociatedWith",
    ]
    assert [s.id for s in stmts[:2]] == sorted([DATASET, MODEL])
    used = stmts[5]
    assert used.is_relation and not stmts[0].is_relation
    assert used.refs == (("prov:activity", "pv:run/0190c8a2"), ("prov:entity", DATASET))
    assert stmts[2].refs == ()  # times are not references
    assert list(iter_statements(copy.deepcopy(doc))) == stmts


def test_had_member_lists_members() -> None:
    doc = {
        "prefix": {"ex": "https://example.org/"},
        "hadMember": {"_:m": {"prov:collection": "ex:c", "prov:entity": ["ex:a", "ex:b"]}},
    }
    (stmt,) = iter_statements(doc)
    assert stmt.refs == (("prov:collection", "ex:c"), ("prov:entity", "ex:a"), ("prov:entity", "ex:b"))
    _read_with_prov(doc)


def test_expand_name() -> None:
    doc = training_run()
    assert expand_name(doc, MODEL) == "urn:sha256:" + MODEL.removeprefix("sha256:")
    assert expand_name(doc, "prov:Person") == "http://www.w3.org/ns/prov#Person"
    assert expand_name({"prefix": {"default": "https://d.example/"}}, "x") == "https://d.example/x"
    assert expand_name(doc, "_:u1") == "_:u1"


# --- one test per violation ---------------------------------------------------------


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    doc = training_run()
    target = doc
    for key in path[:-1]:
        target = target.setdefault(key, {})
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()


@pytest.mark.parametrize(
    ("doc", "location", "fragment"),
    [
        ([], "$", "expected a JSON object, found array"),
        ({"bundle": {}}, "$.bundle", "bundles are not supported"),
        ({"mentionOf": {}}, "$.mentionOf", "unknown PROV-JSON section 'mentionOf'"),
        ({"entity": []}, "$.entity", "expected a JSON object, found array"),
        ({"prefix": []}, "$.prefix", "expected a JSON object"),
        ({"prefix": {"ex": "not an iri"}}, "$.prefix.ex", "expected an absolute IRI"),
        ({"prefix": {"1x": "https://x/"}}, "$.prefix['1x']", "expected letters"),
        ({"prefix": {"prov": "https://evil/"}}, "$.prefix.prov", "IRI of predefined prefix 'prov'"),
        ({"entity": {"ex:a": {}}}, "$.entity['ex:a']", "undeclared prefix 'ex'"),
        ({"entity": {"a": {}}}, "$.entity.a", "no default namespace is declared"),
        ({"entity": {"_:a": {}}}, "$.entity['_:a']", "only relation ids may be blank nodes"),
        ({"used": {"_:": {"prov:activity": "prov:a"}}}, "$.used['_:']", "blank node"),
        ({"used": {"_:u": {"prov:activity": "_:a"}}}, "$.used['_:u']['prov:activity']", "blank node"),
        ({"entity": {"prov:": {}}}, "$.entity['prov:']", "local part"),
        ({"entity": {"prov:a b": {}}}, "$.entity['prov:a b']", "local part"),
        ({"entity": {"prov:a\x7f": {}}}, "$.entity['prov:a\\x7f']", "PROV-N name characters"),
        ({"entity": {"prov:\u0301a": {}}}, "$.entity['prov:\u0301a']", "PROV-N name characters"),
        ({"entity": {"prov:100%": {}}}, "$.entity['prov:100%']", "PROV-N name characters"),
        ({"prefix": {"_x": "https://x/"}}, "$.prefix._x", "expected letters"),
        ({"entity": {"prov:a": []}}, "$.entity['prov:a']", "entity 'prov:a' lists no statement"),
        ({"entity": {"prov:a": [{}, "x"]}}, "$.entity['prov:a'][1]", "expected a JSON object, found string"),
        ({"entity": {"prov:a": [{}, [{}]]}}, "$.entity['prov:a'][1]", "expected a JSON object, found array"),
        (
            {"used": {"_:u": [{"prov:activity": "prov:a"}, {"prov:entity": "prov:e"}]}},
            "$.used['_:u'][1]",
            "used requires prov:activity",
        ),
        ({"entity": {"prov:a": "x"}}, "$.entity['prov:a']", "expected a JSON object, found string"),
    ],
)
def test_structure_violations(doc: Any, location: str, fragment: str) -> None:
    with pytest.raises(InvalidProvDocument) as e:
        validate_prov(doc)
    assert e.value.field == location
    assert fragment in str(e.value)
    assert isinstance(e.value, InvalidEvent)


@pytest.mark.parametrize(
    ("path", "value", "location", "fragment"),
    [
        (("used", "_:u1", "prov:activity"), _DELETE, "$.used['_:u1']", "used requires prov:activity"),
        (("wasGeneratedBy", "_:g1", "prov:entity"), _DELETE, "$.wasGeneratedBy['_:g1']", "requires prov:entity"),
        (
            ("wasDerivedFrom", "_:d1", "prov:usedEntity"),
            _DELETE,
            "$.wasDerivedFrom['_:d1']",
            "requires prov:usedEntity",
        ),
        (("wasAttributedTo", "_:t1", "prov:agent"), _DELETE, "$.wasAttributedTo['_:t1']", "requires prov:agent"),
        (
            ("wasAssociatedWith", "_:a1", "prov:activity"),
            _DELETE,
            "$.wasAssociatedWith['_:a1']",
            "requires prov:activity",
        ),
        (("used", "_:u1", "prov:agent"), "people:alice", "$.used['_:u1']['prov:agent']", "not an attribute of used"),
        (("entity", DATASET, "prov:startTime"), "2026-01-01T00:00:00Z", None, "not an attribute of entity"),
        (("used", "_:u1", "prov:entity"), "nope:x", "$.used['_:u1']['prov:entity']", "undeclared prefix 'nope'"),
        (("used", "_:u1", "prov:entity"), 42, "$.used['_:u1']['prov:entity']", "expected a qualified name string"),
        (("used", "_:u1", "prov:entity"), [DATASET], "$.used['_:u1']['prov:entity']", "found array"),
        (("wasGeneratedBy", "_:g1", "prov:time"), "2026-11-23T01:55:25", None, "with a timezone"),
        (("wasGeneratedBy", "_:g1", "prov:time"), "yesterday", None, "xsd:dateTime"),
        (("activity", "pv:run/0190c8a2", "ex:x"), 1, None, "undeclared prefix 'ex'"),
        (("activity", "pv:run/0190c8a2", "pv:x"), None, None, "null is not a PROV value"),
        (("activity", "pv:run/0190c8a2", "pv:x"), [], None, "must not be empty"),
        (("activity", "pv:run/0190c8a2", "pv:x"), [[1]], "$.activity['pv:run/0190c8a2']['pv:x'][0]", "found array"),
        (("activity", "pv:run/0190c8a2", "pv:x"), {"type": "xsd:string"}, None, "value object members"),
        (("activity", "pv:run/0190c8a2", "pv:x"), {"$": "a", "unit": "m"}, None, "value object members"),
        (
            ("activity", "pv:run/0190c8a2", "pv:x"),
            {"$": "a", "type": "xsd:string", "lang": "en"},
            "$.activity['pv:run/0190c8a2']['pv:x'].type",
            "a language tag goes with prov:InternationalizedString, not with the datatype xsd:string",
        ),
        (
            ("activity", "pv:run/0190c8a2", "pv:x"),
            {"$": "pv:a", "type": "xsd:QName", "lang": "en"},
            "$.activity['pv:run/0190c8a2']['pv:x'].type",
            "not with the datatype xsd:QName",
        ),
        (
            ("activity", "pv:run/0190c8a2", "pv:x"),
            {"$": "a", "type": "prov:InternationalizedString", "lang": "not a tag"},
            "$.activity['pv:run/0190c8a2']['pv:x'].lang",
            "language tag",
        ),
        (
            ("activity", "pv:run/0190c8a2", "pv:x"),
            {"$": 1, "type": "xsd:int"},
            None,
            'value object "$": expected a string',
        ),
        (("activity", "pv:run/0190c8a2", "pv:x"), {"$": "a", "type": "bad:t"}, None, "undeclared prefix 'bad'"),
        (("activity", "pv:run/0190c8a2", "pv:x"), {"$": "bad:x", "type": "xsd:QName"}, None, "undeclared prefix 'bad'"),
        (("activity", "pv:run/0190c8a2", "pv:x"), {"$": "a", "lang": "not a tag"}, None, "language tag"),
        (
            ("activity", "pv:run/0190c8a2", "pv:x"),
            {"$": "2026-01-01T00:00:00", "type": "xsd:dateTime"},
            None,
            "with a timezone",
        ),
        (("activity", "pv:run/0190c8a2", "prov:foo"), "x", None, "prov:foo is not an attribute of activity"),
        (("activity", "pv:run/0190c8a2", "pv:x"), float("nan"), None, "finite"),
        (("hadMember",), {"_:m": {"prov:collection": "pv:c", "prov:entity": []}}, None, "lists no entity"),
    ],
)
def test_statement_violations(path: tuple[str, ...], value: Any, location: str | None, fragment: str) -> None:
    with pytest.raises(InvalidProvDocument) as e:
        validate_prov(_with(path, value))
    assert fragment in str(e.value)
    if location is not None:
        assert e.value.field == location
    assert str(e.value).startswith(e.value.field or "")


def test_every_relation_lists_required_attributes() -> None:
    for section, (required, _optional) in RELATIONS.items():
        with pytest.raises(InvalidProvDocument, match=f"{section} requires {required[0]}"):
            validate_prov({section: {"_:r": {}}})


def test_location_is_prefixed_for_events() -> None:
    with pytest.raises(InvalidProvDocument) as e:
        validate_prov({"entity": {"x:y": {}}}, path="$.prov")
    assert e.value.field == "$.prov.entity['x:y']"


# --- differential: what we accept, the independent reader reads without complaint ----------

_LOCAL = st.from_regex(r"[a-z0-9\u00e9\u4e2d_][a-z0-9\u00e9\u4e2d\u0301_./@~&+*?#$!=',;:()\[\]-]{0,7}", fullmatch=True)
_NAME = st.sampled_from(["ex:", "sha256:", "prov:"]).flatmap(lambda p: _LOCAL.map(lambda s: p + s))
_VALUE = st.one_of(
    st.text(max_size=10),
    st.integers(-(2**31), 2**31),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    _NAME.map(lambda n: {"$": n, "type": "xsd:QName"}),
    st.text(max_size=5).map(lambda t: {"$": t, "lang": "en"}),
    st.text(max_size=5).map(lambda t: {"$": t, "type": "xsd:string"}),
    st.text(max_size=5).map(lambda t: {"$": t, "type": "prov:InternationalizedString", "lang": "fr"}),
    st.text(max_size=5).map(lambda t: {"$": t}),
)
_ATTRS = st.dictionaries(st.sampled_from(["ex:a", "ex:b", "prov:label", "prov:type"]), _VALUE, max_size=3)


@st.composite
def _documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {"prefix": {"ex": "https://example.org/", "sha256": "urn:sha256:"}}
    for section in ("entity", "activity", "agent"):
        # an id maps to one statement or, for several sharing it, to an array of them
        doc[section] = draw(
            st.dictionaries(_NAME, st.one_of(_ATTRS, st.lists(_ATTRS, min_size=1, max_size=2)), max_size=3)
        )
    for i, section in enumerate(draw(st.lists(st.sampled_from(sorted(RELATIONS)), max_size=4, unique=True))):
        required, _ = RELATIONS[section]
        attrs = {a: draw(_NAME) for a in required}
        attrs.update(draw(_ATTRS))
        doc[section] = {f"_:r{i}": attrs}
    return doc


@settings(max_examples=60, deadline=None)
@given(_documents())
def test_accepted_documents_are_read_by_prov_without_warnings(doc: dict[str, Any]) -> None:
    validate_prov(doc)
    _read_with_prov(doc)
