"""Trace pages: the first is walked alone, the later ones continue one kept walk (or walk again, to the same answer)."""

from __future__ import annotations

import psycopg
import pytest

from ledger.db import connect
from query import _answers_cache, service
from query._answers_cache import AnswerCache
from query.traverse import Trace, TraceEdge, TraceNode, trace
from tests.ledgerkit import Ledger
from tests.query.test_query_service import TIMEOUT, Q, pages, serving
from tests.query.test_traverse import build_lineage


def answer(nodes: int, edges: int = 0) -> Trace:
    ns = tuple(
        TraceNode(id=f"n{i}", type="entity", label=None, kind=None, attributes={}, first_seq=0, seqs=(0,))
        for i in range(nodes)
    )
    es = tuple(
        TraceEdge(relation="used", src="n0", dst=f"n{i}", seq=0, attributes={}, origin="prov") for i in range(edges)
    )
    return Trace(start="n0", direction="upstream", as_of_seq=0, nodes=ns, edges=es, seqs=(0,), truncated=False)


def test_the_cache_keeps_the_most_recent_answers_within_its_bounds() -> None:
    cache = AnswerCache(max_answers=2, max_items=10)
    cache.put("a", answer(3))
    cache.put("b", answer(3))
    assert cache.get("a") is not None  # a is now the most recent
    cache.put("c", answer(3))  # over two answers: b, the least recently used, goes
    assert (cache.get("b"), len(cache)) == (None, 2)
    cache.put("d", answer(2, 3))  # 3 + 3 + 5 items > 10: a goes
    assert cache.get("a") is None and cache.get("c") is not None and cache.get("d") is not None
    cache.put("huge", answer(11))  # larger than the whole cache: never kept
    assert cache.get("huge") is None and len(cache) == 2
    cache.discard("c")
    cache.discard("never-there")
    assert cache.get("c") is None and len(cache) == 1
    assert (cache.hits, cache.misses) == (3, 4)


@pytest.mark.postgres
def test_later_pages_continue_the_walk_of_the_second(ledger: Ledger) -> None:
    li = build_lineage(ledger)
    request = Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM, page_size=3)
    with serving(li) as s:
        expected = pages(s.stub, request)
    assert [len(p.nodes) for p in expected] == [3, 3, 3]
    with serving(li) as s:
        first = s.stub.Trace(request, timeout=TIMEOUT)
        request.page_token = first.next_page_token
        second = s.stub.Trace(request, timeout=TIMEOUT)  # walks the whole answer, and keeps it
        # Behind the server's back, the deployment loses its edges: a new walk would stop at the model.
        with psycopg.connect(ledger.dsn, autocommit=True) as su:
            su.execute("DELETE FROM prov.edges WHERE src = %s OR dst = %s", (li.deployment, li.deployment))
        request.page_token = second.next_page_token
        third = s.stub.Trace(request, timeout=TIMEOUT)
        assert [p.SerializeToString(deterministic=True) for p in (first, second, third)] == [
            p.SerializeToString(deterministic=True) for p in expected
        ]
        fresh = s.stub.Trace(Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM), timeout=TIMEOUT)
        assert li.deployment not in {n.id for n in fresh.nodes}


@pytest.mark.postgres
def test_the_first_page_is_walked_alone_and_knows_no_truncation_yet(ledger: Ledger) -> None:
    li = build_lineage(ledger)
    with serving(li) as s:
        request = Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM, page_size=2, max_nodes=5)
        got = pages(s.stub, request)
        whole = s.stub.Trace(
            Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM, max_nodes=5), timeout=TIMEOUT
        )
    assert [len(p.nodes) for p in got] == [2, 2, 1] and whole.truncated
    assert [n.id for p in got for n in p.nodes] == [n.id for n in whole.nodes]
    assert [p.truncated for p in got] == [False, True, True]  # known once the whole walk is made


@pytest.mark.postgres
def test_a_walk_bounded_to_n_nodes_is_the_first_n_nodes_of_the_answer(ledger: Ledger) -> None:
    build_lineage(ledger)
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as c:
        starts = [r[0] for r in c.execute("SELECT id FROM prov.nodes ORDER BY id")] + ["req-1"]
        checked = 0
        for start in starts:
            for direction in ("upstream", "downstream", "both"):
                full = trace(c, start, direction=direction, predictions_limit=0)
                for n in range(1, len(full.nodes)):
                    part = trace(c, start, direction=direction, max_nodes=n, predictions_limit=0)
                    keep = {x.id for x in full.nodes[:n]}
                    assert [(x.id, x.depth) for x in part.nodes] == [(x.id, x.depth) for x in full.nodes[:n]]
                    assert [e for e in part.edges] == [e for e in full.edges if e.src in keep and e.dst in keep]
                    checked += 1
        assert checked > 300


@pytest.mark.postgres
def test_pages_without_the_cache_walk_again_to_the_same_answer(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> None:
    li = build_lineage(ledger)
    request = Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM, page_size=4)
    with serving(li) as s:
        cached = pages(s.stub, request)
    monkeypatch.setattr(service, "AnswerCache", lambda: _answers_cache.AnswerCache(max_answers=0))
    with serving(li) as s:
        walked = pages(s.stub, request)
    assert [p.SerializeToString(deterministic=True) for p in walked] == [
        p.SerializeToString(deterministic=True) for p in cached
    ]
    assert [len(p.nodes) for p in walked] == [4, 4, 1]
