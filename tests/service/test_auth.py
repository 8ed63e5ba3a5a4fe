"""Authentication and roles on both gRPC services: real servers on 127.0.0.1:0, real tokens files, real TLS."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from google.protobuf import message_factory
from grpc_health.v1 import health_pb2, health_pb2_grpc

from agents.spool import Record
from agents.transport import GrpcTransport
from ledger.cli import main
from ledger.client import ClientCredentials, LedgerClient, RemoteError
from ledger.config import GrpcSettings
from ledger.core.errors import ConfigError
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.grpckit.auth import LEDGER_METHOD_ROLES, DevModeAuthenticator
from ledger.grpckit.security import server_security
from ledger.grpckit.tokens import TokenStore, tokens_path
from provault.v1 import ledger_pb2, query_pb2
from query.service import QUERY_METHOD_ROLES
from tests.ledgerkit import Ledger, dataset_prov
from tests.service.serverkit import Servers, serving, settings_for

pytestmark = pytest.mark.postgres

TIMEOUT = 10
OK = grpc.StatusCode.OK
UNAUTHENTICATED = grpc.StatusCode.UNAUTHENTICATED
DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID = grpc.StatusCode.INVALID_ARGUMENT
S = ledger_pb2.AppendStatus
PRODUCER_ID = "trainer@host-1"

# --- every RPC, from the service descriptors ---------------------------------------------------


@dataclass(frozen=True)
class Rpc:
    path: str
    kind: str
    request: type
    response: type


def _rpcs(pb2, name: str) -> list[Rpc]:
    service = pb2.DESCRIPTOR.services_by_name[name]
    return [
        Rpc(
            path=f"/{service.full_name}/{m.name}",
            kind=("stream" if m.client_streaming else "unary") + "_" + ("stream" if m.server_streaming else "unary"),
            request=message_factory.GetMessageClass(m.input_type),
            response=message_factory.GetMessageClass(m.output_type),
        )
        for m in service.methods
    ]


LEDGER_RPCS = _rpcs(ledger_pb2, "LedgerService")
QUERY_RPCS = _rpcs(query_pb2, "QueryService")
LEDGER_READS = [r for r in LEDGER_RPCS if "/Get" in r.path]
APPENDS = [r for r in LEDGER_RPCS if "/Append" in r.path]


def call(
    channel: grpc.Channel, rpc: Rpc, metadata: Sequence[tuple[str, str]] = (), request=None
) -> tuple[grpc.StatusCode, str]:
    """Call ``rpc`` (an empty request unless given); its status code and details."""
    method = getattr(channel, rpc.kind)(
        rpc.path, request_serializer=rpc.request.SerializeToString, response_deserializer=rpc.response.FromString
    )
    request = request if request is not None else rpc.request()
    if rpc.kind.startswith("stream"):
        request = iter(request if isinstance(request, list) else [request])
    try:
        result = method(request, metadata=tuple(metadata), timeout=TIMEOUT)
        if rpc.kind.endswith("stream"):
            list(result)
        return OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details() or ""


_L, _Q = "/provault.v1.LedgerService/", "/provault.v1.QueryService/"
_EMPTY = "expected a non-empty string, found an empty field"
_NO_ENVELOPE = "envelope_json: expected the DSSE envelope JSON bytes, found an empty field"
ADMITTED = {
    _L + "Append": (INVALID, _NO_ENVELOPE),
    _L + "AppendStream": (INVALID, f"stream message 0: {_NO_ENVELOPE}"),
    _L + "GetEntry": (INVALID, "entry: expected exactly one of seq or event_id, found neither"),
    _L + "GetCheckpoint": (OK, ""),
    _L + "GetInclusionProof": (INVALID, "entry: expected exactly one of seq or event_id, found neither"),
    _L + "GetConsistencyProof": (INVALID, f"old_size: expected an integer in 1..{2**63 - 1}, found 0"),
    _Q + "Trace": (INVALID, f"start_node_id: {_EMPTY}"),
    _Q + "GetNode": (INVALID, f"node_id: {_EMPTY}"),
    _Q + "Search": (grpc.StatusCode.FAILED_PRECONDITION, "nothing is projected yet"),
    _Q + "Export": (
        INVALID,
        "format: expected one of EXPORT_FORMAT_TURTLE, EXPORT_FORMAT_JSONLD, EXPORT_FORMAT_PROV_JSON, "
        "EXPORT_FORMAT_NTRIPLES, found EXPORT_FORMAT_UNSPECIFIED",
    ),
    _Q + "Sparql": (INVALID, f"query: {_EMPTY}"),
    _Q + "Bundle": (INVALID, f"node_id: {_EMPTY}"),
    _Q + "Gate": (INVALID, f"model: {_EMPTY}"),
    _Q + "Attest": (INVALID, f"model: {_EMPTY}"),
}
"""Each RPC's answer to an empty request from an admitted caller on these servers (no projector runs)."""


