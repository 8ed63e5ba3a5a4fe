"""A model's CycloneDX 1.6 ML-BOM, built from its verified evidence in a real ledger, and `provault bom`."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import cyclonedx.schema
import psycopg
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from jsonschema import Draft7Validator
from referencing import Registry, Resource

from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.core.vocab import gate_activity_id, service_id
from ledger.store import checkpoints
from query.supply.bom import build_bom
from query.supply.evidence import ModelEvidence, gather
from tests.ledgerkit import ORIGIN, Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story, at
from tests.query.report.conftest import ENVIRONMENT, QUARANTINE, Cli

SCHEMA_DIR = Path(cyclonedx.schema.__file__).parent
POLICY = "sha256:" + "5a" * 32


def _evidence(ledger: Ledger, name: str) -> ModelEvidence:
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        return gather(conn, name)


def _schema_file(pattern: str) -> Path:
    found = sorted(SCHEMA_DIR.rglob(pattern))
    assert len(found) == 1, found
    return found[0]


def _jsonschema_errors(doc: dict[str, Any]) -> list[str]:
    """The CycloneDX 1.6 JSON schema shipped in the library, checked by jsonschema itself (formats too)."""
    schema = json.loads(_schema_file("bom-1.6*.schema.json").read_text())
    base = schema["$id"].rsplit("/", 1)[0]
    resources = []
    for pattern in ("spdx*.schema.json", "jsf-*.schema.json"):
        path = _schema_file(pattern)
        resources.append((f"{base}/{path.name}", Resource.from_contents(json.loads(path.read_text()))))
    validator = Draft7Validator(
        schema, registry=Registry().with_resources(resources), format_checker=Draft7Validator.FORMAT_CHECKER
    )
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(doc)]


def _library_error(doc: dict[str, Any]) -> object:
    return JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))


def _valid(doc: dict[str, Any]) -> None:
    assert _library_error(doc) is None
    assert _jsonschema_errors(doc) == []


def _props(item: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for p in item.get("properties", []):
        out.setdefault(p["name"], []).append(p["value"])
    return out


def _seqs(ev: ModelEvidence, node: str) -> list[str]:
    return [",".join(str(s) for s in ev.seqs_about(node))]


def _components(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in doc["components"]}


def _dependencies(doc: dict[str, Any]) -> dict[str, set[str]]:
    return {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}


def test_the_storys_model_has_a_bom_that_validates_against_cyclonedx_1_6(ledger: Ledger, story: Story) -> None:
    doc = build_bom(_evidence(ledger, "sentiment"))
    _valid(doc)
    assert (doc["bomFormat"], doc["specVersion"]) == ("CycloneDX", "1.6")
    # Both validators can fail: a model type the schema does not know, and a hash that is not hex.
    broken = copy.deepcopy(doc)
    broken["metadata"]["component"]["type"] = "ml-model"
    broken["components"][0]["hashes"] = [{"alg": "SHA-256", "content": "not hex"}]
    assert _library_error(broken) is not None
    assert len(_jsonschema_errors(broken)) >= 2
    card_broken = copy.deepcopy(doc)
    card_broken["metadata"]["component"]["modelCard"]["quantitativeAnalysis"]["performanceMetrics"][0]["value"] = 0.91
    assert _library_error(card_broken) is not None and _jsonschema_errors(card_broken)


def test_the_bom_names_the_model_its_data_its_code_and_what_depends_on_what(ledger: Ledger, story: Story) -> None:
    i = story.ids
    ev = _evidence(ledger, "sentiment")
    doc = build_bom(ev)
    model = doc["metadata"]["component"]
    assert model["type"] == "machine-learning-model"
    assert model["bom-ref"] == i.model
    assert model["hashes"] == [{"alg": "SHA-256", "content": i.model.removeprefix("sha256:")}]
    assert (model["name"], model["version"]) == ("sentiment", "1")
    assert model["authors"] == [{"name": "alice@example.com", "email": "alice@example.com"}]

    components = _components(doc)
    assert set(components) == {i.dataset, i.code}, "runs, people, hosts and deployments are not materials"
    data = components[i.dataset]
    assert data["type"] == "data"
    assert data["hashes"] == [{"alg": "SHA-256", "content": "11" * 32}]
    assert data["name"] == "reviews v1"
    assert data["data"] == [{"type": "dataset", "name": "reviews v1", "contents": {"url": "s3://data/reviews.csv"}}]
    code = components[i.code]
    assert code["type"] == "application"
    assert code["version"] == "4f0c2a9e"
    assert code["pedigree"] == {"commits": [{"uid": "4f0c2a9e", "url": "ssh://git@example.com/ml/sentiment"}]}
    assert code["externalReferences"] == [{"type": "vcs", "url": "ssh://git@example.com/ml/sentiment"}]
    assert _props(code)["provault:remote"] == ["git@example.com:ml/sentiment"], "the remote as recorded, too"

    assert _dependencies(doc) == {i.model: {i.dataset, i.code}, i.dataset: set(), i.code: set()}


def test_the_model_card_holds_the_datasets_and_the_runs_metrics(ledger: Ledger, story: Story) -> None:
    i = story.ids
    ev = _evidence(ledger, "sentiment")
    card = build_bom(ev)["metadata"]["component"]["modelCard"]
    assert card["modelParameters"] == {"datasets": [{"ref": i.dataset}]}
    assert card["quantitativeAnalysis"] == {"performanceMetrics": [{"type": "f1", "value": "0.91"}]}
    assert "considerations" not in card, "nothing in the story speaks against the model"
    props = _props(card)
    assert props["provault:run"] == [i.run]
    assert props["provault:seqs"] == _seqs(ev, i.run) == ["4,5,6"]
    assert "provault:params" not in props, "the story's run states no provault:params attribute"


def test_every_claim_names_the_seqs_and_the_checkpoint_that_prove_it(ledger: Ledger, story: Story) -> None:
    i = story.ids
    ev = _evidence(ledger, "sentiment")
    doc = build_bom(ev)
    model = doc["metadata"]["component"]
    components = _components(doc)
    assert _props(model)["provault:seqs"] == _seqs(ev, i.model) == ["5,6,7"], "not the prediction batch (8)"
    assert _props(components[i.dataset])["provault:seqs"] == _seqs(ev, i.dataset) == ["3,4,5"]
    assert _props(components[i.code])["provault:seqs"] == _seqs(ev, i.code) == ["4"]
    proven = {pe.entry.seq for pe in ev.bundle.entries}
    for item in (model, *components.values()):
        stated = {int(s) for s in _props(item)["provault:seqs"][0].split(",")}
        assert stated <= proven, f"{item['bom-ref']} names seqs the bundle does not prove"
    assert ledger.conn is not None
    stored = checkpoints.latest(ledger.conn)
    assert stored is not None
    meta = _props(doc["metadata"])
    assert meta["provault:checkpoint:origin"] == [ORIGIN]
    assert meta["provault:checkpoint:treeSize"] == ["9"]
    assert meta["provault:checkpoint:rootHash"] == [stored.root_hash.hex()]
    assert meta["provault:asOfSeq"] == ["8"]
    assert meta["provault:bundle:digest"] == [ev.bundle_digest]


def test_the_lifecycle_shows_its_environment_parameters_quarantine_and_revoked_key(
    ledger: Ledger, lifecycle: Story
) -> None:
    i = lifecycle.ids
    ev = _evidence(ledger, i.model)
    doc = build_bom(ev)
    _valid(doc)
    env = _components(doc)[ENVIRONMENT]
    assert env["type"] == "platform"
    assert env["hashes"] == [{"alg": "SHA-256", "content": "e0" * 32}]
    assert env["name"] == "python 3.12, torch 2.4"
    assert _props(env)["provault:seqs"] == ["9"]
    assert _dependencies(doc)[i.model] == {i.dataset, i.code, ENVIRONMENT}

    card = doc["metadata"]["component"]["modelCard"]
    props = _props(card)
    assert props["provault:params"] == ['{"epochs":3,"lr":0.01}']
    assert props["provault:invalidatedBy"] == [f"{i.model} by {QUARANTINE} seq 10"]
    # The serving key, revoked at seq 11, signed only predictions: nothing the model was made from.
    assert "provault:revokedKey" not in props
    assert props["provault:seqs"] == ["4,5,6,9,10"]
    risks = card["considerations"]["ethicalConsiderations"]
    assert len(risks) == 1
    (quarantine,) = risks
    assert quarantine["name"] == f"the model was invalidated by {QUARANTINE} (provault:Quarantine): bias found in audit"
    assert "seq 10" in quarantine["mitigationStrategy"]
    assert _props(doc["metadata"])["provault:checkpoint:treeSize"] == ["12"]


def _gate(chain: ProducerChain, model: str, n: int, verdict: str, rules: list[dict[str, Any]]):
    activity = gate_activity_id(f"019cade2-0000-7000-8000-00000000010{n}")
    attestor = service_id("attestor/test")
    return chain.emit(
        "gate.decided",
        {
            "activity": {
                activity: {"prov:type": "provault:GateDecision", "provault:verdict": verdict, "provault:policy": POLICY}
            },
            "entity": {model: {}},
            "agent": {attestor: {}},
            "used": {"_:u1": {"prov:activity": activity, "prov:entity": model}},
            "wasAssociatedWith": {"_:w1": {"prov:activity": activity, "prov:agent": attestor}},
        },
        data={
            "model": model,
            "verdict": verdict,
            "policy_digest": POLICY,
            "as_of_seq": 8,
            "checkpoint_size": 9,
            "rules": rules,
        },
        time=at(70 + n),
    )


def test_gate_decisions_recorded_about_the_model_are_considerations(ledger: Ledger, story: Story) -> None:
    i = story.ids
    key = Ed25519Signer.generate()
    chain = ProducerChain("attestor/test", key)
    deny = _gate(chain, i.model, 1, "deny", [{"rule": "metric", "passed": False}, {"rule": "signers", "passed": True}])
    allow = _gate(chain, i.model, 2, "allow", [{"rule": "signers", "passed": True}])
    reg = ledger.registration(
        key, kinds=("gate.*",), producers=("attestor/test",), name="attestor/test", identity_type="service"
    )
    plan = ledger.append(reg, deny, allow)
    assert [a.seq for a in plan.accepted] == [9, 10, 11], ledger.rejections()
    sign_and_project(ledger)
    doc = build_bom(_evidence(ledger, "sentiment"))
    _valid(doc)
    card = doc["metadata"]["component"]["modelCard"]
    considerations = card["considerations"]
    assert considerations["useCases"] == [
        f"deployment, allowed by the provault gate under policy {POLICY} (gate.decided, seq 11)"
    ]
    assert considerations["ethicalConsiderations"] == [
        {
            "name": f"the provault gate denied deployment under policy {POLICY}: rules metric failed",
            "mitigationStrategy": "deployments through the gate are refused (gate.decided, seq 10)",
        }
    ]
    props = _props(card)
    assert props["provault:gate"] == [f"allow policy {POLICY} seq 11", f"deny policy {POLICY} seq 10"]
    assert props["provault:seqs"] == ["4,5,6,10,11"]


# --- provault bom -------------------------------------------------------------------------------------


def test_bom_writes_a_file_that_parses_and_validates(story: Story, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "sentiment.cdx.json"
    code, stdout, err = cli("bom", "sentiment", "-o", out)
    assert (code, err) == (0, "")
    assert stdout.startswith(f"wrote {out}: CycloneDX 1.6 BOM of {story.ids.model} (2 components) as of seq 8")
    doc = json.loads(out.read_text(encoding="utf-8"))
    _valid(doc)
    assert doc["metadata"]["component"]["bom-ref"] == story.ids.model
    assert [p.name for p in tmp_path.iterdir()] == ["sentiment.cdx.json"], "no temporary file left behind"


def test_bom_writes_to_standard_output_by_default_and_as_of_a_seq(story: Story, cli: Cli) -> None:
    code, stdout, _ = cli("bom", story.ids.model, "--as-of", "6")
    assert code == 0
    doc = json.loads(stdout)
    _valid(doc)
    assert _props(doc["metadata"])["provault:asOfSeq"] == ["6"]
    assert _props(doc["metadata"]["component"])["provault:seqs"] == ["5,6"], "nothing after seq 6"


def test_bom_of_an_unknown_model_is_exit_1_with_the_error(story: Story, cli: Cli) -> None:
    code, stdout, err = cli("bom", "no-such-model")
    assert (code, stdout) == (1, "")
    assert err == (
        "provault: error [not_found]: no model labelled 'no-such-model' in the ledger as of seq 8\n"
        "  hint: name the model by its label (prov:label) or its digest sha256:<hex>\n"
    )


def test_bom_without_a_checkpoint_is_exit_1(ledger: Ledger, logged_story: Story, cli: Cli) -> None:
    code, stdout, err = cli("bom", "sentiment")
    assert (code, stdout) == (1, "")
    assert err.startswith("provault: error [not_covered]: the ledger has no checkpoint over any entry yet\n")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ((), "the following arguments are required: MODEL"),
        (("sentiment", "--as-of", "-3"), "expected a log seq"),
        (("sentiment", "--as-of", "latest"), "expected a log seq"),
        (("sentiment", "--format", "xml"), "unrecognized arguments: --format"),
    ],
)
def test_bom_with_a_bad_command_line_is_exit_2(
    cli: Cli, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], fragment: str
) -> None:
    with pytest.raises(SystemExit) as info:
        cli("bom", *argv)
    assert info.value.code == 2
    assert fragment in capsys.readouterr().err


def test_a_gate_decision_signed_by_a_key_that_may_sign_anything_is_not_a_consideration(
    ledger: Ledger, story: Story
) -> None:
    """alice's key may sign every kind (`*`): the ledger accepts her gate.decided, the BOM does not repeat it."""
    i = story.ids
    forged = _gate(story.trainer, i.model, 3, "allow", [{"rule": "signers", "passed": True}])
    assert [a.seq for a in ledger.append(forged).accepted] == [9], ledger.rejections()
    sign_and_project(ledger)
    card = build_bom(_evidence(ledger, "sentiment"))["metadata"]["component"]["modelCard"]
    assert "gate" not in json.dumps(card.get("considerations", {})).lower()


def test_a_revoked_key_that_signed_the_models_making_is_a_risk(ledger: Ledger, story: Story) -> None:
    trainer = story.trainer.signer.keyid
    assert [a.seq for a in ledger.append(ledger.revocation(story.trainer.signer, effective_from=at(0))).accepted] == [9]
    sign_and_project(ledger)
    card = build_bom(_evidence(ledger, "sentiment"))["metadata"]["component"]["modelCard"]
    assert _props(card)["provault:revokedKey"] == [f"{trainer} seq 9"]
    (risk,) = card["considerations"]["ethicalConsiderations"]
    assert risk["name"].startswith("entries at seqs 3,4,5,6 are signed by key " + trainer)
    assert "key.revoked, seq 9" in risk["mitigationStrategy"]
