"""``provault import mlflow`` against a real MLflow store that never saw the plugin, into the real ledger."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest
from sklearn.linear_model import LinearRegression

from agents.mlflow.cli import importer_settings
from ledger.cli import main
from ledger.core.vocab import mlflow_run_id, mlflow_version_id
from tests.mlflow.conftest import entries_of, trace, tracking_at
from tests.openlineage.conftest import OlStack

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


@pytest.fixture
def history(tmp_path: Path):
    """Two finished runs (one with a logged model), a failed one, one still running; a version, an alias, a stage."""
    uri = f"sqlite:///{tmp_path / 'history.db'}"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.create_experiment("history", artifact_location=(tmp_path / "artifacts").as_uri())
    with tracking_at(uri):
        with mlflow.start_run(experiment_id=exp, run_name="fit", tags={"mlflow.user": "ada"}) as fit:
            mlflow.log_params({"fit_intercept": True})
            mlflow.log_metric("rmse", 0.5)
            info = mlflow.sklearn.log_model(LinearRegression().fit([[0], [1], [2]], [0, 1, 2]), name="reg")
        with mlflow.start_run(experiment_id=exp, run_name="second"):
            mlflow.log_metric("rmse", 0.7)
        with mlflow.start_run(experiment_id=exp, run_name="broken"):
            pass
        broken = mlflow.last_active_run()
        client.set_terminated(broken.info.run_id, "FAILED")
        running = client.create_run(exp, run_name="still-going")
        version = mlflow.register_model(info.model_uri, "regressor")
        client.set_registered_model_alias("regressor", "champion", version.version)
        client.transition_model_version_stage("regressor", version.version, "Staging")
    return uri, fit.info.run_id, running.info.run_id, version.version


@pytest.fixture(scope="module")
def producer_key(stack: OlStack) -> None:
    """The data directory's producer key, made and registered as docs/agents.md tells a user to."""
    key = stack.settings.data_dir / "keys" / "producer.key"
    if not key.exists():
        data = ["--data-dir", str(stack.settings.data_dir)]
        assert main(["keys", "new", str(key), *data]) == 0
        assert (
            main(["keys", "register", f"{key}.pub", "--identity", "person:ada@example.org", "--producers", "*", *data])
            == 0
        )


def _import(stack: OlStack, capsys, *args: str) -> tuple[int, str, str]:
    code = main(["import", "mlflow", "--data-dir", str(stack.settings.data_dir), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_an_import_records_the_history_once_and_a_second_adds_nothing(
    stack: OlStack, producer_key, history, capsys
) -> None:
    uri, fit, running, version = history
    code, out, err = _import(stack, capsys, "--tracking-uri", uri)
    assert code == 0, err
    assert out.startswith("recorded 3 run(s), 1 logged model(s), 1 version(s), 1 alias(es), 1 stage(s) in ")
    assert out.rstrip().endswith("0 already recorded, 1 run(s) still running")
    producer = importer_settings(stack.settings).agent.producer_id
    assert producer.endswith("/mlflow-import")
    mine = entries_of(stack, producer, 7)
    assert sorted(e["kind"] for e in mine) == sorted(
        [
            "run.completed",
            "run.completed",
            "run.failed",
            "model.registered",
            "model.registered",
            "model.deployed",
            "model.deployed",
        ]
    )

    code, out, _ = _import(stack, capsys, "--tracking-uri", uri)
    assert code == 0
    assert out.startswith("recorded 0 run(s), 0 logged model(s), 0 version(s), 0 alias(es), 0 stage(s) in ")
    assert "7 already recorded, 1 run(s) still running" in out
    assert len(entries_of(stack, producer)) == 7

    stack.projected(max(e["seq"] for e in mine))
    up = trace(stack, capsys, f"models:/regressor/{version}")
    nodes = {n["id"]: n for n in up["nodes"]}
    assert mlflow_run_id(fit) in nodes and mlflow_version_id("regressor", version) in nodes
    run = nodes[mlflow_run_id(fit)]["attributes"]
    assert run["provault:experimentName"] == "history" and run["provault:metrics"] == '{"rmse":0.5}'
    assert "provault:person/ada" in nodes
    assert mlflow_run_id(running) not in {n["id"] for n in trace(stack, capsys, f"runs:/{fit}", "--down")["nodes"]}


def test_an_import_of_an_unknown_experiment_or_an_unreachable_server_fails_before_recording(
    stack: OlStack, producer_key, history, capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # MLflow's own retries would take minutes
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    uri, *_ = history
    before = len(stack.entries(""))
    code, _, err = _import(stack, capsys, "--tracking-uri", uri, "--experiment", "nope")
    assert code != 0 and f"no experiment named 'nope' on {uri}" in err
    gone = tmp_path / "typo.db"
    code, _, err = _import(stack, capsys, "--tracking-uri", f"sqlite:///{gone}")
    assert (
        code != 0 and f"no MLflow database at {gone} (from sqlite:///{gone}): MLflow would create an empty one" in err
    )
    assert not gone.exists()
    code, _, err = _import(stack, capsys, "--tracking-uri", "http://127.0.0.1:9", "--no-registry")
    assert code != 0 and "cannot read the tracking server http://127.0.0.1:9" in err
    assert len(stack.entries("")) == before
