"""QueryService over a real gRPC channel, against a real projection of the worked lineage."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ledger.core import merkle
from ledger.core.vocab import predict_batch_id
from ledger.grpckit.auth import AuthInterceptor, DevModeAuthenticator, Identity
from ledger.store import checkpoints
from provault.v1 import query_pb2, query_pb2_grpc
from query.service import QUERY_METHOD_ROLES, QueryGrpcService, build_query_server
from tests.ledgerkit import ORIGIN, Ledger
from tests.query.test_traverse import Lineage, append, build_lineage, predictions, shared_lineage

pytestmark = pytest.mark.postgres

Q = query_pb2
TIMEOUT = 10
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@dataclass
class Served:
    li: Lineage
    stub: query_pb2_grpc.QueryServiceStub
    channel: grpc.Channel


@contextlib.contextmanager
def serving(li: Lineage, authenticator=None) -> Iterator[Served]:
    interceptors = (AuthInterceptor(authenticator or DevModeAuthenticator(), QUERY_METHOD_ROLES),)
    server, port = build_query_server(
        dsn=li.ledger.dsn, listen="127.0.0.1:0", max_message_bytes=4 << 20, interceptors=interceptors
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Served(li=li, stub=query_pb2_grpc.QueryServiceStub(channel), channel=channel)
    finally:
        channel.close()
        assert server.stop(None).wait(10)


@pytest.fixture(scope="module")
def served(pg_admin_dsn: str) -> Iterator[Served]:
    """The lineage with a checkpoint over all of it, served; shared by the read-only tests."""
    with shared_lineage(pg_admin_dsn) as li, serving(li) as s:
        checkpoints.sign_latest(li.ledger.conn, li.ledger.checkpoint_key, ORIGIN)
        yield s


def code_of(call, request, **kw) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT, **kw)
    return info.value.code(), info.value.details()


def pages(stub, request: Q.TraceRequest) -> list[Q.TraceResponse]:
    out = [stub.Trace(request, timeout=TIMEOUT)]
    while out[-1].next_page_token:
        nxt = Q.TraceRequest()
        nxt.CopyFrom(request)
        nxt.page_token = out[-1].next_page_token
        out.append(stub.Trace(nxt, timeout=TIMEOUT))
    return out


def hops(edges: Sequence[Q.Edge]) -> list[tuple[str, str, str, int]]:
    return [(Q.Relation.Name(e.relation), e.from_id, e.to_id, e.seq) for e in edges]


# --- Trace -------------------------------------------------------------------------------


def test_trace_upstream_from_a_prediction(served: Served) -> None:
    li = served.li
    r = served.stub.Trace(Q.TraceRequest(start_node_id="req-2", direction=Q.DIRECTION_UPSTREAM), timeout=TIMEOUT)
    assert (r.as_of_seq, r.truncated, r.next_page_token) == (13, False, "")
    assert r.nodes[0].id == "provault:prediction/req-2" and r.nodes[0].kind == "provault:Prediction"
    node = {n.id: n for n in r.nodes}
    assert {li.deployment, li.model2, li.run2, li.ds2, li.eval, li.commit2, li.env2, li.dave, li.host2} <= set(node)
    assert li.run1 not in node and li.alice not in node
    model = node[li.model2]
    assert (model.type, model.kind, model.label, model.introduced_seq) == (
        Q.NODE_TYPE_ENTITY,
        "provault:Model",
        "sentiment",
        10,
    )
    assert json.loads(model.attributes_json)["provault:version"] == "2"
    assert ("RELATION_WAS_GENERATED_BY", "provault:prediction/req-2", li.batch, 13) in hops(r.edges)
    approval = next(e for e in r.edges if e.to_id == li.carol)
    assert json.loads(approval.attributes_json) == {"prov:role": "provault:approver"}


def test_trace_pages_cover_the_answer_once_and_predictions_page_by_id(served: Served) -> None:
    li = served.li
    request = Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM, page_size=4)
    got = pages(served.stub, request)
    whole = served.stub.Trace(Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM), timeout=TIMEOUT)
    assert [len(p.nodes) for p in got] == [4, 4, 1] and len(whole.nodes) == 9
    assert [n.id for p in got for n in p.nodes] == [n.id for n in whole.nodes]
    assert [n.id for n in whole.nodes][-3:] == li.prediction_ids()
    assert sorted(hops([e for p in got for e in p.edges])) == sorted(hops(whole.edges))
    seen: set[str] = set()
    for p in got:  # each edge on the page where its second end appears
        seen |= {n.id for n in p.nodes}
        assert all(e.from_id in seen and e.to_id in seen for e in p.edges)


def test_trace_with_proofs_proves_every_entry_of_the_page(served: Served) -> None:
    r = served.stub.Trace(
        Q.TraceRequest(start_node_id="req-1", direction=Q.DIRECTION_UPSTREAM, page_size=3, include_proofs=True),
        timeout=TIMEOUT,
    )
    behind = {n.introduced_seq for n in r.nodes} | {e.seq for e in r.edges}
    proofs = r.proofs
    assert behind <= {p.seq for p in proofs.inclusion_proofs} and not proofs.unproven_seqs
    with served.li.ledger.conn.cursor() as cur:
        leaves = dict(cur.execute("SELECT seq, leaf_hash FROM ledger.entries").fetchall())
    for p in proofs.inclusion_proofs:
        assert p.leaf_hash == leaves[p.seq]
        merkle.verify_inclusion(p.leaf_hash, p.leaf_index, p.tree_size, list(p.hashes), proofs.checkpoint.root_hash)
    nxt = served.stub.Trace(
        Q.TraceRequest(
            start_node_id="req-1",
            direction=Q.DIRECTION_UPSTREAM,
            page_size=3,
            include_proofs=True,
            page_token=r.next_page_token,
        ),
        timeout=TIMEOUT,
    )
    assert nxt.proofs.checkpoint.tree_size == proofs.checkpoint.tree_size


def test_pagination_is_stable_while_the_log_grows(ledger: Ledger) -> None:
    li = build_lineage(ledger)
    with serving(li) as s:
        request = Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM, page_size=5)
        first = s.stub.Trace(request, timeout=TIMEOUT)
        append(
            li, predictions(li, ("req-0", "req-4"), 70, batch=predict_batch_id("019cade2-0000-7000-8000-0000000000p2"))
        )
        request.page_token = first.next_page_token
        second = s.stub.Trace(request, timeout=TIMEOUT)
        assert second.as_of_seq == first.as_of_seq == 13 and second.next_page_token == ""
        listed = [n.id for n in [*first.nodes, *second.nodes]]
        assert listed[-3:] == li.prediction_ids() and len(listed) == 9
        now = s.stub.Trace(Q.TraceRequest(start_node_id=li.ds2, direction=Q.DIRECTION_DOWNSTREAM), timeout=TIMEOUT)
        assert now.as_of_seq == 14 and len(now.nodes) == 12
        request.max_depth = 3  # a token only fits the request it came from
        assert code_of(s.stub.Trace, request)[0] == INVALID


# --- GetNode, Search -----------------------------------------------------------------------


def test_get_node_now_and_as_of(served: Served) -> None:
    li = served.li
    r = served.stub.GetNode(Q.GetNodeRequest(node_id=li.model2), timeout=TIMEOUT)
    assert (r.node.label, r.as_of_seq) == ("sentiment", 13)
    early = served.stub.GetNode(Q.GetNodeRequest(node_id=li.model2, as_of=Q.AsOf(seq=10)), timeout=TIMEOUT)
    assert (early.node.label, early.node.kind, early.as_of_seq) == ("", "", 10)
    ts = Timestamp()
    ts.GetCurrentTime()
    assert (
        served.stub.GetNode(Q.GetNodeRequest(node_id="req-3", as_of=Q.AsOf(time=ts)), timeout=TIMEOUT).node.kind
        == "provault:Prediction"
    )
    code, details = code_of(served.stub.GetNode, Q.GetNodeRequest(node_id=li.deployment, as_of=Q.AsOf(seq=11)))
    assert code == grpc.StatusCode.NOT_FOUND and "first recorded at seq 12" in details
    code, details = code_of(served.stub.GetNode, Q.GetNodeRequest(node_id="provault:run/none"))
    assert code == grpc.StatusCode.NOT_FOUND and "provault:run/none" in details


def test_search_pages_by_id(served: Served) -> None:
    li = served.li
    r = served.stub.Search(Q.SearchRequest(kind="provault:Dataset", page_size=2), timeout=TIMEOUT)
    rest = served.stub.Search(
        Q.SearchRequest(kind="provault:Dataset", page_size=2, page_token=r.next_page_token), timeout=TIMEOUT
    )
    assert [n.id for n in [*r.nodes, *rest.nodes]] == sorted([li.ds1, li.ds2, li.eval]) and rest.next_page_token == ""
    found = served.stub.Search(
        Q.SearchRequest(
            text="eval",
            type=Q.NODE_TYPE_ENTITY,
            attributes=[Q.AttributeFilter(name="prov:label", value="reviews eval")],
        ),
        timeout=TIMEOUT,
    )
    assert [n.id for n in found.nodes] == [li.eval] and found.as_of_seq == 13


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "needle"),
    [
        pytest.param(Q.TraceRequest(direction=Q.DIRECTION_UPSTREAM), "start_node_id", id="no-start"),
        pytest.param(Q.TraceRequest(start_node_id="req-1"), "direction", id="no-direction"),
        pytest.param(Q.TraceRequest(start_node_id="req-1", direction=1, max_depth=101), "at most 100", id="depth-cap"),
        pytest.param(
            Q.TraceRequest(start_node_id="req-1", direction=1, max_nodes=100_001), "at most 100000", id="nodes-cap"
        ),
        pytest.param(Q.TraceRequest(start_node_id="req-1", direction=1, page_size=5001), "at most 5000", id="page-cap"),
        pytest.param(Q.TraceRequest(start_node_id="req-1", direction=1, relations=[0]), "relations[0]", id="relation"),
        pytest.param(Q.TraceRequest(start_node_id="req-1", direction=1, as_of=Q.AsOf()), "as_of", id="empty-as-of"),
        pytest.param(Q.TraceRequest(start_node_id="req-1", direction=1, page_token="bogus"), "page_token", id="token"),
        pytest.param(Q.TraceRequest(start_node_id="x" * 5000, direction=1), "at most 4096", id="long-id"),
    ],
)
def test_bad_trace_requests_are_invalid_argument(served: Served, request_: Q.TraceRequest, needle: str) -> None:
    code, details = code_of(served.stub.Trace, request_)
    assert code == INVALID and needle in details and "expected" in details


def test_other_refusals(served: Served) -> None:
    stub = served.stub
    code, details = code_of(stub.Trace, Q.TraceRequest(start_node_id="req-1", direction=1, as_of=Q.AsOf(seq=99)))
    assert code == grpc.StatusCode.FAILED_PRECONDITION and "seq 99" in details
    assert code_of(stub.Trace, Q.TraceRequest(start_node_id="nope", direction=2))[0] == grpc.StatusCode.NOT_FOUND
    assert code_of(stub.Search, Q.SearchRequest())[0] == INVALID
    assert code_of(stub.Search, Q.SearchRequest(text="a", page_size=1001))[0] == INVALID
    token = stub.Search(Q.SearchRequest(text="a", page_size=1), timeout=TIMEOUT).next_page_token
    assert code_of(stub.Search, Q.SearchRequest(text="b", page_size=1, page_token=token))[0] == INVALID
    assert code_of(stub.GetNode, Q.GetNodeRequest())[0] == INVALID


# --- delegated RPCs, health, auth, the stack service -----------------------------------------


def test_export_and_bundle_delegate(served: Served) -> None:
    li = served.li
    chunks = list(
        served.stub.Export(
            Q.ExportRequest(
                format=Q.EXPORT_FORMAT_NTRIPLES,
                subgraph=Q.ExportSubgraph(start_node_id=li.model1, direction=Q.DIRECTION_UPSTREAM),
            ),
            timeout=TIMEOUT,
        )
    )
    assert chunks[0].content_type == "application/n-triples" and chunks[0].as_of_seq == 13
    text = b"".join(c.data for c in chunks).decode()
    assert "b1b1b1b1" in text and "b2b2b2b2" not in text
    bundle = served.stub.Bundle(
        Q.BundleRequest(node_id="req-2", direction=Q.DIRECTION_UPSTREAM), timeout=TIMEOUT
    ).bundle
    assert bundle.node_id == "provault:prediction/req-2" and bundle.entries


def test_health_and_reflection(served: Served) -> None:
    health = health_pb2_grpc.HealthStub(served.channel)
    for name in ("", "provault.v1.QueryService"):
        assert (
            health.Check(health_pb2.HealthCheckRequest(service=name), timeout=TIMEOUT).status
            == health_pb2.HealthCheckResponse.SERVING
        )
    refl = reflection_pb2_grpc.ServerReflectionStub(served.channel)
    (resp,) = refl.ServerReflectionInfo(
        iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
    )
    assert "provault.v1.QueryService" in {s.name for s in resp.list_services_response.service}


class _RoleAuth:
    def authenticate(self, method: str, metadata) -> Identity | None:
        role = dict(metadata).get("x-test-role")
        return Identity(subject=f"tester-{role}", roles=frozenset({role})) if role else None


def test_only_auditors_and_admins_may_query(served: Served) -> None:
    with serving(served.li, _RoleAuth()) as s:
        request = Q.GetNodeRequest(node_id=served.li.ds1)
        assert code_of(s.stub.GetNode, request)[0] == grpc.StatusCode.UNAUTHENTICATED
        assert (
            code_of(s.stub.GetNode, request, metadata=(("x-test-role", "producer"),))[0]
            == grpc.StatusCode.PERMISSION_DENIED
        )
        for role in ("auditor", "admin"):
            assert s.stub.GetNode(request, metadata=(("x-test-role", role),), timeout=TIMEOUT).node.id == served.li.ds1


def test_the_stack_service_starts_and_stops(served: Served) -> None:
    service = QueryGrpcService(dsn=served.li.ledger.dsn, listen="127.0.0.1:0", max_message_bytes=4 << 20)
    service.start()
    try:
        assert service.running() and service.name == "query-grpc" and service.address.startswith("127.0.0.1:")
        with grpc.insecure_channel(service.address) as channel:
            stub = query_pb2_grpc.QueryServiceStub(channel)
            assert (
                stub.GetNode(Q.GetNodeRequest(node_id="req-1"), timeout=TIMEOUT).node.id == "provault:prediction/req-1"
            )
    finally:
        service.stop()
    assert not service.running()
