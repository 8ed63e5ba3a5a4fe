"""An OpenLineage job in the lineage explorer, on the stack `provault up` runs, in Debian's headless chromium."""

from __future__ import annotations

import urllib.parse
import uuid

import pytest

from ledger.core.vocab import ol_dataset_id, ol_job_id, ol_run_id
from tests.browserkit import browser_tab
from tests.openlineage.conftest import OlStack, post, wait_delivered
from tests.openlineage.test_spec import body, run_event

pytestmark = pytest.mark.browser


def test_a_pipeline_job_opens_by_its_openlineage_name_through_the_up_sign_in_link(ol_stack: OlStack) -> None:
    run = str(uuid.uuid4())
    event = run_event(
        eventType="COMPLETE",
        run__runId=run,
        job={"namespace": "airflow", "name": "etl.build_features"},
        inputs=[{"namespace": "s3://raw", "name": "clicks.csv"}],
        outputs=[{"namespace": "postgres://wh:5432", "name": "analytics.click_features"}],
    )
    before = len(ol_stack.entries())
    assert post(ol_stack.url, body(event))[0] == 201
    ol_stack.projected(wait_delivered(ol_stack, before + 1)[-1]["seq"])

    link = dict((n, u) for n, u, _ in ol_stack.endpoints.services)["explorer"]
    assert "/login/link?key=" in link  # dev mode: `provault up` prints a one-time sign-in link
    view = urllib.parse.urlencode({"id": "job:airflow:etl.build_features", "direction": "both", "depth": "2"})
    with browser_tab() as tab:
        page = tab.page
        page.goto(f"{link}#{view}")  # the link signs in; the browser keeps the view across the redirect
        page.wait_for_selector("body[data-ready='1'][data-busy='0'] #graph[data-open-ms]")
        drawn = set(page.evaluate("() => window.provaultExplorer.cy.nodes().map((n) => n.id())"))
        job = ol_job_id("airflow", "etl.build_features")
        assert {job, ol_run_id(run)} <= drawn
        assert any(n.startswith(ol_dataset_id("s3://raw", "clicks.csv")) for n in drawn), drawn
        assert any(n.startswith(ol_dataset_id("postgres://wh:5432", "analytics.click_features")) for n in drawn)
        assert page.locator("#details #node-facts td").first.text_content() == job
        # The job has no edges of its own: its runs name it as their plan, and the view links them to it.
        edges = page.evaluate("() => window.provaultExplorer.graph.edges.map((e) => [e.from, e.relation, e.to])")
        assert [ol_run_id(run), "hadPlan", job] in edges
        assert page.text_content("#messages p.limit") == "a plan: drawn through the 1 run that followed it"
        # Its impact: what its runs wrote.
        page.click("#impact-go")
        page.wait_for_selector("#impact:not([hidden])")
        reached = page.locator("#impact-nodes li").evaluate_all("(items) => items.map((li) => li.dataset.id)")
        assert ol_run_id(run) in reached
        assert any(n.startswith(ol_dataset_id("postgres://wh:5432", "analytics.click_features")) for n in reached)
        assert tab.take_errors() == []
