"""A model's evidence is gathered from a real ledger, verified, and read from the signed events."""

from __future__ import annotations

import psycopg
import pytest

from ledger.grpckit.status import NotCovered
from query.report.build import ModelNotFound
from query.supply.evidence import gather
from tests.ledgerkit import Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story


def test_a_models_evidence_is_its_verified_lifecycle(ledger: Ledger, story: Story) -> None:
    i = story.ids
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        ev = gather(conn, "sentiment")
    assert ev.model == i.model
    assert ev.as_of_seq == 8
    assert {i.dataset, i.code, i.run, i.author} <= ev.upstream
    assert i.deploy in ev.downstream and i.deploy not in ev.upstream, "the deploying activity used the model"
    assert ev.report.admin_keys_pinned and ev.report.key_source == "given"
    assert ev.attributes(i.run)["provault:metrics"] == '{"f1": 0.91}'
    assert ev.quarantines == ()
    assert ev.bundle_digest.startswith("sha256:") and len(ev.bundle_digest) == 71
    trainer = ev.signer_record(ev.seqs_about(i.run)[0])
    assert trainer is not None and trainer.role == "producer" and not trainer.revoked
    revoked = [k for k in ev.keys.values() if k.revoked]
    assert revoked == []


def test_revocations_and_invalidations_come_with_the_evidence(ledger: Ledger, lifecycle: Story) -> None:
    i = lifecycle.ids
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        ev = gather(conn, i.model)
    assert lifecycle.server.signer.keyid not in ev.keys, "the serving key signed only predictions: not evidence"
    assert any(rel == "wasInvalidatedBy" and src == i.model for _, rel, src, _, _ in ev.facts.edges)
    assert not any(n.startswith("provault:predict/") for n in ev.downstream)


def test_a_revoked_key_behind_the_model_comes_with_its_revocation(ledger: Ledger, story: Story) -> None:
    ledger.append(ledger.revocation(story.trainer.signer))
    sign_and_project(ledger)
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        ev = gather(conn, "sentiment")
    trainer = ev.keys[story.trainer.signer.keyid]
    assert trainer.revoked and trainer.revoked_seq == 9


@pytest.mark.parametrize(
    ("name", "error", "fragment"),
    [
        ("no-such-model", ModelNotFound, "no model labelled 'no-such-model'"),
        ("sha256:" + "ab" * 32, ModelNotFound, "no model sha256:abab"),
        ("sha256:" + "11" * 32, ModelNotFound, "not a model"),
    ],
)
def test_an_unknown_model_is_refused_by_name(
    ledger: Ledger, story: Story, name: str, error: type, fragment: str
) -> None:
    with psycopg.connect(ledger.dsn, autocommit=True) as conn, pytest.raises(error, match=fragment):
        gather(conn, name)


def test_a_ledger_without_a_checkpoint_is_not_covered_yet(ledger: Ledger, logged_story: Story) -> None:
    with psycopg.connect(ledger.dsn, autocommit=True) as conn, pytest.raises(NotCovered, match="no checkpoint"):
        gather(conn, "sentiment")


def test_an_as_of_beyond_the_checkpoint_is_refused(ledger: Ledger, story: Story) -> None:
    with (
        psycopg.connect(ledger.dsn, autocommit=True) as conn,
        pytest.raises(NotCovered, match="newer than the latest checkpoint"),
    ):
        gather(conn, "sentiment", as_of_seq=99)