def answer(channel: grpc.Channel, rpc: Rpc, metadata: Sequence[tuple[str, str]] = ()) -> tuple[grpc.StatusCode, str]:
    """The code and first line of details for ``rpc``'s empty request; :data:`ADMITTED` when it got past auth."""
    code, details = call(channel, rpc, metadata)
    return code, details.split("\n")[0]


def bearer(token: str) -> tuple[tuple[str, str]]:
    return (("authorization", f"Bearer {token}"),)


def test_the_role_tables_cover_exactly_the_services_rpcs() -> None:
    assert set(LEDGER_METHOD_ROLES) == {r.path for r in LEDGER_RPCS}
    assert set(QUERY_METHOD_ROLES) == {r.path for r in QUERY_RPCS}
    assert set(ADMITTED) == {r.path for r in LEDGER_RPCS + QUERY_RPCS}


# --- servers -------------------------------------------------------------------------------


@pytest.fixture
def tokens(ledger: Ledger, tmp_path: Path) -> Iterator[Servers]:
    """Servers that accept bearer tokens (plaintext, loopback); an admin token exists so they may start."""
    settings = settings_for(tmp_path)
    TokenStore(tokens_path(settings)).create(role="admin", name="bootstrap")
    with serving(ledger, settings) as s:
        yield s


def _producer(s: Servers, producer_id: str = PRODUCER_ID) -> ProducerChain:
    """A producer whose key is registered (straight into the log)."""
    chain, reg = s.ledger.producer_with_key(producer_id)
    s.ledger.append(reg)
    return chain


def _event(chain: ProducerChain, i: int = 0) -> bytes:
    return chain.emit("dataset.registered", dataset_prov(f"{i:064x}")).envelope


# --- who may call what ---------------------------------------------------------------------------


def test_without_credentials_every_rpc_is_unauthenticated_but_health_answers(tokens: Servers) -> None:
    with tokens.channels() as (ledger_ch, query_ch):
        for channel, rpcs in ((ledger_ch, LEDGER_RPCS), (query_ch, QUERY_RPCS)):
            for rpc in rpcs:
                assert call(channel, rpc)[0] == UNAUTHENTICATED, rpc.path
            health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
            assert health.status == health_pb2.HealthCheckResponse.SERVING
            reflection = Rpc(
                "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                "stream_stream",
                *(type(m) for m in _reflection_messages()),
            )
            assert call(channel, reflection)[0] == UNAUTHENTICATED
            assert call(channel, reflection, bearer(tokens.token("auditor")))[0] == OK  # any identity may reflect


def _reflection_messages():
    from grpc_reflection.v1alpha import reflection_pb2  # noqa: PLC0415

    return reflection_pb2.ServerReflectionRequest(list_services=""), reflection_pb2.ServerReflectionResponse()


def test_wrong_and_malformed_tokens_are_unauthenticated(tokens: Servers) -> None:
    good = tokens.token("admin")
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    unknown_id = "pvt_000000000000_" + good.split("_", 2)[2]
    attempts = [
        bearer(wrong_secret),
        bearer(unknown_id),
        bearer("hunter2"),
        (("authorization", f"Basic {good}"),),
        (("authorization", good),),
        bearer(good) + bearer(good),
    ]
    with tokens.channels() as (ledger_ch, query_ch):
        for metadata in attempts:
            code, details = call(ledger_ch, LEDGER_READS[0], metadata)
            assert code == UNAUTHENTICATED and "no valid credentials" in details, metadata
            assert call(query_ch, QUERY_RPCS[0], metadata)[0] == UNAUTHENTICATED
        assert answer(ledger_ch, LEDGER_READS[0], bearer(good)) == ADMITTED[LEDGER_READS[0].path]


