"""Every value and statement form the PROV-JSON submission defines, as other tools write them.

The submission's value objects are ``{"$": lexical form}`` with a ``"type"``,
a ``"lang"``, both, or neither; several statements that share an id are an
array of statement objects.  ProvToolbox (the submission authors' Java
library) writes language-tagged strings as
``{"$", "type": "prov:InternationalizedString", "lang"}`` and repeated
statements as arrays; the ``prov`` package ships a corpus of documents
ProvToolbox wrote, which provault must read except where one of its own
documented rules refuses a statement on purpose.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

import prov
import pytest
from prov.model import ProvDocument

from ledger.core.errors import InvalidProvDocument
from ledger.core.provjson import iter_statements, validate_prov

PREFIX = {"ex": "http://example.org/", "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#"}

# The submission's value forms, one attribute each (section "Attribute values").
VALUES: dict[str, Any] = {
    "ex:string": "a string",
    "ex:int": 1,
    "ex:float": 1.5,
    "ex:bool": True,
    "ex:typed": {"$": "10", "type": "xsd:short"},
    "ex:qname": {"$": "ex:foo", "type": "xsd:QName"},
    "ex:legacyQname": {"$": "ex:foo", "type": "prov:QUALIFIED_NAME"},
    "ex:lang": {"$": "bonjour", "lang": "fr"},
    "ex:i18n": {"$": "bye", "type": "prov:InternationalizedString", "lang": "en"},
    "ex:i18nNoLang": {"$": "bye", "type": "prov:InternationalizedString"},
    "ex:bare": {"$": "just text"},
    "ex:many": ["activity2", "hello", {"$": "bonjour", "type": "prov:InternationalizedString", "lang": "fr"}],
}


def _read_with_prov(doc: dict[str, Any]) -> ProvDocument:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return ProvDocument.deserialize(content=json.dumps(doc), format="json")


def test_every_value_form_is_accepted_and_read_by_prov() -> None:
    doc = {"prefix": PREFIX, "entity": {"ex:e1": VALUES}}
    validate_prov(doc)
    (stmt,) = iter_statements(doc)
    assert dict(stmt.attributes) == VALUES  # validation keeps the written form; the projection normalises
    read = {str(v) for _, v in _read_with_prov(doc).get_record("ex:e1")[0].attributes}
    assert {'"bye"@en', '"bonjour"@fr', "just text", '"bye" %% prov:InternationalizedString'} <= read


@pytest.mark.parametrize(
    ("value", "location", "message"),
    [
        ({"$": "a", "type": "xsd:string", "lang": "en"}, ".type", "not with the datatype xsd:string"),
        ({"$": "hallo", "type": "rdf:langString"}, ".type", "rdf:langString is written as a language tag"),
        ({"$": "hallo", "type": "rdf:langString", "lang": "de"}, ".type", "not with the datatype rdf:langString"),
        ({"$": "a", "lang": "en_GB"}, ".lang", "expected a BCP 47 tag like en or en-GB, found 'en_GB'"),
        ({"$": "a", "lang": 7}, ".lang", "found 7"),
        ({"lang": "en"}, "", 'expected "$" with "type", "lang" or both'),
        ({"$": "a", "language": "en"}, "", "found ['$', 'language']"),
        ({"$": ["a"], "lang": "en"}, "['$']", 'value object "$": expected a string, found array'),
    ],
)
def test_value_objects_outside_the_submission_are_refused(value: Any, location: str, message: str) -> None:
    doc = {"prefix": PREFIX, "entity": {"ex:e1": {"ex:v": value}}}
    with pytest.raises(InvalidProvDocument) as e:
        validate_prov(doc)
    assert e.value.field == "$.entity['ex:e1']['ex:v']" + location
    assert message in str(e.value)


def test_statements_sharing_an_id_are_an_array() -> None:
    doc = {
        "prefix": PREFIX,
        "activity": {
            "ex:a1": [
                {"prov:type": {"$": "ex:test1", "type": "xsd:QName"}},
                {"prov:type": {"$": "ex:test2", "type": "xsd:QName"}, "prov:startTime": "2026-12-07T05:00:00Z"},
            ]
        },
        "used": {"ex:u1": [{"prov:activity": "ex:a1", "prov:entity": "ex:e1"}, {"prov:activity": "ex:a1"}]},
    }
    validate_prov(doc)
    stmts = list(iter_statements(doc))
    assert [(s.section, s.id) for s in stmts] == [
        ("activity", "ex:a1"),
        ("activity", "ex:a1"),
        ("used", "ex:u1"),
        ("used", "ex:u1"),
    ]
    assert stmts[1].attributes["prov:startTime"] == "2026-12-07T05:00:00Z"
    assert [s.refs for s in stmts[2:]] == [
        (("prov:activity", "ex:a1"), ("prov:entity", "ex:e1")),
        (("prov:activity", "ex:a1"),),
    ]
    assert len(_read_with_prov(doc).get_record("ex:a1")) == 2


# --- the ProvToolbox corpus the prov package ships --------------------------------------

_CORPUS = Path(prov.__file__).parent / "tests"
# What provault refuses on purpose (docs/events.md, "The prov member"), and nothing else.
_DELIBERATE = re.compile(
    r"PROV bundles are not supported"
    r"|unknown PROV-JSON section 'mentionOf'"  # PROV-Links, not the submission
    r"|\w+ requires prov:\w+"  # a statement without a formal attribute PROV-DM requires
)


def _corpus() -> list[Path]:
    files = sorted((_CORPUS / "json").glob("*.json")) + sorted((_CORPUS / "unification").glob("*.json"))
    assert len(files) > 300, f"the prov package's PROV-JSON corpus is missing under {_CORPUS}"
    return files


def test_provtoolbox_corpus_is_read_except_for_deliberate_rules() -> None:
    accepted, refused, unexpected = 0, 0, []
    arrays = i18n = 0
    for path in _corpus():
        text = path.read_text(encoding="utf-8")
        try:
            validate_prov(json.loads(text))
        except InvalidProvDocument as e:
            refused += 1
            if not _DELIBERATE.search(str(e)):
                unexpected.append(f"{path.name}: {e}")
            continue
        accepted += 1
        arrays += bool(re.search(r'"[^"]+": \[\s*\{', text))
        i18n += "prov:InternationalizedString" in text
    assert unexpected == []
    # 389 of 412 read, 23 refused on purpose; before this change 101 more were refused for their forms alone
    assert accepted >= 380 and refused <= 30, (accepted, refused)
    assert arrays >= 40 and i18n >= 40, (arrays, i18n)
