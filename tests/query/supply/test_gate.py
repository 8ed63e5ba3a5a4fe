"""The deployment gate on a real ledger: each rule passing and failing on its own, decisions recorded and projected.

The story (tests/query/provstory.py) is appended, checkpointed and projected in a real PostgreSQL ledger;
gatekit adds the run's environment, people with keys registered with roles, their approvals, quarantines
and revocations.  Seqs: story keys 0-2, story events 3-8, people 9-13 (carol, dave, eve, frank, sec),
the environment 14, approvals from 15.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest

from ledger.config import Settings
from ledger.core.errors import KeyMaterialError
from query.supply.evidence import gather
from query.supply.gate import Decision, behind_model, decide
from query.supply.policy import PolicyError
from tests.ledgerkit import Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story, at
from tests.query.supply.gatekit import (
    POLICY,
    RULES,
    append,
    approve,
    approved,
    logged,
    quarantine,
    register_attestor,
    with_attestor,
)
from tests.service.natskit import wait_for

pytestmark = pytest.mark.postgres


def _decide(ledger: Ledger, policy: str = POLICY, model: str = "sentiment") -> Decision:
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        decision, event = decide(conn, Settings(), model, policy, record=False)
    assert event is None
    return decision


def _failed(d: Decision) -> dict[str, str]:
    return {r.rule: r.reason for r in d.rules if not r.passed}


def test_a_model_with_complete_signed_approved_provenance_is_allowed(ledger: Ledger, story: Story) -> None:
    approved(ledger, story)
    d = _decide(ledger)
    assert d.allowed and d.verdict == "allow" and _failed(d) == {}
    assert [r.rule for r in d.rules] == RULES
    by = {r.rule: r for r in d.rules}
    assert by["provenance"].evidence_seqs == (3, 4, 5, 6, 14)
    assert by["provenance"].description == "complete provenance"
    assert by["provenance"].reason.startswith("present: data (reviews v1); code (provault:git/4f0c2a9e); environment")
    assert by["signers"].evidence_seqs == (3, 4, 5, 6, 14)
    assert "5 entries behind the model" in by["signers"].reason
    assert by["approvals"].evidence_seqs == (15, 16)
    assert by["approvals"].reason == (
        "2 distinct approvers with role ml-lead, 2 needed: carol@example.com (seq 15), dave@example.com (seq 16)"
    )
    assert by["quarantine"].passed and by["quarantine"].evidence_seqs == (3, 4, 5, 6, 14)
    assert by["metric:f1"].evidence_seqs == (5,)
    assert by["metric:f1"].reason.startswith("f1 = 0.91 from provault:run/")
    assert (d.model, d.label, d.as_of_seq, d.checkpoint_size) == (story.ids.model, "sentiment", 16, 17)


def _revoke(who: str, effective: int) -> Callable[[Ledger, Story], None]:
    def run(ledger: Ledger, story: Story) -> None:
        people = approved(ledger, story)
        key = story.trainer.signer if who == "trainer" else people[who].signer
        append(ledger, ledger.revocation(key, effective_from=at(effective)))

    return run


def _quarantine(target: Callable[[Story], str]) -> Callable[[Ledger, Story], None]:
    def run(ledger: Ledger, story: Story) -> None:
        people = approved(ledger, story)
        append(ledger, quarantine(people["sec"], target(story)))

    return run


def _quarantine_approver(who: str) -> Callable[[Ledger, Story], None]:
    def run(ledger: Ledger, story: Story) -> None:
        people = approved(ledger, story)
        append(ledger, quarantine(people["sec"], f"key:{people[who].signer.keyid}"))

    return run


SCENARIOS = {
    # id: (what to add, policy, {failed rule: fragment of its reason})
    "missing-environment": (
        lambda lg, s: approved(lg, s, with_environment=False),
        POLICY,
        {"provenance": "missing upstream of the model: environment; present: data, code, params, author"},
    ),
    "one-approval": (
        lambda lg, s: approved(lg, s, approvers=("carol",)),
        POLICY,
        {"approvals": "1 distinct approver with role ml-lead, 2 needed: carol@example.com (seq 15)"},
    ),
    "approval-without-the-role": (
        lambda lg, s: approved(lg, s, approvers=("carol", "eve", "frank")),
        POLICY,
        {"approvals": "of eve@example.com, whose roles are none, not ml-lead; seq 17 by key"},
    ),
    "approval-by-a-revoked-key": (
        _revoke("dave", effective=0),
        POLICY,
        {"approvals": "not counted: seq 16 by key"},
    ),
    "approval-by-a-key-revoked-after-it-approved": (
        _revoke("dave", effective=10_000),
        POLICY,
        {"approvals": "whose key was revoked at seq 17, effective from 2025-03-09T07:40:00Z"},
    ),
    "approval-by-a-quarantined-key": (
        _quarantine_approver("dave"),
        POLICY,
        {"approvals": "whose key is quarantined (seq 17: poisoned)"},
    ),
    "quarantined-dataset": (
        _quarantine(lambda s: s.ids.dataset),
        POLICY,
        {"quarantine": "dataset reviews v1 is quarantined (seq 17: poisoned)"},
    ),
    "quarantined-key-that-signed-the-run": (
        _quarantine(lambda s: f"key:{s.trainer.signer.keyid}"),
        POLICY,
        {"quarantine": "of alice signed seq 3, 4, 5, 6, 14 and is quarantined (seq 17: poisoned)"},
    ),
    "signer-revoked-before-it-signed": (
        _revoke("trainer", effective=0),
        POLICY,
        {"signers": "is signed by key", "quarantine": "and is revoked (seq 17, effective from 2025-03-02T09:00:00Z"},
    ),
    "signer-revoked-after-it-signed": (
        _revoke("trainer", effective=60),
        POLICY,
        {"quarantine": "and is revoked (seq 17, effective from 2025-03-02T10:00:00Z"},
    ),
    "metric-below-min": (
        approved,
        POLICY.replace("min = 0.9", "min = 0.95"),
        {"metric:f1": "f1 = 0.91 from provault:run/019cade2-0000-7000-8000-000000000001 (seq 5) is outside >= 0.95"},
    ),
    "metric-missing": (
        approved,
        POLICY.replace('name = "f1"', 'name = "accuracy"'),
        {"metric:accuracy": "no run that generated the model recorded accuracy"},
    ),
}


@pytest.mark.parametrize(("setup", "policy", "failed"), list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_each_rule_denies_on_its_own(
    ledger: Ledger, story: Story, setup: Callable, policy: str, failed: dict[str, str]
) -> None:
    setup(ledger, story)
    sign_and_project(ledger)
    d = _decide(ledger, policy)
    assert not d.allowed and d.verdict == "deny"
    assert set(_failed(d)) == set(failed), _failed(d)
    for rule, fragment in failed.items():
        assert fragment in _failed(d)[rule]
        assert next(r for r in d.rules if r.rule == rule).evidence_seqs, f"{rule} names its evidence"


def test_a_revoked_signers_verdict_names_its_entries_and_the_revocation(ledger: Ledger, story: Story) -> None:
    _revoke("trainer", effective=0)(ledger, story)
    sign_and_project(ledger)
    signers = next(r for r in _decide(ledger).rules if r.rule == "signers")
    assert signers.evidence_seqs == (3, 4, 5, 6, 14, 17)
    assert (
        signers.reason.startswith("seq 3 (2025-03-02T09:01:00Z) is signed by key ")
        and "of alice, revoked effective from 2025-03-02T09:00:00Z (seq 17)" in signers.reason
    )


def test_what_happens_after_the_model_is_not_behind_it(ledger: Ledger, lifecycle: Story) -> None:
    """The lifecycle: the model invalidated (seq 10) and the serving key revoked (11). Serving is not behind the
    model, so the revocation fails nothing; the invalidation of the model itself fails the quarantine rule."""
    policy = (
        'version = 1\n[rules.signers]\n[rules.quarantine]\n[rules.provenance]\nrequire = ["environment", "params"]\n'
    )
    d = _decide(ledger, policy, lifecycle.ids.model)
    assert _failed(d) == {
        "quarantine": "sentiment was invalidated by provault:quarantine/019cade2-0000-7000-8000-000000000009 "
        "(provault:Quarantine) (seq 10)"
    }
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        ev = gather(conn, lifecycle.ids.model)
    assert behind_model(ev) == (3, 4, 5, 6, 9)


def test_a_policy_is_checked_before_the_ledger_is_read(ledger: Ledger) -> None:
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        with pytest.raises(PolicyError, match="line 1, rules: the policy has no rule"):
            decide(conn, Settings(), "sentiment", "version = 1\n", record=False)
        with pytest.raises(KeyMaterialError, match="the attestation key .*attestor.key does not exist") as info:
            decide(conn, Settings(data_dir=Path("/nonexistent")), "sentiment", POLICY)
    assert "provault keys register" in (info.value.hint or "")


@pytest.mark.nats
def test_a_decision_is_recorded_signed_by_the_attestation_key_and_projected(
    ledger: Ledger, story: Story, ingest, settings: Settings, tmp_path: Path
) -> None:
    approved(ledger, story)
    s = with_attestor(settings, tmp_path)
    key = register_attestor(ledger, s)
    sign_and_project(ledger)
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        decision, event = decide(conn, s, "sentiment", POLICY)
    assert decision.allowed and event is not None and event.delivered and event.producer_id == "attestor/test"
    wait_for(lambda: len(logged(ledger, "gate.decided")) == 1, what="the gate.decided entry")
    [(seq, keyid, data)] = logged(ledger, "gate.decided")
    assert keyid == key.keyid and ledger.rejections() == []
    assert data["model"] == story.ids.model and data["verdict"] == "allow"
    assert data["policy_digest"] == decision.policy_digest and data["as_of_seq"] == decision.as_of_seq == 17
    assert data["checkpoint_size"] == 18
    assert [r["rule"] for r in data["rules"]] == RULES
    assert (
        data["rules"][2]
        == decision.rules[2].to_json()
        == {
            "rule": "approvals",
            "passed": True,
            "reason": decision.rules[2].reason,
            "evidence_seqs": [15, 16],
        }
    )
    sign_and_project(ledger)
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        (node, attrs) = conn.execute(
            "SELECT id, attributes FROM prov.nodes WHERE kind = 'provault:GateDecision'"
        ).fetchone()
        ev = gather(conn, "sentiment")
    assert node.startswith("provault:gate/") and attrs["provault:verdict"] == "allow"
    assert attrs["provault:policy"] == decision.policy_digest
    assert node in ev.downstream and seq not in behind_model(ev), "a decision is about the model, not behind it"
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        again, _ = decide(conn, s, "sentiment", POLICY, record=False)
    assert again.allowed and again.rules[1].evidence_seqs == (3, 4, 5, 6, 14)


def test_approvals_of_another_model_or_claimed_by_a_deployer_do_not_count(ledger: Ledger, story: Story) -> None:
    people = approved(ledger, story, approvers=())
    other = "sha256:" + "33" * 32
    append(ledger, approve(people["carol"], other), approve(people["dave"], other))
    sign_and_project(ledger)
    approvals = next(r for r in _decide(ledger).rules if r.rule == "approvals")
    assert not approvals.passed and approvals.reason == "0 distinct approvers with role ml-lead, 2 needed"


def test_a_verified_model_signature_is_provenance_that_can_be_required(ledger: Ledger, story: Story) -> None:
    approved(ledger, story)
    policy = 'version = 1\n[rules.provenance]\nrequire = ["data", "signature"]\n[rules.signers]\n'
    assert _failed(_decide(ledger, policy)) == {"provenance": "missing upstream of the model: signature; present: data"}
    i, signature = story.ids, "sha256:" + "5a" * 32
    signed = story.trainer.emit(
        "model.registered",
        {
            "entity": {
                i.model: {"provault:signature": signature, "provault:signatureVerified": True},
                signature: {"prov:type": "provault:ModelSignature"},
            },
            "wasGeneratedBy": {"_:g1": {"prov:entity": i.model, "prov:activity": i.run}},
            "wasDerivedFrom": {"_:d1": {"prov:generatedEntity": signature, "prov:usedEntity": i.model}},
        },
        time=at(32),
    )
    (seq,) = append(ledger, signed)
    sign_and_project(ledger)
    d = _decide(ledger, policy)
    assert d.allowed, _failed(d)
    assert seq in d.rules[0].evidence_seqs and seq in d.rules[1].evidence_seqs


def test_facts_restated_by_an_entry_about_the_model_do_not_count(ledger: Ledger, story: Story) -> None:
    """A deployer's event that also claims the model is signed and the run scored higher is not behind the model:
    the signature and metric rules read only the entries behind it."""
    approved(ledger, story)
    i = story.ids
    policy = POLICY.replace("min = 0.9", "min = 0.95").replace(
        'require = ["data", "code", "environment", "params", "author"]', 'require = ["data", "signature"]'
    )
    claim = story.deployer.emit(
        "model.deployed",
        {
            "activity": {i.deploy: {}, i.run: {"provault:metrics": '{"f1": 0.99}'}},
            "entity": {i.model: {"provault:signatureVerified": True}},
            "used": {"_:u1": {"prov:activity": i.deploy, "prov:entity": i.model}},
        },
        time=at(45),
    )
    (seq,) = append(ledger, claim)
    sign_and_project(ledger)
    d = _decide(ledger, policy)
    failed = _failed(d)
    assert set(failed) == {"provenance", "metric:f1"}, failed
    assert "missing upstream of the model: signature" in failed["provenance"]
    assert "f1 = 0.91" in failed["metric:f1"]
    assert all(seq not in r.evidence_seqs for r in d.rules if r.rule != "approvals")


def test_a_recorded_decision_is_made_as_of_the_latest_checkpoint_only(
    ledger: Ledger, story: Story, settings: Settings, tmp_path: Path
) -> None:
    from ledger.core.errors import InvalidArgument  # noqa: PLC0415
    from tests.query.supply.gatekit import register_attestor, with_attestor  # noqa: PLC0415

    approved(ledger, story)
    s = with_attestor(settings, tmp_path)
    register_attestor(ledger, s)
    sign_and_project(ledger)
    with (
        psycopg.connect(ledger.dsn, autocommit=True) as conn,
        pytest.raises(InvalidArgument, match="a decision is recorded only as of the latest checkpoint"),
    ):
        decide(conn, s, "sentiment", POLICY, as_of_seq=8)


def test_a_key_that_may_sign_anything_cannot_record_decisions(ledger: Ledger, story: Story, settings: Settings) -> None:
    """The trainer's key is registered for `*`: the ledger would take its gate.decided, but no one may count it."""
    from query.supply.attest import NoAttestationKey  # noqa: PLC0415

    approved(ledger, story)
    with (
        psycopg.connect(ledger.dsn, autocommit=True) as conn,
        pytest.raises(NoAttestationKey, match="is not registered as a service's producer key for gate"),
    ):
        decide(conn, settings, "sentiment", POLICY, signer=story.trainer.signer)
