"""The approval and quarantine builders: their PROV documents, their data, and every bad input refused by name."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from agents.assets import Prepared
from agents.governance import MAX_TEXT, Statement, approval_event, quarantine_event, quarantine_target
from ledger.core.errors import InvalidArgument
from ledger.core.events import Event, Producer
from ledger.core.ids import new_event_id
from ledger.core.provjson import validate_prov
from ledger.core.vocab import key_node_id
from query.supply.evidence import parse_quarantine

MODEL = "sha256:" + "ab" * 32
DATASET = "sha256:" + "cd" * 32
KEYID = "ef" * 32
UUID7 = r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


def _only(doc: dict, section: str) -> dict:
    (value,) = doc[section].values()
    return value


def test_an_approval_uses_the_model_and_is_associated_with_the_approver() -> None:
    st = approval_event(MODEL, approver="carol@example.com", comment="read the bias audit")
    assert isinstance(st, Prepared) and isinstance(st, Statement)
    assert st.kind == "model.approved" and re.fullmatch(rf"provault:approval/{UUID7}", st.id)
    assert st.data == {"model": MODEL}
    doc = st.prov
    validate_prov(doc)
    act = doc["activity"][st.id]
    assert act["prov:type"] == {"$": "provault:Approval", "type": "prov:QUALIFIED_NAME"}
    assert act["provault:comment"] == "read the bias audit" and "prov:startTime" in act
    assert doc["entity"] == {MODEL: {"prov:type": {"$": "provault:Model", "type": "prov:QUALIFIED_NAME"}}}
    assert _only(doc, "used") == {"prov:activity": st.id, "prov:entity": MODEL}
    assert _only(doc, "wasAssociatedWith") == {
        "prov:activity": st.id,
        "prov:agent": "provault:person/carol@example.com",
        "prov:role": "provault:approver",
    }
    assert "provault:comment" not in approval_event(MODEL, approver="carol@example.com").prov["activity"].popitem()[1]
    assert approval_event(MODEL, approver="carol@example.com").id != st.id


def test_an_approver_defaults_to_who_runs_it_and_may_be_a_service(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    monkeypatch.chdir(tmp_path)  # no git repository: the OS user at this host
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(tmp_path / "none"))
    st = approval_event(MODEL)
    (agent,) = st.prov["agent"]
    assert agent.startswith("provault:person/") and "@" in agent
    svc = approval_event(MODEL, approver="provault:service/release-bot")
    assert _only(svc.prov, "wasAssociatedWith")["prov:agent"] == "provault:service/release-bot"


@pytest.mark.parametrize(
    ("target", "recorded", "kind", "entity"),
    [
        (DATASET, DATASET, "dataset", DATASET),
        ("provault:git/4f0c2a9e", "provault:git/4f0c2a9e", "commit", "provault:git/4f0c2a9e"),
        ("4F0C2A9E1B", "provault:git/4f0c2a9e1b", "commit", "provault:git/4f0c2a9e1b"),
        ("a" * 40, "provault:git/" + "a" * 40, "commit", "provault:git/" + "a" * 40),
        (f"key:{KEYID}", f"key:{KEYID}", "key", key_node_id(KEYID)),
    ],
)
def test_a_quarantine_invalidates_its_target(target: str, recorded: str, kind: str, entity: str) -> None:
    st = quarantine_event(target, reason="  labels leaked ", who="sec@example.com")
    assert st.kind == "quarantine.placed" and re.fullmatch(rf"provault:quarantine/{UUID7}", st.id)
    assert st.data == {"target": recorded, "target_type": kind, "reason": "labels leaked"}
    assert quarantine_target(target) == (recorded, kind, entity)
    doc = st.prov
    validate_prov(doc)
    act = doc["activity"][st.id]
    assert act["prov:type"]["$"] == "provault:Quarantine"
    assert (act["provault:reason"], act["provault:target"]) == ("labels leaked", recorded)
    assert _only(doc, "wasInvalidatedBy") == {"prov:entity": entity, "prov:activity": st.id}
    assert entity in doc["entity"]
    assert _only(doc, "wasAssociatedWith") == {"prov:activity": st.id, "prov:agent": "provault:person/sec@example.com"}
    event = Event(
        id=new_event_id(), time=datetime.now(UTC), kind=st.kind, producer=Producer.first("sec"), prov=doc, data=st.data
    )
    q = parse_quarantine(event, seq=7, keyid=KEYID)
    assert (q.target, q.target_type, q.reason, q.activity) == (recorded, kind, "labels leaked", st.id)
    assert q.target_key == (KEYID if kind == "key" else None)
    assert key_node_id(KEYID) == f"provault:key/{KEYID}"


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda: approval_event("sentiment"), "model: expected the model's content id 'sha256:<64 hex digits>'"),
        (lambda: approval_event("sha256:" + "AB" * 32), "model: expected the model's content id"),
        (lambda: approval_event(None), "model: expected"),  # type: ignore[arg-type]
        (lambda: approval_event(MODEL, approver=""), "approver: expected an e-mail address"),
        (lambda: approval_event(MODEL, approver="c@x", comment=""), "comment: expected a non-empty text"),
        (lambda: approval_event(MODEL, approver="c@x", comment=3), "comment: expected a non-empty text"),  # type: ignore[arg-type]
        (lambda: approval_event(MODEL, approver="c@x", comment="x" * (MAX_TEXT + 1)), "comment: expected at most 4096"),
        (lambda: quarantine_event(DATASET, reason=""), "reason: expected a non-empty text, found ''"),
        (lambda: quarantine_event(DATASET, reason="   "), "reason: expected a non-empty text"),
        (lambda: quarantine_event(DATASET, reason=None), "reason: expected a non-empty text, found None"),  # type: ignore[arg-type]
        (lambda: quarantine_event(DATASET, reason="x" * (MAX_TEXT + 1)), "reason: expected at most 4096 characters"),
        (lambda: quarantine_event(DATASET, reason="r", who=" "), "who: expected an e-mail address"),
        (lambda: quarantine_event("", reason="r"), "target: expected a dataset, a commit or a key"),
        (lambda: quarantine_event("sha256:1234", reason="r"), "target: expected a dataset's content id"),
        (lambda: quarantine_event("key:abc", reason="r"), "target: expected 'key:<64 lowercase hex digits>'"),
        (lambda: quarantine_event(f"key:{KEYID.upper()}", reason="r"), "target: expected 'key:"),
        (lambda: quarantine_event("abc123", reason="r"), "target: expected a dataset 'sha256:<hex>', a commit"),
        (lambda: quarantine_event("provault:git/xyz1234", reason="r"), "found 'provault:git/xyz1234'"),
        (lambda: quarantine_event("a" * 41, reason="r"), "target: expected a dataset"),
        (lambda: quarantine_event("provault:run/123", reason="r"), "target: expected a dataset"),
        (lambda: quarantine_event(KEYID, reason="r"), "target: expected a dataset"),
    ],
)
def test_every_bad_input_is_refused_naming_it(call, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        call()
    assert fragment in info.value.message
