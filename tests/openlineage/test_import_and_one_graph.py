"""Backfill from the ``file`` transport's JSON lines, and one graph across provault's agents and OpenLineage pipelines."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path

import agents
from agents.runtime import agent_from_settings
from ledger.cli import main
from ledger.core.keyring import KeyRegistration
from ledger.core.keys import Ed25519Signer
from ledger.core.vocab import ol_dataset_id, ol_run_id
from ledger.keyadmin import register_key
from tests.openlineage.conftest import OlStack, wait_delivered
from tests.openlineage.test_spec import body, run_event


def _import(ol: OlStack, capsys, *files: Path) -> tuple[int, str, str]:
    code = main(["openlineage", "import", "--data-dir", str(ol.settings.data_dir), *map(str, files)])
    out, err = capsys.readouterr()
    return code, out, err


def test_import_seals_each_good_line_once_and_names_each_bad_one(ol_stack: OlStack, tmp_path: Path, capsys) -> None:
    before = len(ol_stack.entries())
    runs = [str(uuid.uuid4()) for _ in range(3)]
    lines = [body(run_event(run__runId=r)) for r in runs]
    path = tmp_path / "events.jsonl"
    path.write_bytes(
        b"\n".join([lines[0], b"", lines[1], b'{"eventTime": 5, "producer": "https://a"}', lines[2], lines[0]]) + b"\n"
    )
    code, out, err = _import(ol_stack, capsys, path)
    assert code == 1
    assert out.strip() == "3 sealed, 1 already sealed, 1 refused"
    assert err.strip() == f"{path}:4: eventTime: expected an ISO 8601 date-time, found 5 [date-time]"
    logged = wait_delivered(ol_stack, before + 3)[before:]
    assert [json.loads(e["event"]["data"]["openlineage"]["raw"])["run"]["runId"] for e in logged] == runs
    assert logged[0]["event"]["data"]["openlineage"]["credential"]["id"] == "import"
    assert logged[0]["event"]["producer"]["id"].endswith("/import")

    code, out, _ = _import(ol_stack, capsys, path)  # a second import adds nothing
    assert (code, out.strip()) == (1, "0 sealed, 4 already sealed, 1 refused")
    assert len(ol_stack.entries()) == before + 3


def test_an_import_of_a_missing_file_fails_before_anything(ol_stack: OlStack, tmp_path: Path, capsys) -> None:
    code, out, err = _import(ol_stack, capsys, tmp_path / "nope.jsonl")
    assert code == 1 and out == ""
    assert f"{tmp_path / 'nope.jsonl'}: no such file" in err


def test_a_trace_from_a_model_continues_into_the_pipeline_and_impact_comes_back(
    ol_stack: OlStack, tmp_path: Path, capsys
) -> None:
    """Pipeline (OpenLineage): s3://raw/src.csv -> job -> warehouse table; training (agents) reads that table."""
    pipeline_run, table = str(uuid.uuid4()), ("postgres://wh:5432", "analytics.features")
    event = run_event(
        eventType="COMPLETE",
        run__runId=pipeline_run,
        inputs=[{"namespace": "s3://raw", "name": "src.csv"}],
        outputs=[{"namespace": table[0], "name": table[1]}],
    )
    before = len(ol_stack.entries())
    assert _post(ol_stack, event) == 201
    wait_delivered(ol_stack, before + 1)

    signer = Ed25519Signer.generate()
    pid = f"trainer@{tmp_path.name}"
    reg = KeyRegistration(
        keyid=signer.keyid,
        public_key=signer.public_key,
        role="producer",
        identity={"type": "person", "name": "ada@example.org"},
        kinds=("*",),
        producers=(pid,),
    )
    register_key(ol_stack.settings, reg, target=str(ol_stack.endpoints.ledger_grpc))
    settings = dataclasses.replace(
        ol_stack.settings, agent=dataclasses.replace(ol_stack.settings.agent, producer_id=pid)
    )
    features, model = tmp_path / "features.parquet", tmp_path / "model.pkl"
    features.write_bytes(b"feature bytes " + pid.encode())
    with agent_from_settings(settings, signer=signer) as agent:
        data = agents.register_dataset(
            features, name="features", openlineage=table, author="ada@example.org", agent=agent
        )
        with agents.run("train", agent=agent, author="ada@example.org", repo=tmp_path) as r:
            r.use(features, name="features")
            model.write_bytes(b"model bytes " + pid.encode())
            r.produce(model, kind="model")
        model_id = agents.register_model(model, name="m", run=r, author="ada@example.org", agent=agent)
        assert agent.flush(20)
    with_model = [e for e in ol_stack.entries("model.") if e["event"]["producer"]["id"] == pid]
    ol_stack.projected(max(e["seq"] for e in with_model) if with_model else 0)

    up = _trace(ol_stack, capsys, model_id)
    assert {data, ol_dataset_id(*table), ol_run_id(pipeline_run), ol_dataset_id("s3://raw", "src.csv")} <= up
    down = _trace(ol_stack, capsys, "dataset:s3://raw:src.csv", "--down")
    assert {ol_run_id(pipeline_run), ol_dataset_id(*table), data, model_id} <= down


def _post(ol: OlStack, event: dict) -> int:
    from tests.openlineage.conftest import post  # noqa: PLC0415

    return post(ol.url, body(event))[0]


def _trace(ol: OlStack, capsys, start: str, *flags: str) -> set[str]:
    code = main(["trace", "--data-dir", str(ol.settings.data_dir), "--json", *flags, start])
    out, err = capsys.readouterr()
    assert code == 0, err
    return {n["id"] for n in json.loads(out)["nodes"]}
