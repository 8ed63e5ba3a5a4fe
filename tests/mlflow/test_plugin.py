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
    mine = entries_of(stack, recorded.agent.producer_id)
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
