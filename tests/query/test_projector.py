"""The projector against a real ledger: rows, seqs, determinism, skips, roles, the service."""

from __future__ import annotations

import logging
import re
import threading
import time
from pathlib import Path

import psycopg
import pytest

from ledger.db import connect
from query import projector
from query._mapping import key_node_id
from query.projector import Projector, checksum, lag, migrate_prov, project, rebuild
from tests.ledgerkit import Ledger
from tests.query.provstory import Story, predictions_logged

pytestmark = pytest.mark.postgres

DOC = Path(__file__).resolve().parents[2] / "docs" / "query.md"
AS_OF_ATTRIBUTES = """
SELECT coalesce(jsonb_object_agg(key, value), '{}') FROM (
    SELECT DISTINCT ON (a.key) a.key, a.value
    FROM prov.node_versions v, jsonb_each(v.attributes) a
    WHERE v.node_id = %s AND v.seq <= %s
    ORDER BY a.key, v.seq DESC) latest
"""


@pytest.fixture
def story(logged_story: Story) -> Story:
    """The story's keys registered (seqs 0-2) and its six events appended (seqs 3-8)."""
    return logged_story


@pytest.fixture
def pconn(ledger: Ledger):
    with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
        yield c


def rows(conn: psycopg.Connection, query: str, *args: object) -> list[tuple]:
    return conn.execute(query, args).fetchall()


def test_the_story_projects_nodes_edges_predictions_with_their_seqs(story: Story, pconn, aconn) -> None:
    assert project(pconn) == 9
    i = story.ids
    node = {r[0]: r[1:] for r in rows(aconn, "SELECT id, node_type, kind, label, first_seq, last_seq FROM prov.nodes")}
    assert node[i.dataset] == ("entity", "provault:Dataset", "reviews v1", 3, 5)
    assert node[i.run] == ("activity", None, None, 4, 6)
    assert node[i.model] == ("entity", "provault:Model", "sentiment", 5, 8)
    assert node[i.author][:1] == ("agent",) and node[i.batch][:1] == ("activity",)
    prov_edges = set(rows(aconn, "SELECT relation, src, dst, seq FROM prov.edges WHERE origin = 'prov'"))
    assert prov_edges == {
        ("wasAttributedTo", i.dataset, i.author, 3),
        ("used", i.run, i.dataset, 4),
        ("used", i.run, i.code, 4),
        ("wasAssociatedWith", i.run, i.author, 4),
        ("wasAssociatedWith", i.run, i.host, 4),
        ("wasGeneratedBy", i.model, i.run, 5),
        ("wasDerivedFrom", i.model, i.dataset, 5),
        ("wasGeneratedBy", i.model, i.run, 6),
        ("wasAttributedTo", i.model, i.author, 6),
        ("wasGeneratedBy", i.deployment, i.deploy, 7),
        ("used", i.deploy, i.model, 7),
        ("wasDerivedFrom", i.deployment, i.model, 7),
        ("wasAssociatedWith", i.deploy, i.deployer, 7),
        ("wasAssociatedWith", i.deploy, i.approver, 7),
        ("used", i.batch, i.deployment, 8),
        ("used", i.batch, i.model, 8),
        ("wasAssociatedWith", i.batch, i.server, 8),
    }
    role = rows(aconn, "SELECT attributes->>'prov:role' FROM prov.edges WHERE dst = %s", i.approver)
    assert role == [("provault:approver",)]
    assert rows(aconn, "SELECT id, activity, seq, output #>> '{}' FROM prov.predictions ORDER BY id") == [
        (f"provault:prediction/req-{n}", i.batch, 8, out) for n, out in ((1, "pos"), (2, "neg"), (3, "pos"))
    ]
    assert rows(aconn, "SELECT count(*), min(seq), max(seq) FROM prov.entries") == [(9, 0, 8)]
    assert rows(aconn, "SELECT count(*) FROM prov.skipped") == [(0,)]
    assert lag(aconn) == (8, 9)


def test_every_step_leads_to_the_key_and_identity_that_signed_it(story: Story, pconn, aconn) -> None:
    project(pconn)
    key = key_node_id(story.server.signer.keyid)
    assert rows(aconn, "SELECT keyid FROM prov.entries WHERE seq = 8") == [(story.server.signer.keyid,)]
    assert rows(aconn, "SELECT dst, seq, origin FROM prov.edges WHERE src = %s", key) == [
        ("provault:person/serving", 2, "key")
    ]
    signers = rows(
        aconn,
        "SELECT seq, key_node, identity->>'name', root_key FROM prov.entry_signers WHERE seq IN (0, 8) ORDER BY seq",
    )
    assert signers == [(0, None, "test-admin", True), (8, key, "serving", False)]


