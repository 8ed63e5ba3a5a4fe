"""Runs, pipeline steps, datasets, models and deployments: their PROV documents, and delivery end to end.

The shape tests hand runs a recorder in place of the agent (the one method a
run calls is ``emit``); every recorded document must pass our validator and
the independent ``prov`` reader.  The last tests go through a real agent,
JetStream and the ingest into the ledger.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any

import pytest

import agents
from agents import capture
from agents.assets import register_dataset, register_model
from agents.runs import MAX_STEPS_PER_METRIC, RunStateError, current_run, uri_id
from agents.runtime import Agent
from agents.transport import NatsTransport
from ledger.config import AgentSettings, Settings
from ledger.core.envelope import parse_envelope
from ledger.core.errors import InvalidArgument
from ledger.core.events import Event, parse_event
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import with_prefixes
from ledger.core.provjson import validate_prov
from ledger.store import entries
from tests.ledgerkit import Ledger
from tests.service.natskit import wait_for

AUTHOR = "trainer@example.com"


# --- helpers shared with test_cli_run.py and test_docs_agents.py ------------------------------


class Recorder:
    """Takes the place of an Agent for runs: keeps what they emit."""

    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any], dict[str, Any] | None]] = []
        self.described: set[str] = set()

    def first_description(self, content_id: str) -> bool:
        first = content_id not in self.described
        self.described.add(content_id)
        return first

    def emit(self, kind: str, prov: dict[str, Any], *, data: dict[str, Any] | None = None) -> str:
        self.events.append((kind, prov, data))
        return f"event-{len(self.events)}"

    def kinds(self) -> list[str]:
        return [k for k, _, _ in self.events]

    def prov(self, kind: str, index: int = 0) -> dict[str, Any]:
        return [p for k, p, _ in self.events if k == kind][index]


def read_with_prov_package(doc: dict[str, Any]) -> Any:
    """Validate ``doc`` as emitted (provault prefixes added) with our rules and the independent reader."""
    prov_model = pytest.importorskip("prov.model")
    doc = with_prefixes(doc)
    validate_prov(doc)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return prov_model.ProvDocument.deserialize(content=json.dumps(doc), format="json")


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    done = subprocess.run(
        ["git", "-c", "commit.gpgsign=false", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def git_repo(repo: Path, files: dict[str, str], *, ignore: tuple[str, ...] = ()) -> str:
    """A fresh repository at ``repo`` with ``files`` committed; returns the commit."""
    repo.mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    git(repo, "config", "user.email", AUTHOR)
    git(repo, "config", "user.name", "Tess Trainer")
    for name, text in {**files, ".gitignore": "".join(f"{p}\n" for p in ignore)}.items():
        (repo / name).write_text(text)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "training code")
    return git(repo, "rev-parse", "HEAD")


def relations(doc: dict[str, Any], section: str) -> list[dict[str, Any]]:
    return list(doc.get(section, {}).values())


def ledger_events(ledger: Ledger, producer: str | None = None) -> list[Event]:
    """Every logged event (of ``producer``), parsed from the exact envelope bytes the ledger stored."""
    events = [parse_event(parse_envelope(e.envelope).payload) for e in entries.iter_entries(ledger.conn)]
    return [e for e in events if producer is None or e.producer.id == producer]


def thaw(value: Any) -> Any:
    """Plain dicts and lists from an event's frozen prov / data."""
    return json.loads(json.dumps(value, default=lambda v: dict(v) if hasattr(v, "items") else list(v)))


@pytest.fixture(autouse=True)
def _digest_cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the per-user digest cache out of the developer's home."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr("agents._prov._default_cache", None)


# --- run documents ----------------------------------------------------------------------------


