"""A real MLflow tracking server process: the plugin over HTTP (artifacts proxied), and the server's own webhooks
delivered to the receiver."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.entities.webhook import WebhookEvent

from agents.mlflow._marks import Marks
from agents.mlflow.webhook import Receiver, WebhookApp, WebhookServer
from ledger.core.vocab import mlflow_model_id, mlflow_version_id
from tests.mlflow.conftest import Recording, entries_of, producer_agent, tracking_at
from tests.openlineage.conftest import OlStack

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

SECRET = "webhook-secret-for-tests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``mlflow server`` on a free loopback port, SQLite and artifacts under a temporary directory."""
    where = tmp_path_factory.mktemp("mlflow-server")
    port = _free_port()
    env = {
        **os.environ,
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http",
        "MLFLOW_WEBHOOK_CACHE_TTL": "0",
    }
    log = (where / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{where / 'db.sqlite'}", "--artifacts-destination", str(where / "artifacts")],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start: {(where / 'server.log').read_text()[-2000:]}")
            time.sleep(0.3)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        log.close()


@pytest.fixture
def via_plugin(server: str) -> Iterator[str]:
    with tracking_at(f"provault+{server}") as uri:
        yield uri


def test_the_plugin_over_http_records_a_run_whose_model_artifacts_the_server_proxies(
    stack: OlStack, recorded: Recording, via_plugin: str, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    mlflow.set_experiment("over-http")
    with mlflow.start_run() as run:
        mlflow.log_param("depth", 2)
        info = mlflow.sklearn.log_model(LogisticRegression().fit([[0], [1]], [0, 1]), name="tree")
    version = mlflow.register_model(info.model_uri, "tree")
    assert info.artifact_path.startswith("mlflow-artifacts:") or "mlflow-artifacts" in str(
        mlflow.MlflowClient().get_logged_model(info.model_id).artifact_location
    )
    assert recorded.recorder.flush(60) and recorded.recorder.stats.failures == 0, recorded.recorder.stats.last_error
    assert recorded.agent.flush(30)
    mine = entries_of(stack, recorded.agent.producer_id, 4)
    by_kind = {}
    for e in mine:
        by_kind.setdefault(e["kind"], []).append(e["event"])
    logged = next(ev for ev in by_kind["model.registered"] if mlflow_model_id(info.model_id) in ev["prov"]["entity"])
    contents = [k for k in logged["prov"]["entity"] if k.startswith("sha256:")]
    assert len(contents) == 1, "the proxied artifacts were downloaded and digested"
    registered = next(
        ev for ev in by_kind["model.registered"] if mlflow_version_id("tree", version.version) in ev["prov"]["entity"]
    )
    assert registered["prov"]["specializationOf"]  # the version's content is the logged model's
    assert run.info.run_id in by_kind["run.completed"][0]["prov"]["activity"].popitem()[0]


def test_the_servers_own_webhooks_reach_the_receiver_signed_and_are_recorded(
    stack: OlStack, server: str, tmp_path: Path
) -> None:
    agent = producer_agent(stack, f"mlflow-webhook/{tmp_path.name}")
    marks = Marks(tmp_path / "marks")
    receiver = WebhookServer(
        WebhookApp(Receiver(agent, marks, secret=SECRET.encode(), window_s=300), max_body_bytes=1 << 20),
        listen="127.0.0.1:0",
        tls=None,
    )
    receiver.start()
    try:
        client = mlflow.MlflowClient(tracking_uri=server, registry_uri=server)
        hook = client.create_webhook(
            name=f"provault-{tmp_path.name}",
            url=receiver.url,
            events=[WebhookEvent("model_version", "created"), WebhookEvent("model_version_alias", "created")],
            secret=SECRET,
        )
        try:
            client.create_registered_model(f"hooked-{tmp_path.name}")
            mv = client.create_model_version(f"hooked-{tmp_path.name}", "s3://bucket/model", run_id=None)
            client.set_registered_model_alias(f"hooked-{tmp_path.name}", "prod", mv.version)
            mine = entries_of(stack, agent.producer_id, 2)
        finally:
            client.delete_webhook(hook.webhook_id)
    finally:
        receiver.stop()
    assert [e["kind"] for e in mine] == ["model.registered", "model.deployed"]
    version = mine[0]["event"]["prov"]["entity"][mlflow_version_id(f"hooked-{tmp_path.name}", mv.version)]
    assert version["provault:source"] == "s3://bucket/model"
