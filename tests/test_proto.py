"""The wire contract (proto/provault/v1): generated code and docs are current,
the services have the agreed RPCs, and the generated stubs serve."""

from __future__ import annotations

import base64
import importlib.util
import json
import re
import subprocess
import sys
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from google.protobuf import descriptor_pb2, json_format

from provault.v1 import envelope_pb2, ledger_pb2, ledger_pb2_grpc, query_pb2, query_pb2_grpc

REPO = Path(__file__).resolve().parents[1]
PROTO = REPO / "proto"
GENERATE = PROTO / "generate.py"
DOCS = REPO / "docs" / "api.md"
GENERATED = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
REGENERATE = "Run `python proto/generate.py` and commit the result."

# service -> rpc -> (request, response, client streaming, server streaming)
EXPECTED_RPCS = {
    "provault.v1.LedgerService": {
        "Append": ("AppendRequest", "AppendResponse", False, False),
        "AppendStream": ("AppendStreamRequest", "AppendStreamResponse", True, False),
        "GetEntry": ("GetEntryRequest", "GetEntryResponse", False, False),
        "GetCheckpoint": ("GetCheckpointRequest", "GetCheckpointResponse", False, False),
        "GetInclusionProof": ("GetInclusionProofRequest", "GetInclusionProofResponse", False, False),
        "GetConsistencyProof": ("GetConsistencyProofRequest", "GetConsistencyProofResponse", False, False),
    },
    "provault.v1.QueryService": {
        "Trace": ("TraceRequest", "TraceResponse", False, False),
        "GetNode": ("GetNodeRequest", "GetNodeResponse", False, False),
        "Search": ("SearchRequest", "SearchResponse", False, False),
        "Export": ("ExportRequest", "ExportResponse", False, True),
        "Sparql": ("SparqlRequest", "SparqlResponse", False, False),
        "Bundle": ("BundleRequest", "BundleResponse", False, False),
        "Gate": ("GateRequest", "GateResponse", False, False),
        "Attest": ("AttestRequest", "AttestResponse", False, False),
    },
}
MODULES = (envelope_pb2, ledger_pb2, query_pb2)


def _generated(root: Path) -> dict[Path, bytes]:
    return {p.relative_to(root): p.read_bytes() for pattern in GENERATED for p in (root / "provault").rglob(pattern)}


def _version_hint(committed: bytes, fresh: bytes) -> str:
    pattern = rb"Protobuf Python Version: (\S+)|GRPC_GENERATED_VERSION = '([^']+)'"
    old, new = re.search(pattern, committed), re.search(pattern, fresh)
    if old and new and old.group(0) != new.group(0):
        return f" (generator version differs: committed {old.group(0).decode()!r}, yours {new.group(0).decode()!r})"
    return ""


def _load_generate():
    spec = importlib.util.spec_from_file_location("provault_proto_generate", GENERATE)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


# --- (a) committed generated files and docs are current ----------------------


