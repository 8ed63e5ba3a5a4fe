"""The store plugins with real MLflow (SQLite backend): an autologged scikit-learn run, a registered and aliased
version, a served prediction, then the trace and the impact through the real ledger and projection."""

from __future__ import annotations

import csv
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

import agents
from agents.mlflow.serving import serve
from ledger.core.vocab import git_id, mlflow_model_id, mlflow_run_id, mlflow_version_id, prediction_id
from ledger.metrics import REGISTRY
from tests.mlflow.conftest import Recording, entries_of, trace
from tests.openlineage.conftest import OlStack

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _data(tmp_path: Path) -> tuple[Path, pd.DataFrame]:
    path = tmp_path / "houses.csv"
    rows = [(s, s * 3 + (i % 5), int(s > 80)) for i, s in enumerate(range(40, 140))]
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([("size", "price", "big"), *rows])
    return path, pd.read_csv(path)


def test_an_autologged_run_registered_aliased_and_served_traces_back_and_impacts_forward(
    stack: OlStack, recorded: Recording, tracking: str, tmp_path: Path, capsys
) -> None:
    path, frame = _data(tmp_path)
    X, y = frame[["size", "price"]], frame["big"]
    raw = agents.register_dataset(path, name="houses", author="ada@example.org", agent=recorded.agent)
    mlflow.sklearn.autolog(log_input_examples=False, silent=True)
    try:
        with mlflow.start_run(run_name="train-big", tags={"mlflow.source.git.commit": COMMIT}) as run:
            mlflow.log_input(mlflow.data.from_pandas(frame, source=str(path), name="houses"), context="training")
            mlflow.log_param("note", "first")
            for step in range(3):
                mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
            model = LogisticRegression(max_iter=200).fit(X, y)
            info = mlflow.sklearn.log_model(model, name="clf", input_example=X.head(2))
    finally:
        mlflow.sklearn.autolog(disable=True)
    version = mlflow.register_model(info.model_uri, "big-houses")
    client = mlflow.MlflowClient()
    client.set_registered_model_alias("big-houses", "champion", version.version)
    assert recorded.recorder.flush(60), recorded.recorder.stats
    assert recorded.recorder.stats.failures == 0, recorded.recorder.stats.last_error

    served = serve("models:/big-houses@champion", deployment="big-houses-prod", agent=recorded.agent)
    expected = model.predict(X.head(3))
    predicted, ids = served.model.call("predict", X.head(3))
    assert list(predicted) == list(expected)  # the served answers are the model's own
    served.logger.close(20)
    assert recorded.agent.flush(30)
    mine = entries_of(stack, recorded.agent.producer_id, 9)
    stack.projected(max(e["seq"] for e in mine))

    kinds = [e["kind"] for e in mine]
    assert kinds.count("run.started") == 1 and kinds.count("run.completed") == 1
    assert kinds.count("model.deployed") == 2  # the alias, then the serving process
    run_node = mlflow_run_id(run.info.run_id)

    up = trace(stack, capsys, ids[0])
    nodes = {n["id"]: n for n in up["nodes"]}
    assert {run_node, raw, git_id(COMMIT)} <= set(nodes)
    assert mlflow_version_id("big-houses", version.version) in nodes
    assert mlflow_model_id(info.model_id) in nodes
    attrs = nodes[run_node]["attributes"]
    assert '"note":"first"' in attrs["provault:params"] and '"loss":0.3333333333333333' in attrs["provault:metrics"]
    assert attrs["provault:mlflowStatus"] == "FINISHED"
    assert any(n.startswith("provault:person/") for n in nodes)  # the run's MLflow user

    down = trace(stack, capsys, raw, "--down")
    reached = {n["id"] for n in down["nodes"]}
    assert {run_node, mlflow_model_id(info.model_id), mlflow_version_id("big-houses", version.version)} <= reached
    assert served.deployment in reached
    assert {prediction_id(i) for i in ids} <= set(down["predictions"]["ids"])