def test_as_of_answers_are_exact(story: Story, pconn, aconn) -> None:
    project(pconn)
    i = story.ids
    at_start = rows(aconn, AS_OF_ATTRIBUTES, i.run, 4)[0][0]
    assert set(at_start) == {"prov:startTime", "provault:name"}
    assert set(rows(aconn, AS_OF_ATTRIBUTES, i.run, 8)[0][0]) == {
        "prov:startTime",
        "provault:name",
        "prov:endTime",
        "provault:metrics",
    }
    assert rows(aconn, "SELECT seq FROM prov.node_versions WHERE node_id = %s ORDER BY seq", i.run) == [
        (4,),
        (5,),
        (6,),
    ]
    upstream_of_model_at_5 = rows(
        aconn, "SELECT relation, dst FROM prov.edges WHERE src = %s AND seq <= 5 ORDER BY seq, ordinal", i.model
    )
    assert upstream_of_model_at_5 == [("wasGeneratedBy", i.run), ("wasDerivedFrom", i.dataset)]
    assert rows(aconn, "SELECT count(*) FROM prov.edges WHERE seq <= 2") == [(3,)]  # the three key attributions


def test_projecting_again_changes_nothing(story: Story, pconn) -> None:
    assert project(pconn) == 9
    before = checksum(pconn)
    assert project(pconn) == 0
    assert checksum(pconn) == before


def test_rebuild_gives_identical_tables_whatever_the_chunking(ledger: Ledger, story: Story, pconn) -> None:
    for _ in range(3):  # project in small steps while the log grows
        project(pconn, batch=2, max_chunks=1)
    assert lag(pconn) == (5, 9)
    ledger.append(
        predictions_logged(story.server, story.ids, [["req-9", "2025-03-02T11:00:00Z", "sha256:" + "09" * 32, 0.5]])
    )
    project(pconn, batch=3)
    incremental = checksum(pconn)
    assert rebuild(pconn) == 10
    assert checksum(pconn) == incremental
    assert rebuild(pconn, batch=1) == 10
    assert checksum(pconn) == incremental
    assert lag(pconn) == (9, 10)
    assert dangling(pconn) == []


# Every reference the projector writes (the database does not check them row by row: V002).
REFERENCES = [
    ("nodes", "first_seq", "entries", "seq"),
    ("nodes", "last_seq", "entries", "seq"),
    ("node_versions", "node_id", "nodes", "id"),
    ("node_versions", "seq", "entries", "seq"),
    ("edges", "seq", "entries", "seq"),
    ("edges", "src", "nodes", "id"),
    ("edges", "dst", "nodes", "id"),
    ("predictions", "seq", "entries", "seq"),
    ("predictions", "activity", "nodes", "id"),
]


def dangling(conn: psycopg.Connection) -> list[tuple[str, str, object]]:
    """(table, column, value) of every projected reference to a row that is not there."""
    out = []
    for table, column, target, key in REFERENCES:
        for (value,) in conn.execute(
            f"SELECT DISTINCT t.{column} FROM prov.{table} t"
            f" WHERE NOT EXISTS (SELECT 1 FROM prov.{target} x WHERE x.{key} = t.{column})"
        ):
            out.append((table, column, value))
    return out


def test_no_projected_reference_dangles(ledger: Ledger, story: Story, pconn) -> None:
    project(pconn)
    assert dangling(pconn) == []
    pconn.execute("SET ROLE NONE")  # the check itself can fail: a version of a node that is not there
    pconn.execute("DELETE FROM prov.nodes WHERE id = %s", (story.ids.batch,))
    found = {(t, c) for t, c, _ in dangling(pconn)}
    assert found == {("node_versions", "node_id"), ("edges", "src"), ("predictions", "activity")}


def test_concurrent_projectors_take_turns(ledger: Ledger, story: Story, pconn) -> None:
    counts: list[int] = []

    def run() -> None:
        with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
            counts.append(project(c, batch=1))

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(counts) == 9 and lag(pconn) == (8, 9)
    together = checksum(pconn)
    rebuild(pconn)
    assert checksum(pconn) == together