def test_run_documents_follow_the_vocabulary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    commit = git_repo(tmp_path / "repo", {"train.py": "print('train')\n"}, ignore=("*.csv", "*.pkl"))
    monkeypatch.chdir(tmp_path / "repo")
    Path("data.csv").write_text("x,y\n1,0\n")
    rec = Recorder()
    with agents.run("train-fraud", params={"C": 1.0, "layers": [2, 3]}, agent=rec) as r:  # type: ignore[arg-type]
        assert current_run() is r
        data = r.use("data.csv")
        Path("model.pkl").write_bytes(b"weights")
        r.metric("accuracy", 0.93)
        r.metric("loss", 0.5, step=1)
        r.metric("loss", 0.25, step=2)
        model = r.produce("model.pkl", kind="model", name="fraud model")
    assert current_run() is None
    assert rec.kinds() == ["run.started", "run.completed"]
    assert r.event_ids == ["event-1", "event-2"] and r.status == "completed"
    assert data.id == sha256_of(Path("data.csv")) and model.id == sha256_of(Path("model.pkl"))

    started, (_, _, env_data) = rec.prov("run.started"), rec.events[0]
    act = started["activity"][r.id]
    assert act["provault:name"] == "train-fraud"
    assert json.loads(act["provault:params"]) == {"C": 1.0, "layers": [2, 3]}
    code = started["entity"][f"provault:git/{commit}"]
    assert code["provault:commit"] == commit and code["provault:dirty"] is False and code["provault:branch"] == "main"
    env_id = next(e for e, a in started["entity"].items() if a["prov:type"]["$"] == "provault:Environment")
    canonical = json.dumps(env_data["environment"], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert env_id == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest(), "the id is recomputable from data"
    used = {u["prov:entity"]: u["prov:role"] for u in relations(started, "used")}
    assert used == {f"provault:git/{commit}": "provault:code", env_id: "provault:environment"}
    assoc = {w["prov:agent"] for w in relations(started, "wasAssociatedWith")}
    assert assoc == {f"provault:person/{AUTHOR}", capture.environment().host_id}
    assert started["agent"][f"provault:person/{AUTHOR}"]["prov:label"] == "Tess Trainer"

    done = rec.prov("run.completed")
    end = done["activity"][r.id]
    assert json.loads(end["provault:metrics"]) == {"accuracy": 0.93, "loss": 0.25}
    assert json.loads(end["provault:metricSteps"]) == {"loss": [[1, 0.5], [2, 0.25]]}
    assert {u["prov:entity"]: u["prov:role"] for u in relations(done, "used")} == {data.id: "provault:data"}
    (gen,) = relations(done, "wasGeneratedBy")
    assert (gen["prov:entity"], gen["prov:activity"], gen["prov:time"]) == (model.id, r.id, end["prov:endTime"])
    assert relations(done, "wasDerivedFrom") == [
        {"prov:generatedEntity": model.id, "prov:usedEntity": data.id, "prov:activity": r.id}
    ]
    assert done["entity"][model.id]["prov:label"] == "fraud model"
    for _, doc, _ in rec.events:
        read_with_prov_package(doc)


def test_inputs_declared_before_start_are_in_run_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("d.csv").write_text("1\n")
    rec = Recorder()
    r = agents.Run("wrapped", agent=rec, command="python train.py")  # type: ignore[arg-type]
    data = r.use("d.csv")
    r.start()
    r.complete(exit_code=0)
    started = rec.prov("run.started")
    assert started["activity"][r.id]["provault:command"] == "python train.py"
    assert "provault:codeUnknown" in started["activity"][r.id], "no repository here: the gap is recorded"
    assert {u["prov:entity"] for u in relations(started, "used")} >= {data.id}
    assert "used" not in rec.prov("run.completed")
    assert rec.prov("run.completed")["activity"][r.id]["provault:exitCode"] == 0


def test_an_agent_describes_an_environment_in_its_first_run_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rec, other = Recorder(), Recorder()
    for agent in (rec, rec, other):
        r = agents.Run("train", agent=agent)  # type: ignore[arg-type]
        r.start()
        r.complete(exit_code=0)
    first, second = (data for kind, _, data in rec.events if kind == "run.started")
    (third,) = (data for kind, _, data in other.events if kind == "run.started")
    assert first is not None and first["environment"]["distributions"] and second is None
    assert third == first  # another agent (another producer chain) describes it again
    envs = {
        u["prov:entity"]
        for a in (rec, other)
        for kind, prov, _ in a.events
        if kind == "run.started"
        for u in relations(prov, "used")
        if u["prov:role"] == "provault:environment"
    }
    assert len(envs) == 1


def test_an_exception_emits_run_failed_and_propagates_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    class DivergedError(RuntimeError):
        pass

    rec = Recorder()
    boom = DivergedError("loss is nan at step 7")
    with pytest.raises(DivergedError) as caught:
        with agents.run("train", agent=rec) as r:  # type: ignore[arg-type]
            r.metric("loss", float("nan"))
            raise boom
    assert caught.value is boom
    assert rec.kinds() == ["run.started", "run.failed"] and r.status == "failed"
    failed = rec.prov("run.failed")["activity"][r.id]
    assert failed["provault:errorType"].endswith(
        "test_an_exception_emits_run_failed_and_propagates_unchanged.<locals>.DivergedError"
    )
    assert failed["provault:error"] == "loss is nan at step 7"
    assert json.loads(failed["provault:metrics"]) == {"loss": "nan"}
    read_with_prov_package(rec.prov("run.failed"))
    with pytest.raises(RunStateError, match="has already failed"):
        r.use("anything")


def test_sys_exit_zero_completes_and_keyboard_interrupt_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rec = Recorder()
    with pytest.raises(SystemExit):
        with agents.run("a", agent=rec):  # type: ignore[arg-type]
            raise SystemExit(0)
    with pytest.raises(KeyboardInterrupt):
        with agents.run("b", agent=rec):  # type: ignore[arg-type]
            raise KeyboardInterrupt
    assert rec.kinds() == ["run.started", "run.completed", "run.started", "run.failed"]
    assert next(iter(rec.prov("run.failed")["activity"].values()))["provault:errorType"] == "KeyboardInterrupt"


def test_metric_values_are_checked_and_series_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rec = Recorder()
    with agents.run("m", agent=rec) as r:  # type: ignore[arg-type]
        for step in range(MAX_STEPS_PER_METRIC + 5):
            r.metric("loss", 1.0 / (step + 1), step=step)
        r.metric("auc", float("inf"))
        with pytest.raises(InvalidArgument, match="a number"):
            r.metric("ok", True)
        with pytest.raises(InvalidArgument, match="a number"):
            r.metric("ok", "high")
    end = next(iter(rec.prov("run.completed")["activity"].values()))
    series = json.loads(end["provault:metricSteps"])["loss"]
    assert len(series) == MAX_STEPS_PER_METRIC and series[0][0] == 5, "the latest steps are kept"
    assert json.loads(end["provault:metrics"])["auc"] == "inf"


def test_uris_are_named_by_their_text_and_flagged_not_content_addressed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    rec = Recorder()
    with agents.run("u", agent=rec) as r:  # type: ignore[arg-type]
        a = r.use("https://user:secret@data.example.com/reviews.csv")
        b = r.use("sha256:" + "ab" * 32, name="known bytes")
    assert a.id == uri_id("https://data.example.com/reviews.csv")
    assert a.id == "provault:uri/" + hashlib.sha256(b"https://data.example.com/reviews.csv").hexdigest()
    assert b.id == "sha256:" + "ab" * 32
    entity = rec.prov("run.completed")["entity"][a.id]
    assert (
        entity["provault:contentAddressed"] is False
        and entity["provault:uri"] == "https://data.example.com/reviews.csv"
    )
    assert "secret" not in json.dumps(rec.events)
    read_with_prov_package(rec.prov("run.completed"))


# --- pipelines --------------------------------------------------------------------------------


def test_nested_steps_link_up_with_was_informed_by(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    rec = Recorder()

    @agents.step(agent=rec)
    def featurize() -> str:
        run = current_run()
        assert run is not None
        return run.id

    @agents.step("train", agent=rec)
    async def train() -> str:
        run = current_run()
        assert run is not None
        return run.id

    loose = agents.step("alone", agent=rec)
    with loose as alone:
        pass
    with agents.run("pipeline", agent=rec) as pipeline:  # type: ignore[arg-type]
        with agents.step("prepare", agent=rec) as prepare:
            feat = featurize()
        trained = asyncio.run(train())
    informed = {
        i["prov:informed"]: i["prov:informant"] for _, p, _ in rec.events for i in relations(p, "wasInformedBy")
    }
    assert informed == {prepare.id: pipeline.id, feat: prepare.id, trained: pipeline.id}
    assert alone.id not in informed
    names = {
        a: v["provault:name"]
        for _, p, _ in rec.events
        for a, v in p.get("activity", {}).items()
        if "provault:name" in v
    }
    assert (
        names[feat] == "test_nested_steps_link_up_with_was_informed_by.<locals>.featurize" and names[trained] == "train"
    )
    assert rec.kinds().count("run.completed") == 5
    for _, doc, _ in rec.events:
        read_with_prov_package(doc)


# --- datasets, models, deployments --------------------------------------------------------------


def test_dataset_model_and_deployment_documents(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("raw.csv").write_text("a\n1\n2\n")
    Path("clean.csv").write_text("a\n1\n")
    Path("model.pkl").write_bytes(b"m")
    rec = Recorder()
    raw = register_dataset("raw.csv", name="raw", author="dana@example.com", agent=rec)  # type: ignore[arg-type]
    clean = register_dataset("clean.csv", name="clean", derived_from=[raw], uri="s3://lake/clean.csv", agent=rec)  # type: ignore[arg-type]
    with agents.run("train", agent=rec) as r:  # type: ignore[arg-type]
        model = register_model("model.pkl", name="fraud", version="3", agent=rec)  # type: ignore[arg-type]
    deployment = agents.deploy_model(
        model,
        name="fraud prod",
        target="k8s://prod/fraud",
        approved_by="carol@example.com",
        deployer="provault:service/ci",
        agent=rec,
    )  # type: ignore[arg-type]
    assert rec.kinds() == [
        "dataset.registered",
        "dataset.registered",
        "run.started",
        "model.registered",
        "run.completed",
        "model.deployed",
    ]

    first = rec.prov("dataset.registered")
    assert first["entity"][raw]["prov:label"] == "raw" and first["entity"][raw]["provault:bytes"] == 6
    assert relations(first, "wasAttributedTo") == [
        {"prov:entity": raw, "prov:agent": "provault:person/dana@example.com"}
    ]
    second = rec.prov("dataset.registered", 1)
    assert second["entity"][clean]["provault:uri"] == "s3://lake/clean.csv"
    assert relations(second, "wasDerivedFrom") == [{"prov:generatedEntity": clean, "prov:usedEntity": raw}]

    reg = rec.prov("model.registered")
    assert reg["entity"][model]["provault:version"] == "3" and model == sha256_of(Path("model.pkl"))
    assert relations(reg, "wasGeneratedBy") == [{"prov:entity": model, "prov:activity": r.id}], "the enclosing run"

    dep = rec.prov("model.deployed")
    uuid = deployment.rsplit("/", 1)[1]
    assert deployment == f"provault:deployment/fraud%20prod/{uuid}"
    assert dep["activity"][f"provault:deploy/{uuid}"]["provault:target"] == "k8s://prod/fraud"
    assert relations(dep, "used") == [{"prov:activity": f"provault:deploy/{uuid}", "prov:entity": model}]
    assert relations(dep, "wasGeneratedBy") == [{"prov:entity": deployment, "prov:activity": f"provault:deploy/{uuid}"}]
    assert relations(dep, "wasDerivedFrom")[0]["prov:usedEntity"] == model
    roles = {w["prov:agent"]: w.get("prov:role") for w in relations(dep, "wasAssociatedWith")}
    assert roles == {"provault:service/ci": None, "provault:person/carol@example.com": "provault:approver"}
    for _, doc, _ in rec.events:
        read_with_prov_package(doc)


def test_registering_a_uri_without_bytes_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="content id"):
        register_dataset("s3://lake/x.csv", name="x", agent=Recorder())  # type: ignore[arg-type]
    with pytest.raises(capture.CaptureError, match="an existing path"):
        register_model(tmp_path / "missing.pkl", name="x", agent=Recorder())  # type: ignore[arg-type]


# --- end to end: agent, JetStream, ingest, ledger ---------------------------------------------------

PRODUCER = "trainer@host-1/sdk"


def registered_agent(ledger: Ledger, settings: Settings, url: str, tmp_path: Path, producer: str = PRODUCER) -> Agent:
    key = Ed25519Signer.generate()
    ledger.append(ledger.registration(key, producers=["trainer@*"]))
    return Agent(
        producer_id=producer,
        signer=key,
        spool_dir=tmp_path / "spool",
        state_dir=tmp_path / "state",
        transport=NatsTransport(url, settings.nats, producer, timeout_s=5.0),
        settings=AgentSettings(publish_timeout_s=5.0),
    )


@pytest.mark.postgres
@pytest.mark.nats
def test_events_arrive_verified_through_the_real_ingest(
    tmp_path, monkeypatch, ledger, ingest, settings, nats_target
) -> None:
    commit = git_repo(tmp_path / "repo", {"train.py": "pass\n"}, ignore=("*.csv", "*.pkl"))
    monkeypatch.chdir(tmp_path / "repo")
    Path("data.csv").write_text("x\n1\n")
    with registered_agent(ledger, settings, nats_target.url, tmp_path) as agent:
        with agents.run("pipeline", agent=agent) as pipeline:
            with agents.step("train", agent=agent) as r:
                r.use("data.csv")
                Path("model.pkl").write_bytes(b"model")
                r.metric("accuracy", 0.9)
                r.produce("model.pkl")
        model = register_model("model.pkl", name="m", run=r, agent=agent)
        deployment = agents.deploy_model(model, name="prod", target="local", agent=agent)
        assert agent.flush(timeout=30)
    wait_for(lambda: len(ledger_events(ledger, PRODUCER)) == 6, what="the six events in the ledger")
    events = ledger_events(ledger, PRODUCER)
    assert ledger.rejections() == []
    assert [e.kind for e in events] == [
        "run.started",
        "run.started",
        "run.completed",
        "run.completed",
        "model.registered",
        "model.deployed",
    ]
    step_started = thaw(events[1].prov)
    assert relations(step_started, "wasInformedBy") == [{"prov:informed": r.id, "prov:informant": pipeline.id}]
    assert f"provault:git/{commit}" in step_started["entity"]
    assert thaw(events[2].prov)["wasGeneratedBy"]
    assert deployment in thaw(events[5].prov)["entity"]
    for e in events:
        read_with_prov_package(thaw(e.prov))
    env = {e.kind: e.data for e in events[:2]}
    assert thaw(events[0].data)["environment"]["distributions"] and events[1].data is None, env  # described once
    env_ids = [
        u["prov:entity"]
        for e in events[:2]
        for u in relations(thaw(e.prov), "used")
        if u["prov:role"] == "provault:environment"
    ]
    assert len(env_ids) == 2 and env_ids[0] == env_ids[1]  # and named by its content id after
