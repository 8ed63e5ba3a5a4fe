"""gRPC QueryService: traceback, impact, lookup and search over the PROV projection.

The choices the proto leaves open (roles, as-of, limits, pages, keys, health) are in docs/query.md,
"QueryService: decisions the proto leaves open"; requests are checked once (``_requests``).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import grpc
import psycopg

from ledger.config import Settings
from ledger.core.errors import InvalidArgument, KeyMaterialError, ProvaultError, expected_found
from ledger.core.keys import Signer
from ledger.grpckit.auth import ADMIN, AUDITOR
from ledger.grpckit.server import ReadPool, serve_on
from ledger.grpckit.service import GrpcServerService, register_servicer
from ledger.grpckit.status import NotCovered, NotFound, TooManyMessages, abort_with
from provault.v1 import query_pb2, query_pb2_grpc

from . import traverse
from ._answers_cache import AnswerCache
from ._pages import edge_pb, entry_proofs, node_pb, sparql_response, trace_page
from ._requests import (
    MAX_ID_CHARS,
    as_of_point,
    capped,
    decode_token,
    encode_token,
    fingerprint,
    node_type_name,
    refuse_nul,
    resolve_as_of,
    resolve_point,
    text_field,
    token_offset,
)
from .bundle import bundle_trace
from .export import CONTENT_TYPES, export_stream
from .sparql import run_sparql
from .traverse import AsOfNotProjected, NodeNotFound
from .wire import direction_name, enum_name, relation_names

logger = logging.getLogger("provault.grpc.query")

SERVICE = query_pb2.DESCRIPTOR.services_by_name["QueryService"]
SERVICE_NAME = SERVICE.full_name
AUDITOR_ROLE = "provault_auditor"

_Q = f"/{SERVICE_NAME}/"
QUERY_METHOD_ROLES: Mapping[str, frozenset[str]] = {
    _Q + m: frozenset({AUDITOR, ADMIN}) for m in ("Trace", "GetNode", "Search", "Export", "Sparql", "Bundle", "Attest")
}
QUERY_METHOD_ROLES = {**QUERY_METHOD_ROLES, _Q + "Gate": frozenset({AUDITOR, ADMIN})}
MAX_POLICY_CHARS = 64 * 1024
"""Gate: the longest policy text accepted."""

DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP = traverse.DEFAULT_MAX_DEPTH, 100
DEFAULT_MAX_NODES, MAX_NODES_CAP = traverse.DEFAULT_MAX_NODES, 100_000
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 500, 5_000
DEFAULT_SEARCH_PAGE, MAX_SEARCH_PAGE = 50, 1_000
DEFAULT_SPARQL_ROWS, MAX_SPARQL_ROWS = 1_000, 100_000
SPARQL_TIMEOUT_S = 10.0
MAX_SPARQL_CHARS = 100_000
_MESSAGE_MARGIN = 4_096

# --- enums ---------------------------------------------------------------------------------

EXPORT_FORMATS: Mapping[int, str] = {
    query_pb2.EXPORT_FORMAT_TURTLE: "turtle",
    query_pb2.EXPORT_FORMAT_JSONLD: "jsonld",
    query_pb2.EXPORT_FORMAT_PROV_JSON: "provjson",
    query_pb2.EXPORT_FORMAT_NTRIPLES: "ntriples",
}

# --- errors --------------------------------------------------------------------------------


class LimitExceeded(TooManyMessages):
    """An answer exceeds a server limit: time, graph size, message size (RESOURCE_EXHAUSTED; narrow it)."""

    reason = "limit_exceeded"


_OVER_LIMIT = frozenset({"graph_too_large", "query_timeout", "limit_reached"})
"""Reasons of query.export / query.sparql errors that mean "an answer exceeds a server limit"."""


def translate_error(e: BaseException) -> BaseException:
    """The query layer's errors as the service-level ones the status table maps."""
    if isinstance(e, NodeNotFound):
        return NotFound(e.message, hint=e.hint)
    if isinstance(e, AsOfNotProjected):
        return NotCovered(e.message, hint=e.hint)
    if isinstance(e, ProvaultError) and e.reason == "not_found" and not isinstance(e, NotFound):
        return NotFound(e.message, hint=e.hint)  # query.report.build.ModelNotFound: an unknown model
    if isinstance(e, ProvaultError) and e.reason in _OVER_LIMIT:
        return LimitExceeded(e.message, hint=e.hint)
    return e


