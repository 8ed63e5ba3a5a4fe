"""``provault gate``, ``approve`` and ``quarantine`` run in-process against a real ledger (and its real ingest)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import psycopg
import pytest

from ledger.cli import main
from ledger.config import Settings
from ledger.core.keys import save_private_key
from tests.ledgerkit import Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story
from tests.query.report.conftest import Cli
from tests.query.supply.gatekit import (
    POLICY,
    append,
    approved,
    environment,
    logged,
    register_attestor,
    register_people,
    with_attestor,
)
from tests.service.natskit import wait_for

pytestmark = pytest.mark.postgres


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY)
    return path


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A data directory of the test's own: no attestation key, no stack file of this machine's."""
    data = tmp_path / "data"
    monkeypatch.setenv("PROVAULT_DATA_DIR", str(data))
    return data


def test_an_allowed_model_exits_0_with_each_rule_named(
    ledger: Ledger, story: Story, cli: Cli, policy: Path, isolated: Path
) -> None:
    approved(ledger, story)
    code, out, err = cli("gate", "sentiment", "--policy", policy, "--no-record")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "provault gate: ALLOWED: model sha256:222222222222… (sentiment)"
    assert lines[1].startswith(f"  policy      {policy} (sha256:")
    assert re.fullmatch(
        r"  evidence    verified audit bundle sha256:[0-9a-f]{12}…, as of seq 16, checkpoint tree size 17", lines[2]
    )
    assert [line.split()[:2] for line in lines if line.startswith(("  PASS", "  FAIL"))] == [
        ["PASS", "provenance"],
        ["PASS", "signers"],
        ["PASS", "approvals"],
        ["PASS", "quarantine"],
        ["PASS", "metric:f1"],
    ]
    assert "(complete provenance)" in out and "evidence seqs: 3-6, 14" in out and "evidence seqs: 15-16" in out
    assert lines[-1] == "  recorded    no (--no-record)"
    code, out, _ = cli("gate", "sha256:" + "22" * 32, "--policy", policy, "--no-record", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["verdict"] == "allow" and doc["decision_event"] is None
    assert [r["rule"] for r in doc["rules"]] == ["provenance", "signers", "approvals", "quarantine", "metric:f1"]
    assert doc["rules"][2]["evidence_seqs"] == [15, 16]


def test_a_denied_model_exits_1_naming_the_failed_rule(
    ledger: Ledger, story: Story, cli: Cli, policy: Path, isolated: Path
) -> None:
    approved(ledger, story, approvers=("carol",))
    code, out, _ = cli("gate", "sentiment", "--policy", policy, "--no-record")
    assert code == 1
    assert out.splitlines()[0] == "provault gate: DENIED: model sha256:222222222222… (sentiment)"
    fails = [line for line in out.splitlines() if line.startswith("  FAIL")]
    assert fails == ["  FAIL  approvals   1 distinct approver with role ml-lead, 2 needed: carol@example.com (seq 15)"]
    code, out, _ = cli("gate", "sentiment", "--policy", policy, "--no-record", "--as-of", "8")
    assert code == 1 and "as of seq 8, checkpoint tree size 16" in out, "as the ledger stood at seq 8"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (POLICY.replace("count = 2", "count = 0"), "line 10, rules.approvals.count: expected an integer >= 1, found 0"),
        (POLICY.replace("[rules.quarantine]", "[rules.quarantine"), "line 13, rules.approvals: not valid TOML"),
        ("version = 1\n", "line 1, rules: the policy has no rule"),
    ],
    ids=["count-0", "syntax", "no-rule"],
)
def test_a_malformed_policy_exits_2_before_the_ledger_is_read(
    ledger: Ledger, cli: Cli, tmp_path: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch, text: str, fragment: str
) -> None:
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", "postgresql://nobody@127.0.0.1:1/none")  # never reached
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    code, out, err = cli("gate", "sentiment", "--policy", bad)
    assert (code, out) == (2, "")
    assert err.startswith(f"provault gate: malformed policy: {bad} {fragment}")


