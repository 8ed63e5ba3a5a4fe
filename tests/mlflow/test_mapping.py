"""The PROV shape of MLflow's runs, models and registry changes (pure), and the names trace takes for them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import mlflow
import prov.model
import pytest
from mlflow.entities import Dataset, DatasetInput, InputTag

from agents.capture import digest_path
from agents.mlflow import _facts, _mapping
from agents.mlflow._mapping import DatasetFacts, ModelFacts, RunFacts, VersionFacts
from ledger.core.provjson import validate_prov
from ledger.core.vocab import (
    mlflow_dataset_id,
    mlflow_model_id,
    mlflow_node_candidates,
    mlflow_run_id,
    mlflow_version_id,
)


@pytest.mark.parametrize(
    ("text", "nodes"),
    [
        ("runs:/0123abcd/model", [mlflow_run_id("0123abcd")]),
        ("runs:/0123abcd", [mlflow_run_id("0123abcd")]),
        ("models:/m-77aa", [mlflow_model_id("m-77aa")]),
        ("models:/fraud/3", [mlflow_version_id("fraud", "3")]),
        ("models:/team/fraud/12", [mlflow_version_id("team/fraud", "12")]),
        ("models:/fraud@champion", []),  # an alias moves: ask for the version
        ("models:/fraud/Production", []),
        ("runs:/", []),
        ("models:/", []),
        ("dataset:s3://raw:src.csv", []),
        ("sha256:" + "0" * 64, []),
    ],
)
def test_mlflow_uris_name_their_nodes_and_other_text_names_none(text: str, nodes: list[str]) -> None:
    assert mlflow_node_candidates(text) == nodes


def _run(**kw) -> RunFacts:
    run = RunFacts(
        run_id="9fc95b42761e41f88135483a957fc922",
        experiment_id="1",
        name="fit",
        user="ada",
        start_ms=1_700_000_000_000,
        end_ms=1_700_000_060_000,
        status="FINISHED",
        tracking="sqlite:///mlflow.db",
        tags={"mlflow.source.git.commit": "ab" * 20, "mlflow.parentRunId": "p1", "team": "risk"},
        params={"lr": "0.1"},
    )
    for key, value in kw.items():
        setattr(run, key, value)
    return run


def _valid(doc: dict) -> dict:
    validate_prov(doc)
    prov.model.ProvDocument.deserialize(content=json.dumps(doc), format="json")  # an independent PROV-JSON reader
    return doc


def test_a_run_start_names_code_author_and_parent_and_its_end_carries_params_metrics_and_inputs() -> None:
    run = _run()
    run.add_input(DatasetFacts(id="sha256:" + "1" * 64, name="train", digest="d1", context="training"))
    run.add_input(DatasetFacts(id="sha256:" + "2" * 64, name="holdout", digest="d2", context="eval"))
    run.add_metric("loss", 0.5, 0, 1)
    run.add_metric("loss", 0.25, 1, 2)
    run.add_metric("loss", 0.9, 0, 3)  # an earlier step logged later: MLflow's latest value stays the higher step's
    started, data = _mapping.run_started(run)
    _valid(started)
    assert data is None
    assert started["used"]["_:u1"] == {
        "prov:activity": run.id,
        "prov:entity": "provault:git/" + "ab" * 20,
        "prov:role": "provault:code",
    }
    assert {"prov:informed": run.id, "prov:informant": mlflow_run_id("p1")} in started["wasInformedBy"].values()
    assert json.loads(started["activity"][run.id]["provault:tags"]) == {"team": "risk"}
    assert started["activity"][run.id]["prov:label"] == "fit"  # what trace and the explorer show
    kind, ended = _mapping.run_ended(run)
    _valid(ended)
    assert kind == "run.completed"
    attrs = ended["activity"][run.id]
    assert json.loads(attrs["provault:metrics"]) == {"loss": 0.25}
    assert json.loads(attrs["provault:metricSteps"]) == {"loss": [[0, 0.5], [1, 0.25], [0, 0.9]]}
    roles = {u["prov:entity"]: u["prov:role"] for u in ended["used"].values()}
    assert roles == {"sha256:" + "1" * 64: "provault:data", "sha256:" + "2" * 64: "provault:evaluation"}


@pytest.mark.parametrize("status", ["FAILED", "KILLED"])
def test_a_run_that_did_not_finish_is_a_failed_run_with_mlflows_status(status: str) -> None:
    kind, ended = _mapping.run_ended(_run(status=status))
    assert kind == "run.failed"
    assert ended["activity"][mlflow_run_id("9fc95b42761e41f88135483a957fc922")]["provault:error"] == (
        f"the MLflow run ended with status {status}"
    )


def test_metric_values_mlflow_accepts_but_json_does_not_are_kept_as_text_and_steps_are_bounded() -> None:
    run = _run()
    run.add_metric("nan", math.nan, None, 1)
    run.add_metric("inf", math.inf, None, 1)
    for step in range(_mapping.MAX_STEPS_PER_METRIC + 5):
        run.add_metric("s", float(step), step, step)
    run.add_metric("s", float(step), step, step)  # logged twice in a row: kept once
    assert run.metrics["nan"] == "nan" and run.metrics["inf"] == "inf"
    assert len(run.steps["s"]) == _mapping.MAX_STEPS_PER_METRIC and run.steps["s"][-1] == [step, float(step)]
    _valid(_mapping.run_ended(run)[1])


def test_a_logged_model_is_its_content_a_specialization_of_the_mlflow_model_derived_from_training_data() -> None:
    from agents._prov import Artifact  # noqa: PLC0415

    run = _run()
    run.add_input(DatasetFacts(id="sha256:" + "1" * 64, name="train", digest="d1"))
    content = Artifact(id="sha256:" + "3" * 64, role="model", size=10, files=3)
    doc = _valid(
        _mapping.logged_model(
            ModelFacts(model_id="m-1", name="clf", run_id=run.run_id, artifact_location="/a", content=content), run
        )
    )
    assert {"prov:specificEntity": content.id, "prov:generalEntity": mlflow_model_id("m-1")} in doc[
        "specializationOf"
    ].values()
    derived = [d for d in doc["wasDerivedFrom"].values()]
    assert derived == [
        {"prov:generatedEntity": content.id, "prov:usedEntity": "sha256:" + "1" * 64, "prov:activity": run.id}
    ]
    unread = _valid(
        _mapping.logged_model(
            ModelFacts(
                model_id="m-2", name="x", run_id=None, artifact_location=None, content=None, digest_error="gone"
            ),
            None,
        )
    )
    assert unread["entity"][mlflow_model_id("m-2")]["provault:digestUnknown"] == "gone"


def test_a_version_derives_from_its_logged_model_or_its_runs_source_and_registry_moves_are_deployments() -> None:
    from_model = VersionFacts(name="fraud", version="3", source="models:/m-abc")
    assert from_model.logged_model == "m-abc"
    doc = _valid(_mapping.version_registered(from_model, "carol@example.org"))
    assert doc["wasDerivedFrom"]["_:d1"]["prov:usedEntity"] == mlflow_model_id("m-abc")
    from_run = VersionFacts(name="fraud", version="4", source="runs:/r9/model")
    assert from_run.logged_model is None and from_run.source_run == "r9"
    assert _valid(_mapping.version_registered(from_run, None))["wasDerivedFrom"]["_:d1"][
        "prov:usedEntity"
    ] == mlflow_run_id("r9")
    deployed = _valid(
        _mapping.deployed(
            name="fraud",
            version="3",
            target="models:/fraud@prod",
            deployment="fraud@prod",
            uuid="u1",
            who="carol@example.org",
            time="2026-01-01T00:00:00.000000Z",
        )
    )
    assert deployed["entity"]["provault:deployment/fraud@prod/u1"]["provault:target"] == "models:/fraud@prod"
    undeployed = _valid(
        _mapping.undeployed(
            target="models:/fraud@prod", uuid="u2", who=None, time="2026-01-01T00:00:00.000000Z", name="fraud"
        )
    )
    assert "wasAssociatedWith" not in undeployed  # nobody known: no agent invented


def _dataset(source: str, *, context: str | None = "training") -> DatasetInput:
    tags = [InputTag("mlflow.data.context", context)] if context else []
    return DatasetInput(Dataset(name="houses", digest="abc123", source_type="local", source=source), tags)


def test_a_dataset_is_named_by_its_local_bytes_else_its_source_else_mlflows_digest(tmp_path: Path) -> None:
    path = tmp_path / "houses.csv"
    path.write_text("size,price\n50,150\n")
    local = _facts.dataset_facts(_dataset(json.dumps({"uri": str(path)})))
    assert local.id == digest_path(path).id and local.content_addressed
    remote = _facts.dataset_facts(_dataset(json.dumps({"url": "https://user:pw@data.example/houses.csv"})))
    assert remote.id.startswith("provault:uri/") and remote.uri == "https://data.example/houses.csv"
    assert not remote.content_addressed
    nowhere = _facts.dataset_facts(_dataset("{}", context="eval"))
    assert nowhere.id == mlflow_dataset_id("houses", "abc123") and nowhere.role == "evaluation"
    gone = _facts.dataset_facts(_dataset(json.dumps({"uri": str(tmp_path / "deleted.csv")})))
    assert gone.id.startswith("provault:uri/")  # a local path that no longer exists names a place


def test_the_inner_uri_loses_provault_and_recorded_uris_lose_credentials() -> None:
    assert _facts.inner_uri("provault+sqlite:///mlflow.db") == "sqlite:///mlflow.db"
    assert _facts.inner_uri("http://mlflow:5000") == "http://mlflow:5000"
    assert _facts.clean_uri("provault+https://ada:token@mlflow.internal/") == "https://mlflow.internal/"


def test_a_provault_scheme_with_no_inner_store_is_refused_by_mlflow_naming_the_schemes() -> None:
    with pytest.raises(mlflow.exceptions.MlflowException, match="provault\\+sqlite"):
        mlflow.MlflowClient(tracking_uri="provault+nosuch:///x").search_experiments()


def test_the_recorder_keeps_the_facts_of_a_bounded_number_of_open_runs(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from agents.mlflow import recorder as recording  # noqa: PLC0415

    monkeypatch.setattr(recording, "MAX_OPEN_RUNS", 3)
    rec = recording.Recorder(lambda: (_ for _ in ()).throw(AssertionError("no agent is needed to keep facts")))
    for i in range(5):
        rec._on_batch(f"run{i}", [], [], [])
    assert list(rec.runs) == ["run2", "run3", "run4"]
    assert "run run1 has not ended after 3 later runs; its facts were let go" in caplog.text