def test_producer_appends_for_its_own_producer_ids_only(tokens: Servers) -> None:
    mine, other = _producer(tokens), _producer(tokens, "intruder@host-2")
    token = tokens.token("producer", producers=["trainer@*"])
    size = tokens.log_size()
    with tokens.channels() as (ledger_ch, query_ch):
        for rpc in QUERY_RPCS + LEDGER_READS:
            assert call(query_ch if rpc in QUERY_RPCS else ledger_ch, rpc, bearer(token))[0] == DENIED, rpc.path
        with LedgerClient(tokens.ledger_target, token=token) as client:
            assert client.append(_event(mine, 0)).status == "accepted"
            assert client.append_many([_event(mine, 1), _event(mine, 2)])[1].status == "accepted"
            with pytest.raises(RemoteError) as info:
                client.append(_event(other, 0))
            assert info.value.code == DENIED and "producer id 'intruder@host-2' is not one token:" in info.value.message
            assert "(allowed: 'trainer@*')" in info.value.message
            # A whole stream is refused for one foreign event, before anything of it is appended.
            with pytest.raises(RemoteError) as info:
                client.append_many([_event(mine, 3), _event(mine, 4), _event(other, 1), _event(mine, 5)])
            assert info.value.code == DENIED and "stream message 2: producer id 'intruder@host-2'" in info.value.message
            assert "nothing of this stream was appended" in info.value.message
            # key.* events need the admin role, even with a producer pattern of '*'.
            anyone = tokens.token("producer", producers=["*"])
            key_event = tokens.ledger.registration(Ed25519Signer.generate()).envelope
            code, details = call(
                ledger_ch, APPENDS[0], bearer(anyone), ledger_pb2.AppendRequest(envelope_json=key_event)
            )
            assert code == DENIED and "key.registered events need the admin role" in details
    assert tokens.log_size() == size + 3
    assert tokens.ledger.rejections() == []  # refusals for permission are not the ledger's rejections


def test_auditor_reads_everything_and_appends_nothing(tokens: Servers) -> None:
    token = tokens.token("auditor", name="audit team")
    chain = _producer(tokens)
    with tokens.channels() as (ledger_ch, query_ch):
        for channel, rpcs in ((query_ch, QUERY_RPCS), (ledger_ch, LEDGER_READS)):
            for rpc in rpcs:
                assert answer(channel, rpc, bearer(token)) == ADMITTED[rpc.path], rpc.path
        for rpc in APPENDS:
            code, details = call(ledger_ch, rpc, bearer(token), rpc.request(envelope_json=_event(chain)))
            assert (
                code == DENIED
                and "needs role admin or producer; token:" in details
                and "(audit team) has auditor" in details
            )


def test_admin_may_call_everything_and_append_for_anyone(tokens: Servers) -> None:
    token = tokens.token("admin")
    with tokens.channels() as (ledger_ch, query_ch):
        for channel, rpcs in ((query_ch, QUERY_RPCS), (ledger_ch, LEDGER_RPCS)):
            for rpc in rpcs:
                assert answer(channel, rpc, bearer(token)) == ADMITTED[rpc.path], rpc.path
    key = Ed25519Signer.generate()
    with LedgerClient(tokens.ledger_target, token=token) as client:
        assert (
            client.append(tokens.ledger.registration(key, producers=["intruder@host-2"]).envelope).status == "accepted"
        )
        assert client.append(_event(ProducerChain("intruder@host-2", key))).status == "accepted"