def test_a_malformed_command_line_exits_2(ledger: Ledger, cli: Cli, tmp_path: Path, isolated: Path) -> None:
    code, _, err = cli("gate", "sentiment", "--policy", tmp_path / "missing.toml")
    assert code == 2 and "cannot read the policy" in err
    for argv in (["gate", "sentiment"], ["gate", "sentiment", "--policy", "p.toml", "--as-of", "yesterday"]):
        with pytest.raises(SystemExit) as info:
            main(argv)
        assert info.value.code == 2
    good = tmp_path / "policy.toml"
    good.write_text(POLICY)
    code, out, err = cli("gate", "sentiment", "--policy", good, "--as-of", "3")
    assert (code, out) == (2, "") and "--as-of needs --no-record" in err


def test_a_configuration_error_is_no_decision_not_a_denial(
    ledger: Ledger, cli: Cli, policy: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROVAULT_AGENT_BATCH_MAX", "0")
    code, out, err = cli("gate", "sentiment", "--policy", policy, "--no-record")
    assert (code, out) == (3, "") and "error [config_invalid]" in err and "agent.batch_max" in err


def test_no_decision_exits_3(
    ledger: Ledger, story: Story, cli: Cli, policy: Path, isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = [
        (("no-such-model", "--no-record"), "[not_found]: no model labelled 'no-such-model'"),
        (("sentiment", "--no-record", "--as-of", "99"), "newer than the latest checkpoint"),
        (("sentiment",), "[key_material]: the attestation key"),
    ]
    for args, fragment in cases:
        code, out, err = cli("gate", *args, "--policy", policy)
        assert (code, out) == (3, ""), err
        assert err.startswith("provault gate: no decision") and fragment in err
    assert "add --no-record" in err and "provault keys register" in err
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", "postgresql://nobody@127.0.0.1:1/none")
    code, _, err = cli("gate", "sentiment", "--policy", policy, "--no-record")
    assert code == 3 and "[storage_unavailable]: cannot connect to PostgreSQL" in err


def test_a_ledger_without_a_checkpoint_gives_no_decision(
    ledger: Ledger, cli: Cli, policy: Path, isolated: Path
) -> None:
    code, _, err = cli("gate", "sentiment", "--policy", policy, "--no-record")
    assert code == 3 and "the ledger has no checkpoint over any entry yet" in err


# --- the whole loop through the real ingest ------------------------------------------------------------


def _as(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, name: str, chain) -> None:
    """The CLI runs as ``name``: its own key file and producer id."""
    key = tmp_path / f"{name}.key"
    if not key.exists():
        save_private_key(chain.signer, key)
    monkeypatch.setenv("PROVAULT_AGENT_KEY_FILE", str(key))
    monkeypatch.setenv("PROVAULT_AGENT_PRODUCER_ID", chain.producer_id)


@pytest.mark.nats
def test_approve_quarantine_and_gate_through_the_real_ingest(
    ledger: Ledger,
    story: Story,
    ingest,
    settings: Settings,
    nats_target,
    cli: Cli,
    policy: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    i = story.ids
    people = register_people(ledger, carol="ml-lead", dave="ml-lead", sec=None)
    append(ledger, environment(story))
    s = with_attestor(settings, tmp_path)
    attestor = register_attestor(ledger, s)
    sign_and_project(ledger)
    for name, value in {
        "PROVAULT_DATA_DIR": str(s.data_dir),
        "PROVAULT_NATS_URL": nats_target.url,
        "PROVAULT_NATS_STREAM": s.nats.stream,
        "PROVAULT_NATS_SUBJECT_PREFIX": s.nats.subject_prefix,
        "PROVAULT_SUPPLY_KEY_FILE": s.supply.key_file,
        "PROVAULT_SUPPLY_PRODUCER_ID": "attestor/test",
        "PROVAULT_AGENT_PUBLISH_TIMEOUT_S": "20",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    _as(monkeypatch, tmp_path, "carol", people["carol"])
    code, out, err = cli("approve", "sentiment", "--comment", "bias audit read")
    assert code == 0, err
    assert re.fullmatch(rf"model\.approved {i.model} event [0-9a-f-]{{36}} delivered\n", out)
    _as(monkeypatch, tmp_path, "dave", people["dave"])
    code, out, err = cli("approve", i.model, "--json")
    assert code == 0 and json.loads(out)["delivered"] is True, err
    wait_for(lambda: len(logged(ledger, "model.approved")) == 2, what="both approvals")
    sign_and_project(ledger)

    code, out, err = cli("gate", "sentiment", "--policy", policy)
    assert code == 0, out + err
    first = re.search(r"recorded    gate\.decided event (\S+) \(delivered\)", out)
    assert first, out

    _as(monkeypatch, tmp_path, "sec", people["sec"])
    code, out, err = cli("quarantine", i.dataset, "--reason", "labels leaked from the test set")
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(rf"quarantine\.placed dataset {i.dataset} event \S+ delivered", lines[0])
    assert lines[1].startswith("impact of sha256:111111111111…, projected up to seq")
    assert lines[2:] == [
        "  models: 1",
        "    sha256:222222222222…  sentiment",
        "  deployments: 1",
        "    provault:deployment/sentiment-prod/019cade2-0000-7000-8000-000000000002  sentiment-prod",
        "  predictions: 3",
    ]
    wait_for(lambda: len(logged(ledger, "quarantine.placed")) == 1, what="the quarantine")
    sign_and_project(ledger)

    code, out, err = cli("gate", "sentiment", "--policy", policy)
    assert code == 1, out + err
    assert [line.split()[1] for line in out.splitlines() if line.startswith("  FAIL")] == ["quarantine"]
    assert "dataset reviews v1 is quarantined" in out and "labels leaked from the test set" in out

    code, out, _ = cli("quarantine", f"key:{story.trainer.signer.keyid}", "--reason", "laptop stolen", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["target_type"] == "key" and doc["delivered"] is True
    assert doc["impact"]["entries_signed"] == [3, 4, 5, 6, 12]
    assert [m["label"] for m in doc["impact"]["models"]] == ["sentiment"] and doc["impact"]["predictions"] == 3

    wait_for(lambda: len(logged(ledger, "gate.decided")) == 2, what="both decisions")
    decisions = logged(ledger, "gate.decided")
    assert [d["verdict"] for _, _, d in decisions] == ["allow", "deny"]
    assert {keyid for _, keyid, _ in decisions} == {attestor.keyid}
    assert ledger.rejections() == []
    sign_and_project(ledger)
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        verdicts = conn.execute(
            "SELECT attributes ->> 'provault:verdict' FROM prov.nodes WHERE kind = 'provault:GateDecision' "
            "ORDER BY first_seq"
        ).fetchall()
        events = conn.execute("SELECT event_id::text FROM prov.entries WHERE kind = 'gate.decided'").fetchall()
    assert [v for (v,) in verdicts] == ["allow", "deny"]
    assert first.group(1) in {e for (e,) in events}


def test_a_short_commit_is_quarantined_under_the_id_it_was_recorded_by_or_refused(
    ledger: Ledger, story: Story, cli: Cli, isolated: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The story recorded its commit as provault:git/4f0c2a9e: 7 digits find it; digits nothing recorded are
    refused before anything is signed (a quarantine that matches nothing would let the gate pass)."""
    people = register_people(ledger, sec=None)
    sign_and_project(ledger)
    _as(monkeypatch, tmp_path, "sec", people["sec"])
    monkeypatch.setenv("PROVAULT_AGENT_PUBLISH_TIMEOUT_S", "0.2")  # no NATS here: the event waits in the spool
    spool = isolated / "spool"

    code, out, err = cli("quarantine", "abcdef1", "--reason", "leaked")
    assert code == 1 and out == ""
    assert "no commit recorded in the ledger starts with provault:git/abcdef1" in err
    assert not spool.exists() or not any(spool.rglob("seg-*.log")), "nothing was signed"

    code, out, err = cli("quarantine", "4F0C2A9", "--reason", "leaked", "--json")
    assert code == 0, err
    doc = json.loads(out)
    assert (doc["target"], doc["target_type"], doc["delivered"]) == ("provault:git/4f0c2a9e", "commit", False)
    assert any(spool.rglob("seg-*.log")), "the quarantine waits in the spool"