def _fail(context: grpc.ServicerContext, e: BaseException, name: str) -> None:
    if not context.is_active():
        logger.info("%s: the client went away (%s)", name, type(e).__name__)
        raise e
    abort_with(context, translate_error(e))


F = TypeVar("F", bound=Callable[..., Any])


def _rpc(fn: F) -> F:
    """Turn any error of a unary handler into a status via the one table in ledger/grpckit/status.py."""

    @functools.wraps(fn)
    def handler(self: QueryServicer, request: Any, context: grpc.ServicerContext) -> Any:
        try:
            refuse_nul(request)
            return fn(self, request, context)
        except Exception as e:
            _fail(context, e, fn.__name__)

    return handler  # type: ignore[return-value]


def _rpc_stream(fn: F) -> F:
    """The same for a response-streaming handler: errors raised while streaming too."""

    @functools.wraps(fn)
    def handler(self: QueryServicer, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        try:
            refuse_nul(request)
            yield from fn(self, request, context)
        except Exception as e:
            _fail(context, e, fn.__name__)

    return handler  # type: ignore[return-value]


# --- the servicer --------------------------------------------------------------------------


class QueryServicer(query_pb2_grpc.QueryServiceServicer):
    def __init__(self, *, reads: ReadPool, max_message_bytes: int, settings: Settings | None = None) -> None:
        self.reads = reads
        self.max_message_bytes = max_message_bytes
        self.answers = AnswerCache()
        self.settings = settings
        """The stack's settings: the attestation key and how its events reach the ledger (Gate, Attest)."""
        self._attestor: Signer | None = None
        self._attestor_loading = threading.Lock()

    def attestation_key(self) -> Signer:
        """The attestation key (docs/supply-chain.md, "The signer"), loaded on first use and kept; shared by
        Gate and Attest.  ``NoAttestationKey`` (FAILED_PRECONDITION) while there is none: the file's path and
        the reason go to the log, not to the client."""
        from query.supply.attest import NoAttestationKey  # noqa: PLC0415 - the supply chain loads on first use
        from query.supply.signer import load_key  # noqa: PLC0415

        with self._attestor_loading:
            if self._attestor is None:
                if self.settings is None:
                    raise NoAttestationKey(
                        "this QueryService was started without the stack's settings, so it has no attestation key",
                        hint="start it with settings (QueryGrpcService(settings=...))",
                    )
                try:
                    self._attestor = load_key(self.settings)
                except KeyMaterialError as e:
                    logger.warning("attestation key: %s", e.diagnostics())
                    raise NoAttestationKey(
                        "the server has no usable attestation key",
                        hint="an operator must create and register it (docs/supply-chain.md, 'The signer'); "
                        "the server's log says what is wrong with it",
                    ) from None
            return self._attestor

    def _fits(self, response: Any, what: str) -> Any:
        size = response.ByteSize()
        if size > self.max_message_bytes - _MESSAGE_MARGIN:
            raise LimitExceeded(
                f"{what}: the answer is {size} bytes, above the server's message limit of {self.max_message_bytes}",
                hint="ask for a smaller page_size",
            )
        return response

    @_rpc
    def Trace(self, request: query_pb2.TraceRequest, context: grpc.ServicerContext) -> query_pb2.TraceResponse:
        start = text_field(request.start_node_id, "start_node_id")
        direction = direction_name(request.direction)
        max_depth = capped(request.max_depth, "max_depth", DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP)
        max_nodes = capped(request.max_nodes, "max_nodes", DEFAULT_MAX_NODES, MAX_NODES_CAP)
        page_size = capped(request.page_size, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
        relations = relation_names(request.relations)
        fp = fingerprint(request)
        with self.reads.connection() as conn, traverse.snapshot(conn):
            if request.page_token:
                cursor = decode_token(request.page_token, "trace", fp)
                seq, offset, after, tree = cursor["s"], token_offset(cursor.get("o")), cursor.get("a"), cursor.get("c")
            else:
                seq, offset, after, tree = resolve_as_of(conn, request), 0, None, None
            key = (fp, seq)
            answer = self.answers.get(key) if request.page_token else None
            early = False
            if answer is None:
                walk = functools.partial(
                    traverse.trace,
                    conn,
                    start,
                    direction=direction,
                    max_depth=max_depth,
                    relations=relations,
                    as_of_seq=seq,
                    predictions_limit=0,
                )
                if not request.page_token and page_size < max_nodes:
                    # The first page_size nodes of an answer are the answer to a walk bounded to page_size
                    # nodes (docs/query.md, "Pagination"): the first page costs the page, not the walk.
                    answer = walk(max_nodes=page_size)
                    early = answer.truncated and len(answer.nodes) == page_size
                else:
                    answer = walk(max_nodes=max_nodes)
                key = (fp, answer.as_of_seq)
            if early:
                nodes, edges, nxt = list(answer.nodes), list(answer.edges), {"o": len(answer.nodes), "a": None}
            else:
                nodes, edges, nxt = trace_page(conn, answer, offset=offset, after=after, page_size=page_size)
                if nxt:
                    self.answers.put(key, answer)  # the next pages continue this walk (query/_answers_cache.py)
                else:
                    self.answers.discard(key)
            response = query_pb2.TraceResponse(
                nodes=[node_pb(n) for n in nodes],
                edges=[edge_pb(e) for e in edges],
                truncated=answer.truncated and not early,
                as_of_seq=answer.as_of_seq,
            )
            if request.include_proofs:
                seqs = sorted({s for n in nodes for s in n.seqs} | {e.seq for e in edges})
                response.proofs.CopyFrom(entry_proofs(conn, seqs, tree))
                tree = response.proofs.checkpoint.tree_size
            if nxt:
                pinned = {"c": tree} if request.include_proofs else {}
                response.next_page_token = encode_token("trace", fp, s=answer.as_of_seq, **nxt, **pinned)
        return self._fits(response, "Trace")

    @_rpc
    def GetNode(self, request: query_pb2.GetNodeRequest, context: grpc.ServicerContext) -> query_pb2.GetNodeResponse:
        node_id = text_field(request.node_id, "node_id")
        with self.reads.connection() as conn:
            seq = resolve_as_of(conn, request)
            node = traverse.get_node(conn, node_id, as_of_seq=seq)
        return self._fits(query_pb2.GetNodeResponse(node=node_pb(node), as_of_seq=seq), "GetNode")

    @_rpc
    def Search(self, request: query_pb2.SearchRequest, context: grpc.ServicerContext) -> query_pb2.SearchResponse:
        page_size = capped(request.page_size, "page_size", DEFAULT_SEARCH_PAGE, MAX_SEARCH_PAGE)
        node_type = node_type_name(request.type)
        if len(request.text) > MAX_ID_CHARS:
            raise InvalidArgument(
                expected_found("text", f"at most {MAX_ID_CHARS} characters (the cap)", f"{len(request.text)}")
            )
        attributes = [(text_field(a.name, f"attributes[{i}].name"), a.value) for i, a in enumerate(request.attributes)]
        fp = fingerprint(request)
        with self.reads.connection() as conn:
            if request.page_token:
                cursor = decode_token(request.page_token, "search", fp)
                seq, after = cursor["s"], cursor.get("a")
                if not isinstance(after, str):
                    raise InvalidArgument(expected_found("page_token", "a search token", "a token without a position"))
            else:
                seq, after = resolve_as_of(conn, request), None
            page = traverse.search(
                conn,
                text=request.text or None,
                node_type=node_type,
                kind=request.kind or None,
                attributes=attributes,
                as_of_seq=seq,
                limit=page_size,
                after=after,
            )
        token = encode_token("search", fp, s=page.as_of_seq, a=page.next_after) if page.next_after else ""
        response = query_pb2.SearchResponse(
            nodes=[node_pb(n) for n in page.nodes], next_page_token=token, as_of_seq=page.as_of_seq
        )
        return self._fits(response, "Search")

    @_rpc_stream
    def Export(
        self, request: query_pb2.ExportRequest, context: grpc.ServicerContext
    ) -> Iterator[query_pb2.ExportResponse]:
        if request.format not in EXPORT_FORMATS:
            names = ", ".join(query_pb2.ExportFormat.Name(v) for v in EXPORT_FORMATS)
            raise InvalidArgument(
                expected_found("format", f"one of {names}", enum_name(query_pb2.ExportFormat, request.format))
            )
        fmt = EXPORT_FORMATS[request.format]
        scope = request.WhichOneof("scope")
        if scope is None:
            raise InvalidArgument("scope: expected exactly one of subgraph or full_graph, found neither")
        content_type = CONTENT_TYPES[fmt]
        with self.reads.connection() as conn:
            seq = resolve_as_of(conn, request)
            node_ids = _subgraph_ids(conn, request.subgraph, seq) if scope == "subgraph" else None
            first = True
            for chunk in export_stream(conn, fmt=fmt, node_ids=node_ids, as_of_seq=seq):
                yield query_pb2.ExportResponse(
                    data=chunk, content_type=content_type if first else "", as_of_seq=seq if first else 0
                )
                first = False
            if first:
                yield query_pb2.ExportResponse(content_type=content_type, as_of_seq=seq)

    @_rpc
    def Sparql(self, request: query_pb2.SparqlRequest, context: grpc.ServicerContext) -> query_pb2.SparqlResponse:
        text = text_field(request.query, "query", MAX_SPARQL_CHARS)
        max_rows = capped(request.max_rows, "max_rows", DEFAULT_SPARQL_ROWS, MAX_SPARQL_ROWS)
        with self.reads.connection() as conn:
            seq = resolve_as_of(conn, request)
            result = run_sparql(conn, text, node_ids=None, as_of_seq=seq, max_rows=max_rows, timeout_s=SPARQL_TIMEOUT_S)
        return self._fits(sparql_response(result, seq), "Sparql")

    @_rpc
    def Bundle(self, request: query_pb2.BundleRequest, context: grpc.ServicerContext) -> query_pb2.BundleResponse:
        node_id = text_field(request.node_id, "node_id")
        direction = direction_name(request.direction)
        max_depth = capped(request.max_depth, "max_depth", DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP)
        max_nodes = capped(request.max_nodes, "max_nodes", DEFAULT_MAX_NODES, MAX_NODES_CAP)
        relations = relation_names(request.relations)
        as_of_seq, as_of_time = as_of_point(request)
        with self.reads.connection() as conn:
            bundle = bundle_trace(
                conn,
                node_id,
                direction=direction,
                relations=relations,
                max_depth=max_depth,
                max_nodes=max_nodes,
                as_of_seq=as_of_seq,
                as_of_time=as_of_time,
            )
        return self._fits(query_pb2.BundleResponse(bundle=bundle), "Bundle")

    @_rpc
    def Attest(self, request: query_pb2.AttestRequest, context: grpc.ServicerContext) -> query_pb2.AttestResponse:
        from query.supply import attest  # noqa: PLC0415 - the supply chain loads on first use

        model = text_field(request.model, "model")
        as_of_seq, as_of_time = as_of_point(request)
        key = self.attestation_key()
        assert self.settings is not None  # attestation_key() refuses without settings
        with self.reads.connection() as conn:
            if as_of_time is not None:
                as_of_seq = resolve_point(conn, None, as_of_time)
            issued = attest.issue(conn, self.settings, model, as_of_seq=as_of_seq, record=False, signer=key)
        if not request.dry_run:
            issued = attest.record_issuing(self.settings, key, issued)  # one recording at a time: signer.record
        response = query_pb2.AttestResponse(
            envelope_json=issued.envelope_json,
            bundle=issued.evidence.bundle,
            model_id=issued.evidence.model,
            statement_digest=issued.statement_digest,
            event_id=issued.event_id,
        )
        return self._fits(response, "Attest")

    @_rpc
    def Gate(self, request: query_pb2.GateRequest, context: grpc.ServicerContext) -> query_pb2.GateResponse:
        from query.supply.gate import evaluate, gate_evidence, record_decision  # noqa: PLC0415 - loaded on first use
        from query.supply.policy import parse_policy  # noqa: PLC0415

        model = text_field(request.model, "model")
        if not request.policy_toml:
            raise InvalidArgument("policy_toml: expected the policy's TOML text (docs/supply-chain.md), found nothing")
        if len(request.policy_toml) > MAX_POLICY_CHARS:
            raise InvalidArgument(
                expected_found("policy_toml", f"at most {MAX_POLICY_CHARS} characters", len(request.policy_toml))
            )
        policy = parse_policy(request.policy_toml, source="policy_toml")
        as_of_seq, as_of_time = as_of_point(request)
        key = None if request.dry_run else self._gate_key()
        with self.reads.connection() as conn:
            if as_of_time is not None:
                as_of_seq = resolve_point(conn, None, as_of_time)
            evidence = gate_evidence(conn, model, as_of_seq=as_of_seq, recorder=key)
        decision = evaluate(policy, evidence)
        event_id = ""
        if key is not None:
            assert self.settings is not None  # a key is loaded only from settings
            event_id = str(record_decision(self.settings, key, decision))
        return query_pb2.GateResponse(
            model_id=decision.model,
            allowed=decision.allowed,
            rules=[
                query_pb2.RuleVerdict(rule=r.rule, passed=r.passed, reason=r.reason, evidence_seqs=r.evidence_seqs)
                for r in decision.rules
            ],
            policy_digest=decision.policy_digest,
            as_of_seq=decision.as_of_seq,
            decision_event_id=event_id,
        )

    def _gate_key(self) -> Signer:
        """The attestation key to record a decision with: FAILED_PRECONDITION without one (the file's path goes to
        the server's log, not to the client), as for Attest."""
        return self.attestation_key()


def _subgraph_ids(conn: psycopg.Connection, sub: query_pb2.ExportSubgraph, seq: int) -> list[str]:
    start = text_field(sub.start_node_id, "subgraph.start_node_id")
    direction = direction_name(sub.direction, "subgraph.direction")
    max_depth = capped(sub.max_depth, "subgraph.max_depth", DEFAULT_MAX_DEPTH, MAX_DEPTH_CAP)
    answer = traverse.trace(
        conn,
        start,
        direction=direction,
        max_depth=max_depth,
        max_nodes=MAX_NODES_CAP,
        relations=relation_names(sub.relations, "subgraph.relations"),
        as_of_seq=seq,
        predictions_limit=0,
    )
    if answer.truncated and len(answer.nodes) >= MAX_NODES_CAP:
        raise LimitExceeded(
            f"subgraph: more than {MAX_NODES_CAP} nodes (the cap) are reachable from {start}",
            hint="narrow it with max_depth or relations, or export the full graph as N-Triples",
        )
    return [n.id for n in answer.nodes]


# --- the server ------------------------------------------------------------------------------


def build_query_server(
    *,
    dsn: str,
    listen: str,
    max_message_bytes: int,
    interceptors: Sequence[grpc.ServerInterceptor] = (),
    max_workers: int = 16,
    read_timeout_s: float = 5.0,
    server_credentials: grpc.ServerCredentials | None = None,
    settings: Settings | None = None,
) -> tuple[grpc.Server, int]:
    """A QueryService server with health and reflection, bound to ``listen``; not started.

    With ``server_credentials`` it speaks TLS, else plaintext.  Returns the
    server and the bound port (useful with port 0).  Stopping it also closes
    its read pool.  ``settings`` give Gate and Attest the attestation key and
    the way its events reach the ledger; without them both answer
    FAILED_PRECONDITION.
    """
    reads = ReadPool(dsn, timeout_s=read_timeout_s, max_size=max_workers, role=AUDITOR_ROLE)
    servicer = QueryServicer(reads=reads, max_message_bytes=max_message_bytes, settings=settings)
    return serve_on(
        listen,
        reads=reads,
        service_name=SERVICE_NAME,
        add_servicer=lambda server: register_servicer(server, SERVICE, servicer),
        interceptors=interceptors,
        max_workers=max_workers,
        max_message_bytes=max_message_bytes,
        server_credentials=server_credentials,
        thread_prefix="provault-query-grpc",
        listen_key="grpc.query_listen",
    )


class QueryGrpcService(GrpcServerService):
    """The QueryService server as a stack service (``provault up``, ``query serve``)."""

    name = "query-grpc"
    service_label = "QueryService"
    service_name = SERVICE_NAME
    method_roles = QUERY_METHOD_ROLES
    depends_on = frozenset({"postgres"})

    def __init__(self, *, settings: Settings | None = None, **kw: Any) -> None:
        super().__init__(**kw)
        self.settings = settings
        """The stack's settings, for Gate's and Attest's attestation key (docs/supply-chain.md)."""

    def _build(self, interceptors: Sequence[grpc.ServerInterceptor]) -> tuple[grpc.Server, int]:
        return build_query_server(
            dsn=self.dsn,
            listen=self.listen,
            max_message_bytes=self.max_message_bytes,
            interceptors=interceptors,
            server_credentials=self.server_credentials,
            settings=self.settings,
        )


__all__ = [
    "AUDITOR_ROLE",
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_NODES",
    "DEFAULT_PAGE_SIZE",
    "DEFAULT_SEARCH_PAGE",
    "MAX_DEPTH_CAP",
    "MAX_NODES_CAP",
    "MAX_PAGE_SIZE",
    "MAX_SEARCH_PAGE",
    "QUERY_METHOD_ROLES",
    "SERVICE_NAME",
    "QueryGrpcService",
    "QueryServicer",
    "build_query_server",
    "decode_token",
    "edge_pb",
    "encode_token",
    "node_pb",
    "trace_page",
    "translate_error",
]