def test_a_revoked_token_is_refused_once_the_file_changes(tokens: Servers, capsys: pytest.CaptureFixture[str]) -> None:
    data_dir = str(tokens.settings.data_dir)
    assert main(["auth", "token", "create", "--role", "auditor", "--name", "temp", "--data-dir", data_dir]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    token_id = token.split("_")[1]
    assert f"created token {token_id} (role auditor)" in err and "only time the token is shown" in err
    stored = tokens_path(tokens.settings).read_text()
    assert token not in stored and token.split("_", 2)[2] not in stored  # only the hash is kept
    assert tokens_path(tokens.settings).stat().st_mode & 0o777 == 0o600
    with tokens.channels() as (ledger_ch, _):
        assert call(ledger_ch, LEDGER_READS[1], bearer(token))[0] == OK
        assert main(["auth", "token", "list", "--data-dir", data_dir]) == 0
        listing = capsys.readouterr().out
        assert token_id in listing and "temp" in listing and token not in listing
        assert main(["auth", "token", "revoke", token_id, "--data-dir", data_dir]) == 0
        assert f"revoked token {token_id} (temp)" in capsys.readouterr().out
        assert call(ledger_ch, LEDGER_READS[1], bearer(token))[0] == UNAUTHENTICATED  # no restart
    assert main(["auth", "token", "revoke", token_id, "--data-dir", data_dir]) == 1
    assert "no token with id" in capsys.readouterr().err


def test_token_cli_refuses_unscoped_producers_and_writes_client_token_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    assert main(["auth", "token", "create", "--role", "producer", *data]) == 1
    assert "needs --producer PATTERN" in capsys.readouterr().err
    assert main(["auth", "token", "create", "--role", "auditor", "--producer", "x", *data]) == 1
    out = tmp_path / "trainer.token"
    assert (
        main(["auth", "token", "create", "--role", "producer", "--producer", "trainer@*", "--out", str(out), *data])
        == 0
    )
    assert capsys.readouterr().out == ""  # written to the file, not shown
    assert out.stat().st_mode & 0o777 == 0o600
    creds = ClientCredentials.from_settings(GrpcSettings(client_token_file=str(out)))
    assert creds.token == out.read_text().strip() and creds.metadata() == bearer(creds.token)
    assert main(["auth", "token", "create", "--role", "admin", "--out", str(out), *data]) == 1  # never overwrites
    out.chmod(0o644)
    with pytest.raises(ConfigError, match="readable by others"):
        ClientCredentials.from_settings(GrpcSettings(client_token_file=str(out)))
    with pytest.raises(ConfigError, match="refusing to send a bearer token in clear to ledger.example:7430"):
        LedgerClient("ledger.example:7430", token=creds.token)


def test_the_agents_grpc_transport_sends_its_token(tokens: Servers) -> None:
    chain = _producer(tokens)
    raw = chain.emit("dataset.registered", dataset_prov())
    records = [Record(index=0, event_id=raw.event_id, envelope=raw.envelope)]

    async def send(credentials: ClientCredentials | None) -> int:
        transport = GrpcTransport(tokens.ledger_target, timeout_s=TIMEOUT, credentials=credentials)
        try:
            return await transport.send(records)
        finally:
            await transport.close()

    with pytest.raises(RemoteError) as info:
        asyncio.run(send(None))
    assert info.value.code == UNAUTHENTICATED
    assert asyncio.run(send(ClientCredentials(token=tokens.token("producer", producers=[PRODUCER_ID])))) == 1


# --- refusing to start -------------------------------------------------------------------------


def test_servers_refuse_to_start_without_a_way_to_authenticate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in [n for n in os.environ if n.startswith("PROVAULT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", "postgresql://nobody@127.0.0.1:1/none")
    monkeypatch.setenv("PROVAULT_NATS_URL", "nats://127.0.0.1:1")
    data = ["--data-dir", str(tmp_path / "data")]
    for command in (["ledger", "serve"], ["query", "serve"]):
        assert main([*command, *data]) == 1
        err = capsys.readouterr().err
        assert "no way to authenticate callers" in err and "provault auth token create --role admin" in err, err
    # A non-loopback address without TLS is refused before anything binds or connects.
    assert main(["auth", "token", "create", "--role", "admin", *data]) == 0
    monkeypatch.setenv("PROVAULT_GRPC_QUERY_LISTEN", "0.0.0.0:7431")
    assert main(["query", "serve", *data]) == 1
    err = capsys.readouterr().err
    assert "grpc.query_listen: 0.0.0.0:7431 is not a loopback address and grpc.tls_cert is unset" in err
    settings = settings_for(tmp_path)
    with pytest.raises(ConfigError, match="grpc.ledger_listen: 10.1.2.3:7430 is not a loopback address"):
        server_security(settings, listen="10.1.2.3:7430", listen_key="grpc.ledger_listen")
    with pytest.raises(ConfigError, match="expected both or neither, found only grpc.tls_cert"):
        server_security(
            settings_for(tmp_path, tls_cert=str(tmp_path / "x.pem")),
            listen="127.0.0.1:1",
            listen_key="grpc.ledger_listen",
        )
    (tmp_path / "cert.pem").write_text("not a certificate")
    (tmp_path / "key.pem").write_text("not a key")
    (tmp_path / "key.pem").chmod(0o644)
    with pytest.raises(ConfigError) as info:
        server_security(
            settings_for(tmp_path, tls_cert=str(tmp_path / "cert.pem"), tls_key=str(tmp_path / "key.pem")),
            listen="127.0.0.1:1",
            listen_key="grpc.ledger_listen",
        )
    assert {p.split(":")[0] for p in info.value.problems} == {"grpc.tls_cert", "grpc.tls_key"} and len(
        info.value.problems
    ) == 3
    dev = server_security(replace(settings, dev_mode=True), listen="0.0.0.0:7430", listen_key="grpc.ledger_listen")
    assert isinstance(dev.authenticator, DevModeAuthenticator) and dev.summary.startswith("DEV MODE")


# --- mutual TLS ----------------------------------------------------------------------------------


@dataclass
class Pki:
    ca_cert: bytes
    ca_key: ec.EllipticCurvePrivateKey
    ca_name: x509.Name

    @classmethod
    def new(cls, name: str) -> Pki:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        cert = _sign(
            _builder(subject, key.public_key(), subject).add_extension(
                x509.BasicConstraints(ca=True, path_length=None), critical=True
            ),
            key,
        )
        return cls(ca_cert=cert.public_bytes(serialization.Encoding.PEM), ca_key=key, ca_name=subject)

    def issue(
        self, cn: str, *, ous: Sequence[str] = (), sans: Sequence[x509.GeneralName] = (), server: bool = False
    ) -> tuple[bytes, bytes]:
        """(certificate PEM, private key PEM)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            *(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, o) for o in ous),
        ]
        b = _builder(x509.Name(attrs), key.public_key(), self.ca_name).add_extension(
            x509.BasicConstraints(ca=False, path_length=None), critical=True
        )
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(list(sans)), critical=False)
        pem_key = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return _sign(b, self.ca_key).public_bytes(serialization.Encoding.PEM), pem_key


def _builder(subject: x509.Name, public_key, issuer: x509.Name) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
    )


def _sign(builder: x509.CertificateBuilder, key) -> x509.Certificate:
    return builder.sign(key, hashes.SHA256())


def _write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    path.chmod(0o600)
    return str(path)


@pytest.fixture
def mtls(ledger: Ledger, tmp_path: Path) -> Iterator[tuple[Servers, Pki]]:
    pki = Pki.new("provault test CA")
    cert, key = pki.issue(
        "ledger", sans=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))], server=True
    )
    settings = settings_for(
        tmp_path,
        tls_cert=_write(tmp_path / "server.pem", cert),
        tls_key=_write(tmp_path / "server.key", key),
        tls_client_ca=_write(tmp_path / "ca.pem", pki.ca_cert),
    )
    with serving(ledger, settings) as s:  # no tokens file: client certificates are enough to start
        yield s, pki


def _client(pki: Pki, issuer: Pki | None = None, **kw) -> grpc.ChannelCredentials:
    cert, key = (issuer or pki).issue(**kw)
    return grpc.ssl_channel_credentials(root_certificates=pki.ca_cert, private_key=key, certificate_chain=cert)


def test_mtls_certificates_name_the_caller_and_its_role(mtls: tuple[Servers, Pki], tmp_path: Path) -> None:
    s, pki = mtls
    chain = _producer(s)
    auditor = _client(pki, cn="alice", ous=["auditor", "data-science"])
    with s.channels(auditor) as (ledger_ch, query_ch):
        for rpc in QUERY_RPCS:
            assert answer(query_ch, rpc) == ADMITTED[rpc.path], rpc.path
        code, details = call(ledger_ch, APPENDS[0], request=ledger_pb2.AppendRequest(envelope_json=_event(chain)))
        assert code == DENIED and "cert:alice has auditor" in details
    nobody = _client(pki, cn="bob")  # signed by the CA, but no role
    with s.channels(nobody) as (_, query_ch):
        assert call(query_ch, QUERY_RPCS[0]) == (
            DENIED,
            f"{QUERY_RPCS[0].path} needs role admin or auditor; cert:bob has none",
        )
    # A producer certificate, through LedgerClient and the client settings (one PEM with chain and key).
    cert, key = pki.issue(
        "trainer-host-1", ous=["producer"], sans=[x509.UniformResourceIdentifier(f"provault:producer:{PRODUCER_ID}")]
    )
    client_settings = GrpcSettings(
        tls_ca=_write(tmp_path / "client-ca.pem", pki.ca_cert), client_cert=_write(tmp_path / "client.pem", cert + key)
    )
    with LedgerClient.from_settings(s.ledger_target, client_settings) as client:
        assert client.append(_event(chain, 1)).status == "accepted"
        with pytest.raises(RemoteError) as info:
            client.append(_event(ProducerChain("intruder@host-2", Ed25519Signer.generate())))
        assert (
            info.value.code == DENIED
            and "cert:trainer-host-1 may append for (allowed: 'trainer@host-1')" in info.value.message
        )
    # A token beside the certificate is what counts: a bad one is refused, whatever the certificate says.
    admin = _client(pki, cn="root", ous=["admin"])
    with s.channels(admin) as (ledger_ch, _):
        assert call(ledger_ch, LEDGER_READS[1])[0] == OK
        assert call(ledger_ch, LEDGER_READS[1], bearer("pvt_000000000000_" + "A" * 43))[0] == UNAUTHENTICATED


def test_mtls_handshake_fails_without_a_certificate_or_with_another_cas(mtls: tuple[Servers, Pki]) -> None:
    s, pki = mtls
    stranger = Pki.new("someone else's CA")
    for credentials in (
        grpc.ssl_channel_credentials(root_certificates=pki.ca_cert),
        _client(pki, issuer=stranger, cn="mallory", ous=["admin"]),
    ):
        with s.channels(credentials) as (ledger_ch, query_ch):
            assert call(ledger_ch, LEDGER_READS[1])[0] == grpc.StatusCode.UNAVAILABLE
            with pytest.raises(grpc.RpcError) as info:  # not even health: no TLS session at all
                health_pb2_grpc.HealthStub(query_ch).Check(health_pb2.HealthCheckRequest(), timeout=TIMEOUT)
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE


# --- dev mode ------------------------------------------------------------------------------------


@pytest.mark.nats
def test_provault_up_is_dev_mode_without_authentication_and_says_so(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVAULT_")}
    env.update(
        PROVAULT_GRPC_LEDGER_LISTEN="127.0.0.1:0",
        PROVAULT_GRPC_QUERY_LISTEN="127.0.0.1:0",
        PROVAULT_OPENLINEAGE_LISTEN="127.0.0.1:0",
        PROVAULT_METRICS_LEDGER_LISTEN="127.0.0.1:0",
        PROVAULT_EXPLORER_LISTEN="127.0.0.1:0",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "up", "--data-dir", str(tmp_path / "state")],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    try:
        deadline = time.monotonic() + 90
        assert proc.stdout is not None
        while time.monotonic() < deadline and not any("Press Ctrl-C" in line for line in lines):
            line = proc.stdout.readline()
            if not line:
                break
            lines.append(line)
        banner = "".join(lines)
        assert "DEV MODE: no authentication" in banner, banner
        ledger_target = next(
            line.split("grpc://")[1].split()[0] for line in lines if "grpc://" in line and "LedgerService" in line
        )
        with LedgerClient(ledger_target) as client:  # no credentials at all
            assert client.latest_checkpoint().checkpoint.tree_size >= 0
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    # The servers' own warning, on the first call (the OpenLineage endpoint registering its key, before the banner).
    assert "DEV MODE: gRPC authentication is OFF" in banner + out