def test_generated_code_and_api_docs_are_current(tmp_path: Path) -> None:
    pytest.importorskip(
        "grpc_tools",
        reason="grpcio-tools is not installed (pip install -e '.[dev]'), "
        "so the committed generated code cannot be checked",
    )
    out, docs = tmp_path / "gen", tmp_path / "api.md"
    run = subprocess.run(
        [sys.executable, str(GENERATE), "--out", str(out), "--docs", str(docs)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, f"proto/generate.py failed:\n{run.stderr}"

    fresh, committed = _generated(out), _generated(PROTO)
    assert fresh, "proto/generate.py wrote no files"
    problems = []
    for rel in sorted(fresh.keys() | committed.keys()):
        if rel not in committed:
            problems.append(f"proto/{rel} is missing")
        elif rel not in fresh:
            problems.append(f"proto/{rel} is not generated from any .proto file; delete it")
        elif committed[rel] != fresh[rel]:
            problems.append(f"proto/{rel} is stale{_version_hint(committed[rel], fresh[rel])}")
    if not DOCS.exists():
        problems.append("docs/api.md is missing")
    elif DOCS.read_bytes() != docs.read_bytes():
        problems.append("docs/api.md is stale")
    assert not problems, "\n".join(problems) + "\n" + REGENERATE


def test_docs_refuse_an_undocumented_element() -> None:
    generate = _load_generate()
    file = descriptor_pb2.FileDescriptorProto(name="provault/v1/bare.proto", package="provault.v1", syntax="proto3")
    file.message_type.add(name="Bare").field.add(
        name="x", number=1, type=descriptor_pb2.FieldDescriptorProto.TYPE_STRING
    )
    with pytest.raises(generate.GenerateError, match=r"message Bare has no comment[\s\S]*field Bare\.x"):
        generate.render_docs(descriptor_pb2.FileDescriptorSet(file=[file]))


# --- (b) the services have exactly the agreed shape --------------------------


@pytest.mark.parametrize("service_name", sorted(EXPECTED_RPCS))
def test_service_has_the_agreed_rpcs(service_name: str) -> None:
    services = {s.full_name: s for m in MODULES for s in m.DESCRIPTOR.services_by_name.values()}
    service = services[service_name]
    found = {
        m.name: (m.input_type.name, m.output_type.name, m.client_streaming, m.server_streaming) for m in service.methods
    }
    assert found == EXPECTED_RPCS[service_name]


def test_every_rpc_has_its_own_request_and_response() -> None:
    types = [t for rpcs in EXPECTED_RPCS.values() for req, res, *_ in rpcs.values() for t in (req, res)]
    assert len(types) == len(set(types))


def test_every_enum_starts_with_unspecified_zero() -> None:
    enums = [e for m in MODULES for e in m.DESCRIPTOR.enum_types_by_name.values()]
    assert enums
    for enum in enums:
        prefix = re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"
        assert enum.values[0].number == 0 and enum.values[0].name == prefix + "UNSPECIFIED", enum.name
        assert all(v.name.startswith(prefix) for v in enum.values), enum.name


def test_envelope_message_reads_dsse_json() -> None:
    """The claim in envelope.proto: proto3 JSON parsing decodes a DSSE envelope."""
    payload, sig = b'{"id": "0190"}', bytes(range(64))
    raw = json.dumps(
        {
            "payloadType": "application/vnd.provault.event+json;version=1",
            "payload": base64.b64encode(payload).decode(),
            "signatures": [{"keyid": "ab" * 32, "sig": base64.b64encode(sig).decode()}],
        }
    ).encode()
    envelope = json_format.Parse(raw, envelope_pb2.Envelope())
    assert (envelope.payload, envelope.signatures[0].keyid, envelope.signatures[0].sig) == (payload, "ab" * 32, sig)


# --- (c) the generated base servicers serve UNIMPLEMENTED ---------------------


def test_unimplemented_servicers_answer_unimplemented() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    try:
        ledger_pb2_grpc.add_LedgerServiceServicer_to_server(ledger_pb2_grpc.LedgerServiceServicer(), server)
        query_pb2_grpc.add_QueryServiceServicer_to_server(query_pb2_grpc.QueryServiceServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        assert port, "could not bind 127.0.0.1 on a free port"
        server.start()
        with grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.enable_http_proxy", 0)]) as channel:
            with pytest.raises(grpc.RpcError) as unary:
                ledger_pb2_grpc.LedgerServiceStub(channel).GetCheckpoint(ledger_pb2.GetCheckpointRequest(), timeout=10)
            with pytest.raises(grpc.RpcError) as streaming:
                list(query_pb2_grpc.QueryServiceStub(channel).Export(query_pb2.ExportRequest(), timeout=10))
        assert unary.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert streaming.value.code() is grpc.StatusCode.UNIMPLEMENTED
    finally:
        server.stop(None)
