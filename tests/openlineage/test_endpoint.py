"""The OpenLineage endpoint in a real stack: the openlineage-python client, exact bytes kept, idempotency, bad input."""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from datetime import UTC, datetime

import pytest
from openlineage.client import OpenLineageClient
from openlineage.client.event_v2 import InputDataset, Job, OutputDataset, Run, RunEvent, RunState
from openlineage.client.facet_v2 import parent_run, schema_dataset
from openlineage.client.transport.http import HttpConfig, HttpTransport

from ledger.cli import main
from ledger.core.vocab import ol_dataset_id, ol_run_id
from tests.openlineage.conftest import OlStack, post, wait_delivered
from tests.openlineage.schemas import errors
from tests.openlineage.test_spec import BAD, body, run_event


def _client(ol: OlStack) -> OpenLineageClient:
    base = ol.url.removesuffix("/api/v1/lineage")
    return OpenLineageClient(transport=HttpTransport(HttpConfig(url=base, endpoint="api/v1/lineage", timeout=10)))


def _event(run_id: str, state: RunState, name: str) -> RunEvent:
    return RunEvent(
        eventType=state,
        eventTime=datetime.now(UTC).isoformat(),
        run=Run(
            runId=run_id,
            facets={
                "parent": parent_run.ParentRunFacet(
                    run=parent_run.Run(runId=str(uuid.uuid4())), job=parent_run.Job(namespace="airflow", name="dag")
                )
            },
        ),
        job=Job(namespace="airflow", name=f"dag.{name}"),
        producer="https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
        inputs=[
            InputDataset(
                namespace="s3://raw",
                name=f"{name}.csv",
                facets={
                    "schema": schema_dataset.SchemaDatasetFacet(
                        fields=[schema_dataset.SchemaDatasetFacetFields(name="id", type="int")]
                    )
                },
            )
        ],
        outputs=[OutputDataset(namespace="postgres://db:5432", name=f"public.{name}")],
    )


def test_the_openlineage_client_posts_and_a_trace_follows_the_pipeline(ol_stack: OlStack, capsys) -> None:
    before = len(ol_stack.entries())
    run_id = str(uuid.uuid4())
    client = _client(ol_stack)
    client.emit(_event(run_id, RunState.START, "orders"))
    client.emit(_event(run_id, RunState.COMPLETE, "orders"))
    logged = wait_delivered(ol_stack, before + 2)[before:]
    assert [e["kind"] for e in logged] == ["openlineage.run", "openlineage.run"]
    for entry in logged:
        sealed = entry["event"]["data"]["openlineage"]
        received = json.loads(sealed["raw"])
        assert errors(received) == []  # what the real client sent is a valid 2-0-2 RunEvent
        assert received["run"]["runId"] == run_id
        assert sealed["kind"] == "RunEvent" and sealed["credential"]["id"] == "dev-mode"
    ol_stack.projected(logged[-1]["seq"])
    code = main(
        ["trace", "--data-dir", str(ol_stack.settings.data_dir), "--json", "dataset:postgres://db:5432:public.orders"]
    )
    answer = json.loads(capsys.readouterr().out)
    assert code == 0
    ids = {n["id"] for n in answer["nodes"]}
    assert {
        ol_dataset_id("postgres://db:5432", "public.orders"),
        ol_run_id(run_id),
        ol_dataset_id("s3://raw", "orders.csv"),
    } <= ids
    run = next(n for n in answer["nodes"] if n["id"] == ol_run_id(run_id))
    assert run["attributes"]["provault:state"] == "COMPLETE" and "prov:startTime" in run["attributes"]


def test_the_received_bytes_are_kept_exactly(ol_stack: OlStack) -> None:
    before = len(ol_stack.entries())
    event = run_event(run__runId=str(uuid.uuid4()))
    event["run"]["facets"]["acme"] = {"_producer": "https://a", "_schemaURL": "https://a#/F", "cost": 1}
    text = json.dumps(event, indent=1, ensure_ascii=False).replace(
        '"cost": 1', '"cost": 1.50e0, "note": "caf\u00e9 \U0001f600 \\u00e9"'
    )
    raw = text.encode("utf-8")
    status, _, answer = post(ol_stack.url, raw)
    assert (status, answer["status"], answer["flags"]) == (201, "accepted", [])
    [entry] = wait_delivered(ol_stack, before + 1)[before:]
    sealed = entry["event"]["data"]["openlineage"]
    assert entry["event"]["id"] == answer["event_id"]
    assert sealed["raw"].encode("utf-8") == raw
    assert sealed["sha256"] == "sha256:" + hashlib.sha256(raw).hexdigest()


