"""MLflow against a real provault stack (embedded PostgreSQL and NATS) and real MLflow stores."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow  # the [mlflow] extra, which [dev] includes: without it these tests fail, they do not skip
import pytest

from agents.mlflow import recorder as recording
from agents.mlflow._marks import Marks
from agents.runtime import Agent, agent_from_settings
from ledger.cli import main
from ledger.core.keyring import KeyRegistration
from ledger.core.keys import Ed25519Signer
from ledger.keyadmin import register_key
from tests.openlineage.conftest import OlStack, ol_stack, wait_until  # noqa: F401 - ol_stack is a fixture


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> OlStack:
    """A real one-machine stack (the OpenLineage tests' ``ol_stack``), shared by a module's tests."""
    return request.getfixturevalue("ol_stack")


def producer_agent(stack: OlStack, pid: str, *, who: str = "ada@example.org") -> Agent:
    """An agent whose key the stack's ledger knows, as producer ``pid``."""
    signer = register_producer(stack, pid, who=who)
    settings = dataclasses.replace(stack.settings, agent=dataclasses.replace(stack.settings.agent, producer_id=pid))
    return agent_from_settings(settings, signer=signer)


def register_producer(stack: OlStack, pid: str, *, who: str = "ada@example.org") -> Ed25519Signer:
    """A new key, registered in the stack's ledger for producer ``pid`` and every kind."""
    signer = Ed25519Signer.generate()
    reg = KeyRegistration(
        keyid=signer.keyid,
        public_key=signer.public_key,
        role="producer",
        identity={"type": "person", "name": who},
        kinds=("*",),
        producers=(pid,),
    )
    register_key(stack.settings, reg, target=str(stack.endpoints.ledger_grpc))
    return signer


@pytest.fixture(autouse=True)
def _no_default_recorder() -> Iterator[None]:
    """A test that does not set up recording must not record with the developer's own agent and data directory."""

    def refuse():
        raise AssertionError("this test recorded MLflow calls without the `recorded` fixture")

    old = recording.set_recorder(recording.Recorder(refuse))
    try:
        yield
    finally:
        recording.set_recorder(old)


@dataclasses.dataclass
class Recording:
    recorder: recording.Recorder
    agent: Agent
    marks_dir: Path


@pytest.fixture
def recorded(stack: OlStack, tmp_path: Path) -> Iterator[Recording]:
    """The store plugins record with this test's own agent (a producer the stack knows) and marks."""
    agent = producer_agent(stack, f"mlflow-test@{tmp_path.name}")
    marks_dir = tmp_path / "marks"
    rec = recording.Recorder(lambda: (agent, Marks(marks_dir)), who="carol@example.org")
    old = recording.set_recorder(rec)
    try:
        yield Recording(rec, agent, marks_dir)
    finally:
        rec.close(30)
        recording.set_recorder(old)
        agent.close(timeout=5)


@contextlib.contextmanager
def tracking_at(uri: str) -> Iterator[str]:
    """MLflow's tracking and registry URIs set to ``uri`` while the block runs (an active run ended after it)."""
    before = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        if mlflow.active_run() is not None:
            mlflow.end_run()
        mlflow.set_tracking_uri(before)
        mlflow.set_registry_uri(before)


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[str]:
    """A fresh SQLite tracking store behind the plugin, artifacts under the test's directory."""
    with tracking_at(f"provault+sqlite:///{tmp_path / 'mlflow.db'}") as uri:
        experiment = mlflow.create_experiment("provault-tests", artifact_location=(tmp_path / "artifacts").as_uri())
        mlflow.set_experiment(experiment_id=experiment)
        yield uri


def trace(stack: OlStack, capsys, start: str, *flags: str) -> dict[str, Any]:
    code = main(["trace", "--data-dir", str(stack.settings.data_dir), "--json", *flags, start])
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def entries_of(stack: OlStack, producer: str, count: int = 1, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The log's entries of ``producer`` once there are at least ``count`` (delivery is acknowledged before commit)."""
    found: list[dict[str, Any]] = []

    def enough() -> bool:
        found[:] = [e for e in stack.entries("") if e["event"]["producer"]["id"] == producer]
        return len(found) >= count

    wait_until(enough, timeout, f"{count} entries of {producer} in the log")
    return found
