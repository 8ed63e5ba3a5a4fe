"""docs/security.md's bad-input table, read side: bad queries against a real QueryService.

One projected lineage (``tests/query/test_traverse.py``) served over real
gRPC for the module.  Every test checks that the ledger and its projection
are the same after the bad requests as before (``unchanged``): the query side
reads as ``provault_auditor`` and cannot change either, and these tests keep
it so.
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import psycopg
import pytest

from ledger.db import connect
from ledger.grpckit.auth import AuthInterceptor, DevModeAuthenticator
from ledger.store import checkpoints
from provault.v1 import query_pb2, query_pb2_grpc
from query import projector
from query import service as query_service
from query.service import QUERY_METHOD_ROLES, build_query_server, encode_token
from tests.ledgerkit import ORIGIN
from tests.query.test_sparql import UPDATES
from tests.query.test_traverse import Lineage, shared_lineage
from tests.security.securitykit import accepted_state

pytestmark = pytest.mark.postgres

Q = query_pb2
TIMEOUT = 20
INVALID = grpc.StatusCode.INVALID_ARGUMENT
UP, DOWN = Q.DIRECTION_UPSTREAM, Q.DIRECTION_DOWNSTREAM


@dataclass
class Served:
    li: Lineage
    stub: query_pb2_grpc.QueryServiceStub
    aconn: psycopg.Connection

    def state(self) -> tuple:
        return accepted_state(self.li.ledger.conn), projector.checksum(self.aconn)


@contextlib.contextmanager
def _server(li: Lineage, max_message_bytes: int = 4 << 20) -> Iterator[query_pb2_grpc.QueryServiceStub]:
    interceptors = (AuthInterceptor(DevModeAuthenticator(), QUERY_METHOD_ROLES),)
    server, port = build_query_server(
        dsn=li.ledger.dsn, listen="127.0.0.1:0", max_message_bytes=max_message_bytes, interceptors=interceptors
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield query_pb2_grpc.QueryServiceStub(channel)
    finally:
        channel.close()
        server.stop(None).wait(10)


@pytest.fixture(scope="module")
def q(pg_admin_dsn: str) -> Iterator[Served]:
    with (
        shared_lineage(pg_admin_dsn) as li,
        _server(li) as stub,
        connect(li.ledger.dsn, autocommit=True, role="provault_auditor") as aconn,
    ):
        checkpoints.sign_latest(li.ledger.conn, li.ledger.checkpoint_key, ORIGIN)
        yield Served(li=li, stub=stub, aconn=aconn)


@contextlib.contextmanager
def unchanged(q: Served) -> Iterator[None]:
    before = q.state()
    yield
    assert q.state() == before, "a bad query changed the ledger or its projection"


def code_of(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value.code(), info.value.details()


# --- SPARQL --------------------------------------------------------------------------------------------

REFUSED_FORMS = {
    **UPDATES,
    "SERVICE": "SELECT * WHERE { SERVICE <http://example.org/sparql> { ?s ?p ?o } }",
    "FROM": "SELECT * FROM <http://example.org/g.ttl> WHERE { ?s ?p ?o }",
    "FROM NAMED": "SELECT * FROM NAMED <http://example.org/g.ttl> WHERE { GRAPH ?g { ?s ?p ?o } }",
    "CONSTRUCT": "CONSTRUCT { ?s ?p ?o } WHERE { ?s ?p ?o }",
}


def test_sparql_updates_service_and_from_are_invalid_argument(q: Served) -> None:
    with unchanged(q):
        for form, text in REFUSED_FORMS.items():
            code, details = code_of(q.stub.Sparql, Q.SparqlRequest(query=text))
            assert code == INVALID, (form, details)
            assert any(w in details for w in ("updates are refused", "are refused", "queries are refused")), (
                form,
                details,
            )
        assert q.stub.Sparql(Q.SparqlRequest(query="ASK { ?s ?p ?o }"), timeout=TIMEOUT).boolean


def test_a_runaway_sparql_query_is_stopped_at_the_time_limit(q: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(query_service, "SPARQL_TIMEOUT_S", 1.0)  # 10 s in production
    runaway = "SELECT (COUNT(*) AS ?n) WHERE { ?a ?b ?c . ?d ?e ?f . ?g ?h ?i . ?j ?k ?l . ?m ?n2 ?o }"
    with unchanged(q):
        code, details = code_of(q.stub.Sparql, Q.SparqlRequest(query=runaway))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "did not finish within 1 s" in details
        assert q.stub.Sparql(Q.SparqlRequest(query="ASK { ?s ?p ?o }"), timeout=TIMEOUT).boolean


def test_huge_sparql_results_are_cut_at_the_row_limit(q: Served) -> None:
    with unchanged(q):
        r = q.stub.Sparql(Q.SparqlRequest(query="SELECT ?s ?p ?o WHERE { ?s ?p ?o }", max_rows=3), timeout=TIMEOUT)
        assert len(r.bindings.rows) == 3 and r.bindings.truncated
        assert code_of(q.stub.Sparql, Q.SparqlRequest(query="ASK { ?s ?p ?o }", max_rows=100_001))[0] == INVALID
        long = "ASK { ?s ?p ?o }" + " " * 100_000
        code, details = code_of(q.stub.Sparql, Q.SparqlRequest(query=long))
        assert code == INVALID and "at most 100000" in details


# --- traces -------------------------------------------------------------------------------------------


def test_huge_trace_requests_are_capped(q: Served) -> None:
    li = q.li
    with unchanged(q):
        for request, cap in [
            (Q.TraceRequest(start_node_id=li.ds2, direction=DOWN, max_depth=101), "at most 100"),
            (Q.TraceRequest(start_node_id=li.ds2, direction=DOWN, max_nodes=100_001), "at most 100000"),
            (Q.TraceRequest(start_node_id=li.ds2, direction=DOWN, page_size=5_001), "at most 5000"),
            (Q.TraceRequest(start_node_id="x" * 4_097, direction=DOWN), "at most 4096"),
        ]:
            code, details = code_of(q.stub.Trace, request)
            assert code == INVALID and cap in details, details
        assert code_of(q.stub.Search, Q.SearchRequest(text="a", page_size=1_001))[0] == INVALID
        small = q.stub.Trace(Q.TraceRequest(start_node_id=li.model2, direction=UP, max_nodes=2), timeout=TIMEOUT)
        assert small.truncated and len(small.nodes) == 2


def test_an_answer_too_big_for_one_message_is_resource_exhausted(q: Served) -> None:
    with unchanged(q), _server(q.li, max_message_bytes=4_096 + 1_500) as stub:
        code, details = code_of(stub.Trace, Q.TraceRequest(start_node_id=q.li.ds2, direction=DOWN))
        assert code == grpc.StatusCode.RESOURCE_EXHAUSTED and "smaller page_size" in details
        assert stub.Trace(
            Q.TraceRequest(start_node_id=q.li.ds2, direction=DOWN, page_size=1), timeout=TIMEOUT
        ).next_page_token


def _b64(doc: object) -> str:
    return "pv1." + base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def test_malformed_page_tokens_are_invalid_argument(q: Served) -> None:
    li = q.li
    trace = Q.TraceRequest(start_node_id=li.ds2, direction=DOWN, page_size=2)
    real = q.stub.Trace(trace, timeout=TIMEOUT).next_page_token
    search_token = q.stub.Search(Q.SearchRequest(text="a", page_size=1), timeout=TIMEOUT).next_page_token
    with unchanged(q):
        for token in [
            "bogus",
            "pv1.",
            "pv1.!!!!",
            "pv1." + "A" * 5000,
            _b64([1, 2]),
            _b64({"k": "trace", "s": -1}),
            _b64({"k": "trace", "s": "1"}),
            search_token,
            real[:-3],
            real + "x",
        ]:
            request = Q.TraceRequest()
            request.CopyFrom(trace)
            request.page_token = token
            code, details = code_of(q.stub.Trace, request)
            assert code == INVALID and "page_token" in details, (token[:40], details)
        other = Q.TraceRequest(start_node_id=li.ds2, direction=DOWN, page_size=3, page_token=real)
        assert "same request fields" in code_of(q.stub.Trace, other)[1]
        forged = encode_token("trace", query_service.fingerprint(trace), s=10**30, o=0)  # a token a client made up
        request = Q.TraceRequest()
        request.CopyFrom(trace)
        request.page_token = forged
        assert code_of(q.stub.Trace, request)[0] == grpc.StatusCode.FAILED_PRECONDITION


# --- identifiers -----------------------------------------------------------------------------------------


def test_bad_node_ids_are_not_found_or_invalid_argument(q: Served) -> None:
    with unchanged(q):
        for node_id in ("sha256:XYZ", "sha256:" + "0" * 64, "provault:run/not-a-uuid", "'; DROP TABLE prov.nodes; --"):
            code, details = code_of(q.stub.GetNode, Q.GetNodeRequest(node_id=node_id))
            assert code == grpc.StatusCode.NOT_FOUND and "no node" in details
        assert code_of(q.stub.GetNode, Q.GetNodeRequest())[0] == INVALID
        assert code_of(q.stub.Bundle, Q.BundleRequest(direction=UP))[0] == INVALID


def test_a_nul_character_in_a_node_id_is_invalid_argument(q: Served) -> None:
    assert code_of(q.stub.GetNode, Q.GetNodeRequest(node_id="sha256:\x00"))[0] == INVALID


def test_a_nul_character_in_a_query_is_refused_and_changes_nothing(q: Served) -> None:
    """INVALID_ARGUMENT before any database access; nothing is read or written."""
    with unchanged(q):
        for call, request in [
            (q.stub.GetNode, Q.GetNodeRequest(node_id="a\x00b")),
            (q.stub.Trace, Q.TraceRequest(start_node_id="a\x00b", direction=UP)),
            (q.stub.Search, Q.SearchRequest(text="a\x00b")),
        ]:
            code, details = code_of(call, request)
            assert code == grpc.StatusCode.INVALID_ARGUMENT and "U+0000" in details
