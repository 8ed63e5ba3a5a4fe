"""From an accepted OpenLineage event to PROV, and through the projection's mapping to rows: docs/openlineage.md's table."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import UTC, datetime
from typing import Any

from prov.model import ProvDocument

from agents.openlineage._prov import to_prov
from agents.openlineage._spec import check_body
from ledger.core.events import Event, Producer
from ledger.core.producing import with_prefixes
from ledger.core.provjson import validate_prov
from ledger.core.vocab import (
    git_id,
    ol_dataset_id,
    ol_dataset_version_id,
    ol_job_id,
    ol_run_id,
    openlineage_node_candidates,
    person_id,
    service_id,
)
from query._mapping import fold_nodes, map_event
from tests.openlineage.test_spec import FACET, RUN_ID, body, run_event

PARENT = "11111111-2222-4333-8444-555555555555"
COMMIT = "a" * 40
RAW, ORDERS = ("s3://raw", "orders.csv"), ("postgres://db:5432", "public.orders")


def mapped(event: dict[str, Any], seq: int = 7):
    checked = check_body(body(event))
    prov = with_prefixes(to_prov(checked))
    validate_prov(prov)
    ProvDocument.deserialize(io.StringIO(json.dumps(prov)), format="json")  # the independent reader takes it
    ev = Event(
        id="019cade2-123b-7c41-9e5a-3f0d2b6a8c17",
        time=datetime(2026, 3, 2, tzinfo=UTC),
        kind=checked.kind,
        producer=Producer.first("openlineage/test"),
        prov=prov,
    )
    return map_event(ev, seq)


def edges(rows) -> set[tuple[str, str, str]]:
    return {(e.relation, e.src, e.dst) for e in rows.edges}


def nodes(rows) -> dict[str, dict[str, Any]]:
    return {n.id: dict(n.attributes) for n in rows.nodes}


def test_a_run_reads_datasets_and_writes_a_new_version() -> None:
    rows = mapped(run_event(eventType="COMPLETE"))
    run, raw, orders = ol_run_id(RUN_ID), ol_dataset_id(*RAW), ol_dataset_id(*ORDERS)
    version = ol_dataset_version_id(*ORDERS, run_uuid=RUN_ID)
    assert version == f"{orders}@run/{RUN_ID}"
    producer = service_id("https://github.com/OpenLineage/OpenLineage/tree/1.54.0/client/python")
    assert edges(rows) == {
        ("used", run, raw),
        ("hadMember", orders, version),
        ("wasGeneratedBy", version, run),
        ("wasDerivedFrom", version, raw),
        ("wasAssociatedWith", run, producer),
    }
    n = nodes(rows)
    assert n[run]["prov:endTime"] == "2026-03-02T09:30:00.123000Z"
    assert n[run]["provault:state"] == "COMPLETE"
    assert n[run]["provault:nominalStart"] == "2026-03-02T09:00:00Z"
    assert n[orders]["provault:namespace"] == "postgres://db:5432"
    assert json.loads(n[raw]["provault:schema"]) == []
    association = next(e for e in rows.edges if e.relation == "wasAssociatedWith")
    assert association.attributes["prov:plan"] == ol_job_id("airflow", "etl.load_orders")


def test_start_and_complete_merge_into_one_run_in_either_order() -> None:
    start, complete = run_event(), run_event(eventType="COMPLETE", eventTime="2026-03-02T10:00:00Z")
    for first, second in ((start, complete), (complete, start)):
        merged = fold_nodes([mapped(first, 1), mapped(second, 2)])
        run = merged[ol_run_id(RUN_ID)].attributes
        assert run["prov:startTime"] == "2026-03-02T09:30:00.123000Z"
        assert run["prov:endTime"] == "2026-03-02T10:00:00.000000Z"
        assert run["provault:state"] == "COMPLETE"


def test_a_failed_run_keeps_its_error_message() -> None:
    facets = {"errorMessage": {**FACET, "message": "division by zero", "programmingLanguage": "python"}}
    run = nodes(mapped(run_event(eventType="FAIL", run__facets=facets)))[ol_run_id(RUN_ID)]
    assert (run["provault:state"], run["provault:error"]) == ("FAIL", "division by zero")


def test_parent_owners_and_code_become_runs_agents_and_the_same_code_entity() -> None:
    event = run_event(
        run__facets={
            "parent": {**FACET, "run": {"runId": PARENT}, "job": {"namespace": "airflow", "name": "etl"}},
        },
        job__facets={
            "ownership": {**FACET, "owners": [{"name": "user:ada@example.org"}, {"name": "team:data", "type": "team"}]},
            "sourceCodeLocation": {**FACET, "type": "git", "url": "https://git.example/etl", "version": COMMIT.upper()},
            "sourceCode": {**FACET, "language": "python", "sourceCode": "print('hi')\n"},
            "sql": {**FACET, "query": "SELECT * FROM raw"},
            "jobType": {**FACET, "processingType": "BATCH", "integration": "AIRFLOW", "jobType": "TASK"},
        },
    )
    rows = mapped(event)
    run = ol_run_id(RUN_ID)
    code = "sha256:" + hashlib.sha256(b"print('hi')\n").hexdigest()
    assert {
        ("wasInformedBy", run, ol_run_id(PARENT)),
        ("wasAssociatedWith", run, person_id("ada@example.org")),
        ("wasAssociatedWith", run, service_id("data")),
        ("used", run, git_id(COMMIT)),
        ("used", run, code),
    } <= edges(rows)
    n = nodes(rows)
    job = n[ol_job_id("airflow", "etl.load_orders")]
    assert (job["provault:sql"], job["provault:jobType"]) == ("SELECT * FROM raw", "BATCH/AIRFLOW/TASK")
    assert ol_job_id("airflow", "etl") in n
    assert n[code]["provault:language"] == "python"


def test_a_parent_facet_with_odd_job_members_still_maps() -> None:
    """Facet members beyond their shape are not checked: a parent job's odd namespace or facets must not break it."""
    for job, plan in (
        ({"namespace": 3, "name": "dag"}, ol_job_id("default", "dag")),
        ({"namespace": "", "name": "dag", "facets": {"jobType": "x"}}, ol_job_id("default", "dag")),
        ({"namespace": "airflow"}, None),
    ):
        event = run_event(run__facets={"parent": {**FACET, "run": {"runId": PARENT}, "job": job}})
        rows = mapped(event)
        assert ("wasInformedBy", ol_run_id(RUN_ID), ol_run_id(PARENT)) in edges(rows)
        plans = {e.attributes.get("prov:plan") for e in rows.edges if e.src == ol_run_id(PARENT)}
        assert plans == ({plan} if plan else set())


