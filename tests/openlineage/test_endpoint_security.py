"""The endpoint outside dev mode: api_key tokens and their roles, TLS, and 503 only when nothing was kept."""

from __future__ import annotations

import dataclasses
import ssl
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from agents.openlineage._spec import check_body
from agents.openlineage.server import OpenLineageServer
from agents.openlineage.stack import build_server, registration
from ledger.config import AgentSettings, GrpcSettings, OpenLineageSettings, Settings
from ledger.core.errors import ConfigError
from ledger.core.keys import Ed25519Signer
from ledger.grpckit.tokens import TokenStore
from ledger.keyadmin import register_key
from tests.deploy.tlskit import Tls, make_tls
from tests.openlineage.conftest import OlStack, post, wait_delivered
from tests.openlineage.test_spec import body, run_event


def _settings(ol: OlStack, tmp: Path, **openlineage) -> Settings:
    return dataclasses.replace(
        ol.settings,
        dev_mode=False,
        grpc=GrpcSettings(
            ledger_listen="127.0.0.1:0", query_listen="127.0.0.1:0", tokens_file=str(tmp / "tokens.json")
        ),
        openlineage=OpenLineageSettings(listen="127.0.0.1:0", producer_id=f"openlineage/{tmp.name}", **openlineage),
    )


@pytest.fixture
def tokens(tmp_path: Path) -> dict[str, str]:
    store = TokenStore(tmp_path / "tokens.json")
    return {role: store.create(role=role, name=f"{role}-client")[0] for role in ("producer", "auditor", "admin")}


def _served(ol: OlStack, settings: Settings) -> OpenLineageServer:
    signer = Ed25519Signer.generate()
    register_key(ol.settings, registration(settings, signer), target=str(ol.endpoints.ledger_grpc))
    server = build_server(settings, signer=signer)
    server.start()
    return server


@pytest.fixture
def secured(ol_stack: OlStack, tmp_path: Path, tokens: dict[str, str]) -> Iterator[OpenLineageServer]:
    server = _served(ol_stack, _settings(ol_stack, tmp_path))
    try:
        yield server
    finally:
        server.stop()


def test_a_producer_token_is_accepted_and_recorded_as_the_credential(
    ol_stack: OlStack, secured: OpenLineageServer, tokens: dict[str, str]
) -> None:
    before = len(ol_stack.entries())
    for role in ("producer", "admin"):
        event = run_event(run__runId=str(uuid.uuid4()))
        code, _, answer = post(secured.url, body(event), headers={"Authorization": f"Bearer {tokens[role]}"})
        assert (code, answer["status"]) == (201, "accepted")
    logged = wait_delivered(ol_stack, before + 2)[before:]
    credential = logged[0]["event"]["data"]["openlineage"]["credential"]
    token_id = tokens["producer"].split("_")[1]
    assert credential == {"id": f"token:{token_id}", "name": "producer-client"}
    assert logged[0]["event"]["producer"]["id"] == secured.app.intake.agent.producer_id


@pytest.mark.parametrize(
    ("header", "status"),
    [
        (None, 401),
        ("Bearer pvt_000000000000_notarealsecretnotarealsecretnotarealsecret1", 401),
        ("Basic dXNlcjpwYXNz", 401),
        ("auditor", 403),
    ],
    ids=["no token", "unknown token", "basic auth", "auditor token"],
)
def test_other_credentials_are_refused_and_nothing_is_kept(
    ol_stack: OlStack, secured: OpenLineageServer, tokens: dict[str, str], header: str | None, status: int
) -> None:
    before = ol_stack.entries()
    headers = (
        {} if header is None else {"Authorization": f"Bearer {tokens['auditor']}" if header == "auditor" else header}
    )
    code, response_headers, answer = post(secured.url, body(run_event(run__runId=str(uuid.uuid4()))), headers=headers)
    assert (code, answer["code"]) == (status, status)
    if status == 401:
        assert response_headers["WWW-Authenticate"] == 'Bearer realm="provault"'
    else:
        assert "auditor" in answer["message"] and "producer" in answer["message"]
    assert secured.app.intake.agent.pending() == 0
    assert ol_stack.entries() == before


def test_without_a_tokens_file_the_endpoint_refuses_to_start(ol_stack: OlStack, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"no way to authenticate OpenLineage clients"):
        build_server(_settings(ol_stack, tmp_path), signer=Ed25519Signer.generate())


def test_a_public_address_without_tls_is_refused(ol_stack: OlStack, tmp_path: Path, tokens) -> None:
    settings = _settings(ol_stack, tmp_path)
    settings = dataclasses.replace(settings, openlineage=dataclasses.replace(settings.openlineage, listen="0.0.0.0:0"))
    with pytest.raises(ConfigError, match=r"openlineage.listen: 0.0.0.0:0 is not a loopback address"):
        build_server(settings, signer=Ed25519Signer.generate())


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    return make_tls(tmp_path_factory.mktemp("olpki"), ["127.0.0.1"])


def test_with_tls_the_endpoint_speaks_https_only(ol_stack: OlStack, tmp_path: Path, tokens, pki: Tls) -> None:
    server = _served(ol_stack, _settings(ol_stack, tmp_path, tls_cert=str(pki.cert), tls_key=str(pki.key)))
    try:
        assert server.url.startswith("https://127.0.0.1:")
        context = ssl.create_default_context(cafile=str(pki.ca))
        headers = {"Authorization": f"Bearer {tokens['producer']}"}
        code, _, answer = post(
            server.url, body(run_event(run__runId=str(uuid.uuid4()))), headers=headers, context=context
        )
        assert (code, answer["status"]) == (201, "accepted")
        import http.client  # noqa: PLC0415

        with pytest.raises(http.client.RemoteDisconnected):  # plaintext HTTP to the TLS port: no answer
            post(server.url.replace("https://", "http://"), b"{}", headers=headers)
    finally:
        server.stop()


def test_a_spool_that_cannot_take_the_event_answers_503_and_keeps_nothing(
    ol_stack: OlStack, tmp_path: Path, tokens
) -> None:
    settings = _settings(ol_stack, tmp_path)
    settings = dataclasses.replace(settings, agent=AgentSettings(spool_max_bytes=4096, publish_timeout_s=0.3))
    server = _served(ol_stack, settings)
    try:
        event = run_event(run__runId=str(uuid.uuid4()))
        event["run"]["facets"]["pad"] = {"_producer": "https://a", "_schemaURL": "https://a#/F", "x": "y" * 8000}
        headers = {"Authorization": f"Bearer {tokens['producer']}"}
        code, response_headers, answer = post(server.url, body(event), headers=headers)
        assert (code, response_headers["Retry-After"]) == (503, "5")
        assert "nothing was kept" in answer["message"] and "spool" in answer["message"]
        assert server.app.intake.seen(_digest(event)) is None
        assert server.app.intake.agent.pending() == 0
    finally:
        server.stop()


def _digest(event: dict) -> str:
    return check_body(body(event)).digest
