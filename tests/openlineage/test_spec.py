"""The endpoint's checks of an OpenLineage event: every bad input with its status, member and rule; the lenient cases."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from agents.openlineage._spec import (
    FLAG_FACET_BASE,
    FLAG_NO_SCHEMA_URL,
    FLAG_NO_ZONE,
    FLAG_SPEC_1,
    BadOpenLineage,
    check_body,
)
from ledger.core.vocab import OPENLINEAGE_DATASET, OPENLINEAGE_JOB, OPENLINEAGE_RUN
from tests.openlineage.schemas import errors

RUN_ID = "0f378631-b22f-4f09-a53d-0fc9c7e44d52"
FACET = {"_producer": "https://example.com/p", "_schemaURL": "https://example.com/s#/$defs/F"}


def run_event(**changes: Any) -> dict[str, Any]:
    event = {
        "eventType": "START",
        "eventTime": "2026-03-02T09:30:00.123Z",
        "producer": "https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python",
        "schemaURL": "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent",
        "run": {"runId": RUN_ID, "facets": {"nominalTime": {**FACET, "nominalStartTime": "2026-03-02T09:00:00Z"}}},
        "job": {"namespace": "airflow", "name": "etl.load_orders"},
        "inputs": [{"namespace": "s3://raw", "name": "orders.csv", "facets": {"schema": {**FACET, "fields": []}}}],
        "outputs": [{"namespace": "postgres://db:5432", "name": "public.orders"}],
    }
    for path, value in changes.items():
        _set(event, path, value)
    return event


def _set(doc: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split("__")
    for part in parents:
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    if value is _DELETE:
        del doc[last]
    else:
        doc[last] = value


_DELETE = object()


def body(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


# (what, body, status, member, rule)
BAD = [
    ("not UTF-8", b'{"eventTime": "\xff"}', 400, "$", "utf-8"),
    ("not JSON", b'{"eventTime": ', 400, "$", "json"),
    ("NaN is not JSON", b'{"x": NaN}', 400, "$", "json"),
    ("a JSON array", b"[]", 400, "$", "object"),
    ("no eventTime", body(run_event(eventTime=_DELETE)), 422, "eventTime", "required"),
    ("eventTime not a time", body(run_event(eventTime="yesterday at noon")), 422, "eventTime", "date-time"),
    ("eventTime a date only", body(run_event(eventTime="2026-03-02")), 422, "eventTime", "date-time"),
    ("eventTime a number", body(run_event(eventTime=1700000000)), 422, "eventTime", "date-time"),
    ("eventTime month 13", body(run_event(eventTime="2026-13-02T09:30:00Z")), 422, "eventTime", "date-time"),
    ("no producer", body(run_event(producer=_DELETE)), 422, "producer", "required"),
    ("producer not a URI", body(run_event(producer="my producer")), 422, "producer", "uri"),
    ("schemaURL not a URI", body(run_event(schemaURL="OpenLineage.json")), 422, "schemaURL", "uri"),
    (
        "no run, job or dataset",
        body({k: v for k, v in run_event(schemaURL=_DELETE).items() if k not in ("run", "job")}),
        422,
        "$",
        "event",
    ),
    (
        "a RunEvent's schemaURL, no run or job",
        body({k: v for k, v in run_event().items() if k not in ("run", "job")}),
        422,
        "run",
        "required",
    ),
    ("a RunEvent without run", body(run_event(run=_DELETE, job=_DELETE)), 422, "run", "required"),
    ("run without job", body(run_event(job=_DELETE)), 422, "job", "required"),
    ("run not an object", body(run_event(run="r1")), 422, "run", "object"),
    ("no runId", body(run_event(run={})), 422, "run.runId", "required"),
    ("runId not a UUID", body(run_event(run__runId="run-1")), 422, "run.runId", "uuid"),
    ("runId a number", body(run_event(run__runId=42)), 422, "run.runId", "uuid"),
    ("eventType unknown", body(run_event(eventType="DONE")), 422, "eventType", "enum"),
    ("job not an object", body(run_event(job=["airflow"])), 422, "job", "object"),
    ("job without name", body(run_event(job={"namespace": "airflow"})), 422, "job.name", "required"),
    ("job name empty", body(run_event(job__name="")), 422, "job.name", "string"),
    ("job namespace a number", body(run_event(job__namespace=3)), 422, "job.namespace", "string"),
    ("inputs not an array", body(run_event(inputs={"name": "x"})), 422, "inputs", "array"),
    ("an input not an object", body(run_event(inputs=["orders.csv"])), 422, "inputs[0]", "object"),
    ("an output without namespace", body(run_event(outputs=[{"name": "t"}])), 422, "outputs[0].namespace", "required"),
    ("run facets not an object", body(run_event(run__facets=[])), 422, "run.facets", "object"),
    ("a facet not an object", body(run_event(run__facets={"parent": "p"})), 422, "run.facets.parent", "object"),
    (
        "dataset facets not an object",
        body(run_event(inputs__0__facets="schema")),
        422,
        "inputs[0].facets",
        "object",
    ),
    (
        "an input facet not an object",
        body(run_event(inputs__0__inputFacets={"dataQualityMetrics": 1})),
        422,
        "inputs[0].inputFacets.dataQualityMetrics",
        "object",
    ),
    (
        "an output facet not an object",
        body(run_event(outputs__0__outputFacets={"outputStatistics": None})),
        422,
        "outputs[0].outputFacets.outputStatistics",
        "object",
    ),
    ("job facets not an object", body(run_event(job__facets=1)), 422, "job.facets", "object"),
    (
        "a job event with a dataset",
        body({**{k: v for k, v in run_event().items() if k != "run"}, "dataset": {"namespace": "a", "name": "b"}}),
        422,
        "dataset",
        "not-allowed",
    ),
    (
        "a dataset event's dataset without name",
        body({**{k: v for k, v in run_event().items() if k not in ("run", "job")}, "dataset": {"namespace": "a"}}),
        422,
        "dataset.name",
        "required",
    ),
]


@pytest.mark.parametrize(("what", "raw", "status", "member", "rule"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_event_is_refused_naming_its_member_and_rule(what, raw, status, member, rule) -> None:
    with pytest.raises(BadOpenLineage) as caught:
        check_body(raw)
    assert (caught.value.status, caught.value.member, caught.value.rule) == (status, member, rule)
    assert str(caught.value).startswith(f"{member}: ")


SCHEMA_AGREES = {
    "no eventTime",
    "no producer",
    "no runId",
    "runId not a UUID",
    "runId a number",
    "eventType unknown",
    "job without name",
    "job namespace a number",
    "inputs not an array",
    "an input not an object",
    "an output without namespace",
    "run not an object",
    "job not an object",
    "a facet not an object",
    "dataset facets not an object",
}


@pytest.mark.parametrize("what", sorted(SCHEMA_AGREES))
def test_the_published_schema_refuses_the_same_events(what: str) -> None:
    raw = next(b[1] for b in BAD if b[0] == what)
    assert errors(json.loads(raw), "RunEvent"), f"the published schema accepts {what!r}"


def test_a_good_run_event_passes_both_and_is_a_run() -> None:
    event = run_event()
    assert errors(event) == []
    checked = check_body(body(event))
    assert (checked.kind, checked.flags) == (OPENLINEAGE_RUN, ())
    assert checked.event_time.isoformat() == "2026-03-02T09:30:00.123000+00:00"
    assert checked.text == body(event).decode()


def test_the_digest_is_of_the_content_not_the_layout() -> None:
    event = run_event()
    compact = json.dumps(event, separators=(",", ":")).encode()
    indented = json.dumps(dict(reversed(event.items())), indent=2).encode()
    a, b = check_body(compact), check_body(indented)
    assert a.digest == b.digest
    assert a.raw_sha256 != b.raw_sha256
    assert check_body(body(run_event(eventType="COMPLETE"))).digest != a.digest


@pytest.mark.parametrize(
    ("changes", "flag"),
    [
        ({"schemaURL": _DELETE}, FLAG_NO_SCHEMA_URL),
        ({"schemaURL": "https://openlineage.io/spec/1-0-5/OpenLineage.json#/definitions/RunEvent"}, FLAG_SPEC_1),
        ({"eventTime": "2026-03-02T09:30:00.123"}, FLAG_NO_ZONE),
        ({"run__facets": {"nominalTime": {"nominalStartTime": "2026-03-02T09:00:00Z"}}}, FLAG_FACET_BASE),
    ],
    ids=["no schemaURL", "spec 1-0-5", "time without zone", "facet without _producer"],
)
def test_lenient_cases_are_accepted_and_flagged(changes: dict[str, Any], flag: str) -> None:
    checked = check_body(body(run_event(**changes)))
    assert checked.flags == (flag,)


def test_a_time_without_zone_is_read_as_utc_and_offsets_are_converted() -> None:
    assert check_body(body(run_event(eventTime="2026-03-02T09:30:00"))).event_time.isoformat() == (
        "2026-03-02T09:30:00+00:00"
    )
    assert check_body(body(run_event(eventTime="2026-03-02T11:30:00+02:00"))).event_time.isoformat() == (
        "2026-03-02T09:30:00+00:00"
    )


def test_job_and_dataset_events_are_told_apart() -> None:
    job = {k: v for k, v in run_event().items() if k not in ("run", "eventType")}
    job["schemaURL"] = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/JobEvent"
    assert errors(job, "JobEvent") == []
    assert check_body(body(job)).kind == OPENLINEAGE_JOB
    dataset = {k: v for k, v in job.items() if k not in ("job", "inputs", "outputs")}
    dataset["dataset"] = {"namespace": "s3://raw", "name": "orders.csv", "facets": {"schema": {**FACET, "fields": []}}}
    dataset["schemaURL"] = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/DatasetEvent"
    assert errors(dataset, "DatasetEvent") == []
    assert check_body(body(dataset)).kind == OPENLINEAGE_DATASET


def test_unknown_members_and_facets_are_kept_not_refused() -> None:
    event = run_event()
    event["x-custom"] = {"deep": [1, 2.50, "\U0001f600"]}
    event["run"]["facets"]["acme_cost"] = {**FACET, "usd": 12.5}
    checked = check_body(body(event))
    assert checked.doc["x-custom"] == {"deep": [1, 2.5, "\U0001f600"]}
    assert copy.deepcopy(checked.doc["run"]["facets"]["acme_cost"])["usd"] == 12.5