def test_a_version_facet_names_the_version_and_a_content_digest_is_provaults_own_node() -> None:
    digest = "sha256:" + "b" * 64
    event = run_event(
        eventType="COMPLETE",
        inputs=[
            {"namespace": "s3://raw", "name": "orders.csv", "facets": {"version": {**FACET, "datasetVersion": "v7"}}}
        ],
        outputs=[{"namespace": "s3://clean", "name": "o", "facets": {"version": {**FACET, "datasetVersion": digest}}}],
    )
    rows = mapped(event)
    v7 = ol_dataset_version_id(*RAW, version="v7")
    assert v7 == f"{ol_dataset_id(*RAW)}@v7"
    assert {
        ("used", ol_run_id(RUN_ID), v7),
        ("hadMember", ol_dataset_id(*RAW), v7),
        ("wasGeneratedBy", digest, ol_run_id(RUN_ID)),
        ("wasDerivedFrom", digest, v7),
        ("hadMember", ol_dataset_id("s3://clean", "o"), digest),
    } <= edges(rows)


def test_column_lineage_and_statistics_stay_on_the_output_version() -> None:
    lineage = {
        **FACET,
        "fields": {"total": {"inputFields": [{"namespace": "s3://raw", "name": "orders.csv", "field": "a"}]}},
    }
    event = run_event(
        eventType="COMPLETE",
        outputs=[
            {
                "namespace": "postgres://db:5432",
                "name": "public.orders",
                "facets": {"columnLineage": lineage},
                "outputFacets": {"outputStatistics": {**FACET, "rowCount": 12, "size": 4096}},
            }
        ],
    )
    version = nodes(mapped(event))[ol_dataset_version_id(*ORDERS, run_uuid=RUN_ID)]
    assert json.loads(version["provault:columnLineage"]) == {"total": [["s3://raw", "orders.csv", "a"]]}
    assert (version["provault:rowCount"], version["provault:bytes"]) == (12, 4096)


def test_a_job_event_declares_influence_and_a_dataset_event_describes_the_dataset() -> None:
    job = {k: v for k, v in run_event().items() if k not in ("run", "eventType")}
    plan = ol_job_id("airflow", "etl.load_orders")
    assert edges(mapped(job)) == {
        ("wasInfluencedBy", plan, ol_dataset_id(*RAW)),
        ("wasInfluencedBy", ol_dataset_id(*ORDERS), plan),
    }
    dataset = {k: v for k, v in job.items() if k not in ("job", "inputs", "outputs")}
    dataset["dataset"] = {"namespace": "s3://raw", "name": "orders.csv", "facets": {"schema": {**FACET, "fields": []}}}
    rows = mapped(dataset)
    assert edges(rows) == set()
    assert json.loads(nodes(rows)[ol_dataset_id(*RAW)]["provault:schema"]) == []


def test_the_schema_is_kept_as_names_and_types_nested_fields_dotted() -> None:
    fields = [
        {"name": "id", "type": "int", "description": "the key"},
        {"name": "address", "type": "struct", "fields": [{"name": "city", "type": "string"}]},
    ]
    event = run_event(
        inputs=[{"namespace": "s3://raw", "name": "orders.csv", "facets": {"schema": {**FACET, "fields": fields}}}]
    )
    schema = json.loads(nodes(mapped(event))[ol_dataset_id(*RAW)]["provault:schema"])
    assert schema == [["id", "int"], ["address", "struct"], ["address.city", "string"]]


def test_names_with_separators_and_non_bmp_characters_stay_apart() -> None:
    assert ol_dataset_id("a/b", "c") != ol_dataset_id("a", "b/c")
    assert ol_dataset_id("ns", "t@run/x") != ol_dataset_version_id("ns", "t", run_uuid="x")
    event = run_event(outputs=[{"namespace": "s3://b", "name": "caf\u00e9 \U0001f600"}])
    labels = {n.attributes.get("prov:label") for n in mapped(event).nodes}
    assert "caf\u00e9 \U0001f600" in labels


def test_marquez_style_names_give_the_node_ids_they_may_mean() -> None:
    orders = ol_dataset_id(*ORDERS)
    assert openlineage_node_candidates("dataset:postgres://db:5432:public.orders")[0] == orders
    assert orders in openlineage_node_candidates("dataset:postgres://db:5432:public.orders")
    assert openlineage_node_candidates("job:airflow:etl.load_orders") == [ol_job_id("airflow", "etl.load_orders")]
    assert openlineage_node_candidates(f"run:{RUN_ID.upper()}") == [ol_run_id(RUN_ID)]
    assert openlineage_node_candidates("sha256:abc") == []
    assert openlineage_node_candidates("dataset:nocolon") == []
