"""A small ML story as signed events: data -> training run -> model -> deployment -> predictions.

Pure (no database): :func:`build_story` returns the sealed envelopes in log
order plus the ids a test needs.  The projection and traversal tests append
them with ``tests/ledgerkit.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed
from ledger.core.vocab import (
    deploy_activity_id,
    deployment_id,
    git_id,
    host_id,
    person_id,
    predict_batch_id,
    run_id,
    service_id,
)

T0 = datetime(2025, 3, 2, 9, 0, tzinfo=UTC)  # in the past: the ledger refuses future times


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def xsd_time(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Ids:
    dataset: str = "sha256:" + "11" * 32
    model: str = "sha256:" + "22" * 32
    code: str = git_id("4f0c2a9e")
    run: str = run_id("019cade2-0000-7000-8000-000000000001")
    author: str = person_id("alice@example.com")
    host: str = host_id("gpu-07")
    deployer: str = person_id("bob@example.com")
    approver: str = person_id("carol@example.com")
    deploy: str = deploy_activity_id("019cade2-0000-7000-8000-000000000002")
    deployment: str = deployment_id("sentiment-prod", "019cade2-0000-7000-8000-000000000002")
    batch: str = predict_batch_id("019cade2-0000-7000-8000-000000000003")
    server: str = service_id("sentiment-server")
    predictions: tuple[str, ...] = ("req-1", "req-2", "req-3")


@dataclass
class Story:
    ids: Ids
    trainer: ProducerChain
    deployer: ProducerChain
    server: ProducerChain
    dataset: Sealed
    started: Sealed
    completed: Sealed
    model: Sealed
    deployed: Sealed
    predicted: Sealed
    events: list[Sealed] = field(default_factory=list)


def dataset_registered(chain: ProducerChain, i: Ids) -> Sealed:
    return chain.emit(
        "dataset.registered",
        {
            "entity": {
                i.dataset: {
                    "prov:type": "provault:Dataset",
                    "prov:label": "reviews v1",
                    "provault:uri": "s3://data/reviews.csv",
                }
            },
            "agent": {i.author: {"prov:type": {"$": "prov:Person", "type": "prov:QUALIFIED_NAME"}}},
            "wasAttributedTo": {"_:a1": {"prov:entity": i.dataset, "prov:agent": i.author}},
        },
        time=at(1),
    )


def run_started(chain: ProducerChain, i: Ids) -> Sealed:
    return chain.emit(
        "run.started",
        {
            "activity": {i.run: {"prov:startTime": xsd_time(at(2)), "provault:name": "train sentiment"}},
            "entity": {i.dataset: {}, i.code: {"provault:remote": "git@example.com:ml/sentiment"}},
            "agent": {i.author: {}, i.host: {}},
            "used": {
                "_:u1": {"prov:activity": i.run, "prov:entity": i.dataset},
                "_:u2": {"prov:activity": i.run, "prov:entity": i.code},
            },
            "wasAssociatedWith": {
                "_:w1": {"prov:activity": i.run, "prov:agent": i.author},
                "_:w2": {"prov:activity": i.run, "prov:agent": i.host},
            },
        },
        data={"params": {"epochs": 3}},
        time=at(2),
    )


def run_completed(chain: ProducerChain, i: Ids) -> Sealed:
    return chain.emit(
        "run.completed",
        {
            "activity": {i.run: {"prov:endTime": xsd_time(at(30)), "provault:metrics": '{"f1": 0.91}'}},
            "entity": {i.model: {}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": i.model, "prov:activity": i.run, "prov:time": xsd_time(at(30))}},
            "wasDerivedFrom": {
                "_:d1": {"prov:generatedEntity": i.model, "prov:usedEntity": i.dataset, "prov:activity": i.run}
            },
        },
        time=at(30),
    )


def model_registered(chain: ProducerChain, i: Ids) -> Sealed:
    return chain.emit(
        "model.registered",
        {
            "entity": {i.model: {"prov:type": "provault:Model", "prov:label": "sentiment", "provault:version": "1"}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": i.model, "prov:activity": i.run}},
            "wasAttributedTo": {"_:a1": {"prov:entity": i.model, "prov:agent": i.author}},
        },
        time=at(31),
    )


def model_deployed(chain: ProducerChain, i: Ids) -> Sealed:
    return chain.emit(
        "model.deployed",
        {
            "activity": {i.deploy: {"prov:startTime": xsd_time(at(40))}},
            "entity": {i.model: {}, i.deployment: {"prov:type": "provault:Deployment", "prov:label": "sentiment-prod"}},
            "agent": {i.deployer: {}, i.approver: {}},
            "used": {"_:u1": {"prov:activity": i.deploy, "prov:entity": i.model}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": i.deployment, "prov:activity": i.deploy}},
            "wasDerivedFrom": {"_:d1": {"prov:generatedEntity": i.deployment, "prov:usedEntity": i.model}},
            "wasAssociatedWith": {
                "_:w1": {"prov:activity": i.deploy, "prov:agent": i.deployer},
                "_:w2": {"prov:activity": i.deploy, "prov:agent": i.approver, "prov:role": "provault:approver"},
            },
        },
        time=at(40),
    )


def predictions_logged(chain: ProducerChain, i: Ids, rows: list | None = None) -> Sealed:
    rows = (
        rows
        if rows is not None
        else [
            [pid, xsd_time(at(50 + n)), "sha256:" + f"{n + 3:02d}" * 32, "pos" if n % 2 == 0 else "neg"]
            for n, pid in enumerate(i.predictions)
        ]
    )
    return chain.emit(
        "predictions.logged",
        {
            "activity": {i.batch: {"prov:startTime": xsd_time(at(50)), "prov:endTime": xsd_time(at(53))}},
            "entity": {i.deployment: {}, i.model: {}},
            "agent": {i.server: {}},
            "used": {
                "_:u1": {"prov:activity": i.batch, "prov:entity": i.deployment},
                "_:u2": {"prov:activity": i.batch, "prov:entity": i.model},
            },
            "wasAssociatedWith": {"_:w1": {"prov:activity": i.batch, "prov:agent": i.server}},
        },
        data={"deployment": i.deployment, "model": i.model, "columns": ["id", "time", "input", "output"], "rows": rows},
        time=at(53),
    )


def build_story(
    trainer: ProducerChain | None = None, deployer: ProducerChain | None = None, server: ProducerChain | None = None
) -> Story:
    """The six events of the story, each producer with its own key unless chains are given."""
    i = Ids()
    trainer = trainer or ProducerChain("trainer@gpu-07", Ed25519Signer.generate())
    deployer = deployer or ProducerChain("deployer@ci", Ed25519Signer.generate())
    server = server or ProducerChain("server@serving-1", Ed25519Signer.generate())
    s = Story(
        ids=i,
        trainer=trainer,
        deployer=deployer,
        server=server,
        dataset=dataset_registered(trainer, i),
        started=run_started(trainer, i),
        completed=run_completed(trainer, i),
        model=model_registered(trainer, i),
        deployed=model_deployed(deployer, i),
        predicted=predictions_logged(server, i),
    )
    s.events = [s.dataset, s.started, s.completed, s.model, s.deployed, s.predicted]
    return s