def test_a_repost_in_any_layout_is_a_duplicate_and_adds_nothing(ol_stack: OlStack) -> None:
    event = run_event(run__runId=str(uuid.uuid4()), eventType="COMPLETE")
    before = len(ol_stack.entries())
    first = post(ol_stack.url, body(event))
    again = post(ol_stack.url, json.dumps(dict(reversed(event.items())), indent=4).encode())
    assert (first[0], first[2]["status"]) == (201, "accepted")
    assert (again[0], again[2]["status"], again[2]["event_id"]) == (201, "duplicate", first[2]["event_id"])
    changed = copy.deepcopy(event)
    changed["eventType"] = "FAIL"
    assert post(ol_stack.url, body(changed))[2]["status"] == "accepted"
    assert len(wait_delivered(ol_stack, before + 2)) == before + 2


@pytest.mark.parametrize(("what", "raw", "status", "member", "rule"), BAD[::3], ids=[b[0] for b in BAD[::3]])
def test_bad_events_get_their_status_and_the_log_is_unchanged(
    ol_stack: OlStack, what, raw, status, member, rule
) -> None:
    before = ol_stack.entries()
    code, _, answer = post(ol_stack.url, raw)
    assert (code, answer["code"], answer["member"], answer["rule"]) == (status, status, member, rule)
    assert answer["message"].startswith(f"{member}: ")
    marker = run_event(run__runId=str(uuid.uuid4()))  # delivered after the bad one: nothing came in between
    assert post(ol_stack.url, body(marker))[0] == 201
    after = wait_delivered(ol_stack, len(before) + 1)
    assert after[: len(before)] == before and len(after) == len(before) + 1


def test_size_type_and_method_are_refused_with_their_codes(ol_stack: OlStack) -> None:
    big = run_event()
    big["run"]["facets"]["blob"] = {"_producer": "https://a", "_schemaURL": "https://a#/F", "x": "y" * 600_000}
    code, _, answer = post(ol_stack.url, body(big))
    assert (code, answer["member"], answer["rule"]) == (413, "$", "size")
    assert "524288" in answer["message"]
    code, _, answer = post(ol_stack.url, body(run_event()), headers={"Content-Type": "text/plain"})
    assert code == 415 and "text/plain" in answer["message"]
    import urllib.error  # noqa: PLC0415
    import urllib.request  # noqa: PLC0415

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(ol_stack.url, timeout=10)
    assert caught.value.code == 405


def test_a_large_event_with_its_facets_is_kept(ol_stack: OlStack) -> None:
    before = len(ol_stack.entries())
    event = run_event(run__runId=str(uuid.uuid4()))
    fields = [{"name": f"col_{i}_\U0001f600", "type": "varchar", "description": "d" * 40} for i in range(4000)]
    event["inputs"][0]["facets"]["schema"]["fields"] = fields
    raw = body(event)
    assert len(raw) > 300_000
    status, _, answer = post(ol_stack.url, raw)
    assert status == 201, answer
    [entry] = wait_delivered(ol_stack, before + 1)[before:]
    assert entry["event"]["data"]["openlineage"]["raw"].encode() == raw


def test_every_answer_is_counted_by_status(ol_stack: OlStack) -> None:
    from ledger.metrics import REGISTRY  # noqa: PLC0415

    def count(status: int | None = None) -> float:
        if status is None:
            return REGISTRY.get_sample_value("provault_openlineage_request_seconds_count") or 0.0
        return REGISTRY.get_sample_value("provault_openlineage_requests_total", {"status": str(status)}) or 0.0

    before = {s: count(s) for s in (201, 400, 413, 415, None)}
    assert post(ol_stack.url, body(run_event(run__runId=str(uuid.uuid4()))))[0] == 201
    assert post(ol_stack.url, b"{not json")[0] == 400
    assert post(ol_stack.url, b"{}", headers={"Content-Type": "text/plain"})[0] == 415
    assert post(ol_stack.url, b"[" + b" " * 600_000 + b"]")[0] == 413
    assert {s: count(s) - before[s] for s in before} == {201: 1, 400: 1, 413: 1, 415: 1, None: 4}