def test_registry_changes_are_deployments_and_undeployments_by_who_made_them(
    stack: OlStack, recorded: Recording, tracking: str, tmp_path: Path, capsys
) -> None:
    with mlflow.start_run() as run:
        mlflow.log_param("a", 1)
        (tmp_path / "model").mkdir()
        (tmp_path / "model" / "weights.bin").write_bytes(b"weights")
        mlflow.log_artifacts(str(tmp_path / "model"), "model")
    client = mlflow.MlflowClient()
    client.create_registered_model("stages")
    v1 = client.create_model_version("stages", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    client.set_registered_model_alias("stages", "prod", v1.version)
    client.delete_registered_model_alias("stages", "prod")
    client.transition_model_version_stage("stages", v1.version, "Production")
    client.transition_model_version_stage("stages", v1.version, "Archived")
    assert recorded.recorder.flush(60) and recorded.recorder.stats.failures == 0, recorded.recorder.stats.last_error
    assert recorded.agent.flush(30)
    mine = entries_of(stack, recorded.agent.producer_id, 7)
    assert [e["kind"] for e in mine] == [
        "run.started",
        "run.completed",
        "model.registered",
        "model.deployed",
        "model.undeployed",
        "model.deployed",
        "model.undeployed",
    ]
    stack.projected(max(e["seq"] for e in mine))
    down = trace(stack, capsys, f"models:/stages/{v1.version}", "--down")
    carol = "provault:person/carol@example.org"
    assert any(n["id"].startswith("provault:deployment/stages@prod/") for n in down["nodes"])
    assert any(n["id"].startswith("provault:deployment/stages/Production/") for n in down["nodes"])
    up = trace(stack, capsys, f"models:/stages/{v1.version}")
    assert mlflow_run_id(run.info.run_id) in {n["id"] for n in up["nodes"]}  # a runs:/ source: derived from the run
    by_kind = {e["kind"]: e["event"] for e in mine}
    undeploy = by_kind["model.undeployed"]["prov"]
    assert any(a.get("prov:agent") == carol for a in undeploy["wasAssociatedWith"].values())


def test_mlflow_errors_propagate_unchanged_and_nothing_is_recorded_for_them(recorded: Recording, tracking: str) -> None:
    client = mlflow.MlflowClient()
    with pytest.raises(mlflow.exceptions.MlflowException) as plugin_error:
        client.set_registered_model_alias("no-such-model", "prod", "1")
    plain = mlflow.MlflowClient(tracking_uri=tracking.removeprefix("provault+"))
    with pytest.raises(mlflow.exceptions.MlflowException) as plain_error:
        plain.set_registered_model_alias("no-such-model", "prod", "1")
    assert plugin_error.value.error_code == plain_error.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert str(plugin_error.value) == str(plain_error.value)
    assert recorded.recorder.flush(10)
    assert recorded.recorder.stats.recorded == 0 and recorded.recorder.stats.failures == 0


def test_when_recording_fails_mlflow_still_works_and_the_failure_is_logged_and_counted(
    tracking: str, caplog: pytest.LogCaptureFixture
) -> None:
    from agents.mlflow import recorder as recording  # noqa: PLC0415
    from ledger.core.errors import KeyMaterialError  # noqa: PLC0415

    def no_key():
        raise KeyMaterialError("the producer key /nowhere/producer.key does not exist")

    rec = recording.Recorder(no_key)
    old = recording.set_recorder(rec)
    try:
        with mlflow.start_run() as run:
            mlflow.log_metric("m", 2.0)
        assert rec.flush(10)
        scraped = REGISTRY.get_sample_value("provault_mlflow_calls_total", {"outcome": "failed"})
    finally:
        rec.close(5)
        recording.set_recorder(old)
    assert scraped == 2
    stored = mlflow.MlflowClient().get_run(run.info.run_id)
    assert stored.data.metrics == {"m": 2.0} and stored.info.status == "FINISHED"
    assert rec.stats.failures == 2 and rec.stats.recorded == 0  # the run's start and its end
    assert (
        "run_created was not recorded in provault: the producer key /nowhere/producer.key does not exist" in caplog.text
    )


def test_with_provault_unreachable_mlflow_is_unchanged_and_the_events_wait_in_the_spool(
    stack: OlStack, tracking: str, tmp_path: Path
) -> None:
    """NATS answers nowhere: the run is recorded to the spool; an agent with the same producer id delivers it later."""
    import dataclasses  # noqa: PLC0415
    import socket  # noqa: PLC0415

    from agents.mlflow import recorder as recording  # noqa: PLC0415
    from agents.mlflow._marks import Marks  # noqa: PLC0415
    from agents.runtime import agent_from_settings  # noqa: PLC0415
    from ledger.config import NatsSettings  # noqa: PLC0415
    from tests.mlflow.conftest import register_producer  # noqa: PLC0415

    pid = f"offline@{tmp_path.name}"
    signer = register_producer(stack, pid)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    offline_settings = dataclasses.replace(
        stack.settings,
        nats=NatsSettings(url=f"nats://127.0.0.1:{closed_port}"),
        agent=dataclasses.replace(stack.settings.agent, producer_id=pid, publish_timeout_s=0.5),
    )
    offline = agent_from_settings(offline_settings, signer=signer)
    rec = recording.Recorder(lambda: (offline, Marks(tmp_path / "marks")))
    old = recording.set_recorder(rec)
    try:
        with mlflow.start_run() as run:
            mlflow.log_params({"lr": 0.1, "depth": 3})
            mlflow.log_metric("acc", 0.9)
        assert rec.flush(20)
        assert offline.pending() == 2 and not offline.flush(1)
    finally:
        rec.close(5)
        recording.set_recorder(old)
        offline.close(timeout=0.5)
    stored = mlflow.MlflowClient().get_run(run.info.run_id)
    assert stored.data.params == {"lr": "0.1", "depth": "3"} and stored.data.metrics == {"acc": 0.9}

    later = agent_from_settings(
        dataclasses.replace(stack.settings, agent=dataclasses.replace(stack.settings.agent, producer_id=pid)),
        signer=signer,
    )
    try:
        assert later.flush(30)
    finally:
        later.close(timeout=5)
    assert [e["kind"] for e in entries_of(stack, pid, 2)] == ["run.started", "run.completed"]


def test_with_the_tracking_server_down_mlflow_fails_as_it_would_without_the_plugin_and_nothing_is_recorded(
    recorded: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket  # noqa: PLC0415

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries would take minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        down = f"http://127.0.0.1:{s.getsockname()[1]}"
    errors = []
    for uri in (down, f"provault+{down}"):
        with pytest.raises(mlflow.exceptions.MlflowException) as failed:
            mlflow.MlflowClient(tracking_uri=uri).create_run("0")
        errors.append(str(failed.value).replace("provault+", ""))
    assert errors[0] == errors[1]
    assert recorded.recorder.flush(10) and recorded.recorder.stats.recorded == 0
