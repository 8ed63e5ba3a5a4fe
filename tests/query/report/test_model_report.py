"""`provault report model`: every lifecycle section, each row with its seq and signer, from a real ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from query.report import extract_evidence
from query.report.verify import _cells
from tests.ledgerkit import Ledger
from tests.query.provstory import Story

from .conftest import ENVIRONMENT, QUARANTINE, Cli, sign_and_project

pytestmark = pytest.mark.postgres


def tables(path: Path) -> dict[str, list[list[str]]]:
    return _cells(path.read_text(encoding="utf-8"))


def signer(name: str, story_chain) -> str:
    return f"{name} (person, producer) · key {story_chain.signer.keyid[:16]}"


def test_a_model_report_shows_each_lifecycle_section_with_seqs_and_signers(
    lifecycle: Story, ledger: Ledger, cli: Cli, tmp_path: Path
) -> None:
    s, i = lifecycle, lifecycle.ids
    out = tmp_path / "sentiment.html"
    code, stdout, _ = cli("report", "model", "sentiment", "-o", out)
    assert code == 0
    assert stdout.startswith(f"wrote {out} (") and f"model {i.model}, 2 checkpoints in its retention chain" in stdout
    t = tables(out)
    alice, bob = signer("alice", s.trainer), signer("bob", s.deployer)
    run = i.run
    assert t["data"][1:] == [
        [f"{i.dataset} (reviews v1)", f"{run} used {i.dataset} (reviews v1)", "4", alice],
        [f"{i.dataset} (reviews v1)", f"{i.model} (sentiment) wasDerivedFrom {i.dataset} (reviews v1)", "5", alice],
    ]
    assert t["code"][1:] == [[i.code, f"{run} used {i.code}", "4", alice]]
    env = f"{ENVIRONMENT} (python 3.12, torch 2.4)"
    assert t["environment"][1:] == [[env, f"{run} used {env}", "9", alice]]
    assert t["params"][1:] == [[run, '{"epochs":3,"lr":0.01}', "9", alice]]
    assert t["metrics"][1:] == [[run, '{"f1": 0.91}', "5", alice]]
    assert [r[0] for r in t["authors"][1:]] == [i.author, i.author, i.host, i.author]  # not bob, who quarantined it
    assert t["approvals"][1:] == [
        [i.approver, f"{i.deploy} wasAssociatedWith {i.approver} as provault:approver", "7", bob]
    ]
    deployment = f"{i.deployment} (sentiment-prod)"
    assert [(r[0], r[2], r[3]) for r in t["deployments"][1:]] == [(deployment, "7", bob), (deployment, "7", bob)]
    server = f"serving (person, producer) · key {s.server.signer.keyid[:16]}"
    assert t["serving"][1:] == [[i.batch, "3 predictions, event time 2025-03-02T09:53:00.000000Z", "8", server]]
    revocations = t["revocations"][1:]
    assert revocations[0] == [
        "invalidation",
        f"{i.model} (sentiment) wasInvalidatedBy {QUARANTINE} (bias found in audit) (provault:Quarantine)",
        "10",
        bob,
    ]
    kid = s.server.signer.keyid
    assert revocations[1][0] == "key revocation" and revocations[1][2] == "11"
    assert revocations[1][1] == (
        f"key {kid[:16]} of serving (person, producer) revoked, effective from 2025-03-02T09:52:00.000000Z: leaked"
    )
    assert revocations[1][3].startswith("root (admin) key · key ")
    statements = t["statements"]
    assert statements[0] == ["seq", "kind", "event time (producer's clock, signed)", "producer", "event id", "signer"]
    assert [r[0] for r in statements[1:]] == ["3", "4", "5", "6", "7", "8", "9", "10"]
    assert [r[1] for r in statements[1:]][-2:] == ["run.environment", "model.quarantined"]
    continuity = t["continuity"][1:]  # from the first checkpoint that covers the model's first statement
    assert [(r[0], r[3]) for r in continuity] == [
        ("9", "first checkpoint of the chain"),
        ("12", "extends size 9: consistency proof of 4 hashes verifies"),
    ]
    duties = [r[0] for r in t["duties"][1:]]
    assert duties == [
        "EU AI Act (Regulation (EU) 2024/1689), Art. 12(1)",
        "EU AI Act, Art. 19(1)",
        "EU AI Act, Art. 26(6)",
        "ISO/IEC 42001:2023, Annex A, control A.6.2.8",
        "NIST AI RMF 1.0, GOVERN 1.6",
        "NIST AI RMF 1.0, MANAGE 4.1",
    ]
    summary = dict((r[0], r[1]) for r in t["summary"])
    assert summary["model"] == i.model and summary["version"] == "1" and summary["as of seq"] == "11"
    html = out.read_text()
    assert (
        "was revoked later (seq 11" in html and "AFTER that: treat it as suspect" in html
    )  # the batch, signed at 09:53


def test_a_digest_names_the_model_too_and_as_of_goes_back(lifecycle: Story, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "m.html"
    code, _, _ = cli("report", "model", lifecycle.ids.model, "--as-of", "8", "-o", out)
    assert code == 0
    t = tables(out)
    assert "environment" not in t and "params" not in t  # stated at seq 9, after the as-of
    assert [r[0] for r in t["statements"][1:]] == ["3", "4", "5", "6", "7", "8"]
    evidence = json.loads(extract_evidence(out.read_text()))
    assert evidence["subject"] == {"model": lifecycle.ids.model, "query": lifecycle.ids.model}
    assert [c["note"].split("\n")[1] for c in evidence["continuity"]["checkpoints"]] == ["9", "12"]
    assert [(p["old_size"], p["new_size"]) for p in evidence["continuity"]["proofs"]] == [(9, 12)]


def test_the_embedded_bundle_is_a_bundle_verify_bundle_accepts(
    story: Story, cli: Cli, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    out = tmp_path / "m.html"
    assert cli("report", "model", "sentiment", "-o", out)[0] == 0
    bundle = tmp_path / "m.bundle.json"
    bundle.write_text(json.loads(extract_evidence(out.read_text()))["bundle"] + "\n")  # what `jq -r .bundle` writes
    code, stdout, _ = cli("verify-bundle", bundle, "--key", keys[0], "--admin-key", keys[1])
    assert code == 0 and stdout.startswith(f"provault verify-bundle: OK: {bundle}")


def test_a_retired_deployment_is_listed_and_its_retirer_is_no_author(
    lifecycle: Story, ledger: Ledger, cli: Cli, tmp_path: Path
) -> None:
    i = lifecycle.ids
    retire = "provault:retire/019cade2-0000-7000-8000-00000000000a"
    plan = ledger.append(
        lifecycle.deployer.emit(
            "deployment.retired",
            {
                "activity": {retire: {"prov:type": "provault:Retirement"}},
                "entity": {i.deployment: {}},
                "agent": {"provault:person/dave@example.com": {}},
                "wasInvalidatedBy": {"_:i1": {"prov:entity": i.deployment, "prov:activity": retire}},
                "wasAssociatedWith": {
                    "_:w1": {"prov:activity": retire, "prov:agent": "provault:person/dave@example.com"}
                },
            },
        )
    )
    assert [a.seq for a in plan.accepted] == [12], ledger.rejections()
    sign_and_project(ledger)
    out = tmp_path / "m.html"
    assert cli("report", "model", "sentiment", "-o", out)[0] == 0
    t = tables(out)
    retired = [r for r in t["revocations"][1:] if r[2] == "12"]
    assert retired == [
        [
            "invalidation",
            f"{i.deployment} (sentiment-prod) wasInvalidatedBy {retire} (provault:Retirement)",
            "12",
            signer("bob", lifecycle.deployer),
        ]
    ]
    assert all("dave@example.com" not in r[0] for r in t["authors"][1:])
    assert cli("verify-report", out)[0] == 0


def test_the_keys_behind_the_signatures_are_listed_with_their_registration(
    story: Story, cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "m.html"
    assert cli("report", "model", "sentiment", "-o", out)[0] == 0
    rows = tables(out)["keys"][1:]
    assert [(r[0], r[1], r[2]) for r in rows] == [
        (f"key {story.trainer.signer.keyid[:16]}", "alice (person), role producer, kinds *", "0"),
        (f"key {story.deployer.signer.keyid[:16]}", "bob (person), role producer, kinds *", "1"),
        (f"key {story.server.signer.keyid[:16]}", "serving (person), role producer, kinds *", "2"),
    ]
    assert all(r[3].startswith("root (admin) key · key ") for r in rows)