def test_an_unprojectable_entry_is_skipped_and_the_projector_moves_on(
    ledger: Ledger, story: Story, pconn, aconn, caplog: pytest.LogCaptureFixture
) -> None:
    bad = predictions_logged(story.server, story.ids, [["req-4", "yesterday", "x", "y"]])
    good = predictions_logged(story.server, story.ids, [["req-5", "2025-03-02T12:00:00Z", "x", "y"]])
    ledger.append(bad, good)
    with caplog.at_level(logging.ERROR, logger="provault.projector"):
        assert project(pconn) == 11
    assert any("log entry 9" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records)
    assert rows(aconn, "SELECT seq, reason FROM prov.skipped") == [(9, "unprojectable")]
    assert "time" in rows(aconn, "SELECT message FROM prov.skipped")[0][0]
    assert rows(aconn, "SELECT count(*) FROM prov.node_versions WHERE seq = 9") == [(0,)]
    assert rows(aconn, "SELECT id, seq FROM prov.predictions WHERE seq > 8") == [("provault:prediction/req-5", 10)]
    assert rows(aconn, "SELECT kind FROM prov.entries WHERE seq = 9") == [("predictions.logged",)]
    assert lag(aconn) == (10, 11)


def test_a_ledger_row_that_contradicts_its_envelope_is_skipped(ledger: Ledger, story: Story, pconn, aconn) -> None:
    with connect(ledger.dsn, autocommit=True) as su:  # only a superuser with triggers off can do this
        su.execute("ALTER TABLE ledger.entries DISABLE TRIGGER entries_no_change")
        su.execute("UPDATE ledger.entries SET kind = 'model.registered' WHERE seq = 3")
        su.execute("ALTER TABLE ledger.entries ENABLE TRIGGER entries_no_change")
    project(pconn)
    assert rows(aconn, "SELECT seq, reason FROM prov.skipped") == [(3, "unprojectable")]
    assert rows(aconn, "SELECT first_seq FROM prov.nodes WHERE id = %s", story.ids.dataset) == [(4,)]


def test_roles_the_auditor_reads_the_projector_writes_only_the_projection(story: Story, pconn, aconn) -> None:
    project(pconn)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        aconn.execute("DELETE FROM prov.nodes")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        pconn.execute("INSERT INTO ledger.keys SELECT * FROM ledger.keys")
    assert rows(aconn, "SELECT count(*) > 0 FROM prov.nodes") == [(True,)]


def test_the_projector_service_follows_the_log(ledger: Ledger, story: Story, aconn) -> None:
    service = Projector(ledger.dsn, poll_s=0.05)
    service.start()
    try:
        deadline = time.monotonic() + 10
        while lag(aconn) != (8, 9) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lag(aconn) == (8, 9)
        ledger.append(predictions_logged(story.server, story.ids, [["req-7", "2025-03-02T12:00:00Z", "x", "y"]]))
        while lag(aconn) != (9, 10) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lag(aconn) == (9, 10)
        assert service.running() and service.projected == 10 and service.last_error is None
    finally:
        service.stop()
    assert not service.running()


def test_the_projector_service_refreshes_the_statistics_once_the_projection_grew(ledger: Ledger, story: Story) -> None:
    service = Projector(ledger.dsn, poll_s=0.05, analyze_after=5)
    service.start()
    try:
        deadline = time.monotonic() + 20
        while service.analyzed == 0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (service.analyzed, service.projected, service.last_error) == (1, 9, None)
    finally:
        service.stop()
    with connect(ledger.dsn, autocommit=True) as conn:
        analyzed = conn.execute(
            "SELECT relname FROM pg_stat_user_tables WHERE schemaname = 'prov' AND last_analyze IS NOT NULL"
        ).fetchall()
    assert {r[0] for r in analyzed} >= {"nodes", "node_versions", "edges", "predictions", "entries"}


def test_migrations_apply_once(ledger: Ledger) -> None:
    assert migrate_prov(ledger.dsn) == [
        "prov V001 prov",
        "prov V002 derived_rows_unchecked",
        "prov V003 projector_may_analyze",
        "prov V004 edges_by_plan",
    ]
    assert migrate_prov(ledger.dsn) == []


def test_the_sql_in_docs_query_md_runs_as_the_auditor(story: Story, pconn, aconn) -> None:
    project(pconn)
    blocks = re.findall(r"^```sql\n(.*?)^```$", DOC.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) == 4
    params = {
        "prediction": "provault:prediction/req-2",
        "node": story.ids.run,
        "seq": 4,
        "time": "2999-01-01T00:00:00Z",
    }
    answers = [aconn.execute(b, params).fetchall() for b in blocks]
    assert answers[0][0][:2] == (story.ids.batch, 8)
    assert [(seq, name) for seq, _, _, name, _ in answers[1]] == [(4, "alice")]
    assert answers[2] == rows(aconn, AS_OF_ATTRIBUTES, story.ids.run, 4)
    assert answers[3] == [(8,)]
