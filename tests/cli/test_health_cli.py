"""``provault health``: gRPC health of a server, against real gRPC servers on 127.0.0.1 (TLS and plaintext)."""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ledger.cli import main
from ledger.config import GrpcSettings, Settings
from ledger.embedded import free_port
from ledger.stack import Endpoints, write_stack_file
from tests.deploy.tlskit import Tls, make_tls, tls_health_server

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["health", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Tls:
    """A private CA and a server certificate for the name localhost only (as deploy/ makes them)."""
    return make_tls(tmp_path_factory.mktemp("pki"), ["localhost"])


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tls(tmp_path_factory.mktemp("other"), ["localhost"]).ca


@pytest.fixture
def tls_server(pki: Tls) -> Iterator[tuple[int, health.HealthServicer]]:
    credentials = grpc.ssl_server_credentials([(pki.key.read_bytes(), pki.cert.read_bytes())])
    with tls_health_server(credentials) as (port, servicer):
        yield port, servicer


@contextlib.contextmanager
def plaintext_health_server() -> Iterator[tuple[int, health.HealthServicer]]:
    """A plaintext gRPC server on 127.0.0.1 with the health service only, SERVING."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    servicer.set("", SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port, servicer
    finally:
        server.stop(grace=None)


# --- TLS -------------------------------------------------------------------------------------------


def test_serving_with_the_right_ca(
    tls_server: tuple[int, health.HealthServicer], pki: Tls, capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = tls_server
    target = f"127.0.0.1:{port}"
    code, out, err = _run(capsys, target, "--tls-ca", str(pki.ca), "--tls-name", "localhost")
    assert (code, out, err) == (0, f"provault health: {target} SERVING\n", "")
    code, out, _ = _run(capsys, target, "--tls-ca", str(pki.ca), "--tls-name", "localhost", "--json")
    assert code == 0 and json.loads(out) == {"target": target, "service": "", "status": "SERVING"}
    # The name in the target is checked when no --tls-name is given.
    code, out, _ = _run(capsys, f"localhost:{port}", "--tls-ca", str(pki.ca))
    assert code == 0 and out == f"provault health: localhost:{port} SERVING\n"


def test_a_certificate_that_does_not_name_the_host_fails(
    tls_server: tuple[int, health.HealthServicer], pki: Tls, capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = tls_server
    code, out, err = _run(capsys, f"127.0.0.1:{port}", "--tls-ca", str(pki.ca))
    assert code == 1 and out == ""
    assert err.startswith("provault: error [transport_unavailable]: TLS: ")
    assert f"127.0.0.1:{port}" in err and "does not name 127.0.0.1" in err and "--tls-name" in err


def test_another_ca_fails_the_tls_handshake(
    tls_server: tuple[int, health.HealthServicer], other_ca: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = tls_server
    code, out, err = _run(capsys, f"127.0.0.1:{port}", "--tls-ca", str(other_ca), "--tls-name", "localhost")
    assert code == 1 and out == ""
    assert err.startswith(f"provault: error [transport_unavailable]: TLS handshake with 127.0.0.1:{port} failed: ")
    assert "CERTIFICATE_VERIFY_FAILED" in err and "hint: check --tls-ca" in err


def test_grpc_tls_ca_from_the_settings_is_the_default_ca(
    tls_server: tuple[int, health.HealthServicer],
    pki: Tls,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port, _ = tls_server
    monkeypatch.setenv("PROVAULT_GRPC_TLS_CA", str(pki.ca))
    code, out, _ = _run(capsys, f"localhost:{port}")
    assert code == 0 and out.endswith(" SERVING\n")


def test_ca_files_that_cannot_be_used(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(capsys, "localhost:7430", "--tls-ca", str(tmp_path / "missing.crt"))
    assert code == 1 and "[config_invalid]" in err and f"--tls-ca: cannot read {tmp_path / 'missing.crt'}" in err
    (tmp_path / "junk.crt").write_text("not a certificate\n")
    code, _, err = _run(capsys, "localhost:7430", "--tls-ca", str(tmp_path / "junk.crt"))
    assert code == 1 and "--tls-ca: expected PEM CA certificates" in err
    code, _, err = _run(capsys, "127.0.0.1:7430", "--tls-name", "localhost")
    assert code == 1 and "[health_check_failed]" in err and "give --tls-ca" in err


# --- statuses --------------------------------------------------------------------------------------


def test_not_serving_and_per_service_statuses(
    tls_server: tuple[int, health.HealthServicer], pki: Tls, capsys: pytest.CaptureFixture[str]
) -> None:
    port, servicer = tls_server
    target = f"127.0.0.1:{port}"
    tls = ["--tls-ca", str(pki.ca), "--tls-name", "localhost"]
    servicer.set("", NOT_SERVING)
    code, out, err = _run(capsys, target, *tls)
    assert (code, out, err) == (1, f"provault health: {target} NOT_SERVING\n", "")
    code, out, _ = _run(capsys, target, *tls, "--json")
    assert code == 1 and json.loads(out)["status"] == "NOT_SERVING"

    servicer.set("provault.v1.LedgerService", SERVING)
    code, out, _ = _run(capsys, target, *tls, "--service", "provault.v1.LedgerService")
    assert (code, out) == (0, f"provault health: {target} provault.v1.LedgerService SERVING\n")
    code, out, _ = _run(capsys, target, *tls, "--service", "provault.v1.QueryService", "--json")
    assert code == 1 and json.loads(out) == {
        "target": target,
        "service": "provault.v1.QueryService",
        "status": "SERVICE_UNKNOWN",
    }

    servicer.enter_graceful_shutdown()  # what the servers do on SIGTERM
    code, out, _ = _run(capsys, target, *tls, "--service", "provault.v1.LedgerService")
    assert code == 1 and out.endswith(" NOT_SERVING\n")


# --- plaintext, unreachable, slow ------------------------------------------------------------------


def test_a_plaintext_target(capsys: pytest.CaptureFixture[str]) -> None:
    with plaintext_health_server() as (port, _):
        code, out, err = _run(capsys, f"127.0.0.1:{port}")
        assert (code, out, err) == (0, f"provault health: 127.0.0.1:{port} SERVING\n", "")


def test_plaintext_against_tls_and_tls_against_plaintext_say_so(
    tls_server: tuple[int, health.HealthServicer], pki: Tls, capsys: pytest.CaptureFixture[str]
) -> None:
    port, _ = tls_server
    code, _, err = _run(capsys, f"127.0.0.1:{port}")
    assert code == 1 and f"127.0.0.1:{port} is not reachable in plaintext" in err
    assert "if the server speaks TLS, give --tls-ca" in err
    with plaintext_health_server() as (plain, _):
        code, _, err = _run(capsys, f"127.0.0.1:{plain}", "--tls-ca", str(pki.ca), "--tls-name", "localhost")
        assert code == 1 and f"TLS handshake with 127.0.0.1:{plain} failed" in err


def test_nothing_listening(pki: Tls, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    for tls in ([], ["--tls-ca", str(pki.ca), "--tls-name", "localhost"]):
        started = time.monotonic()
        code, out, err = _run(capsys, f"127.0.0.1:{port}", *tls)
        assert code == 1 and out == ""
        assert err.startswith(
            f"provault: error [transport_unavailable]: 127.0.0.1:{port} is not reachable: nothing listens there"
        )
        assert "hint: is `provault ledger serve`" in err
        assert time.monotonic() - started < 3, "a refused connection fails at once"


def test_a_server_that_never_answers_times_out(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts the connection; nobody answers
        port = silent.getsockname()[1]
        started = time.monotonic()
        code, _, err = _run(capsys, f"127.0.0.1:{port}", "--timeout", "0.5")
        elapsed = time.monotonic() - started
    assert code == 1 and f"127.0.0.1:{port} did not answer the health check within 0.5 s" in err
    assert "[transport_unavailable]" in err
    assert elapsed < 3


# --- TARGET: words, the stack file, syntax ---------------------------------------------------------


def test_ledger_and_query_resolve_from_the_settings(
    tmp_path: Path, pki: Tls, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    data = ["--data-dir", str(tmp_path / "data")]
    with (
        plaintext_health_server() as (ledger_port, _),
        tls_health_server(grpc.ssl_server_credentials([(pki.key.read_bytes(), pki.cert.read_bytes())])) as (
            query_port,
            _,
        ),
    ):
        # A wildcard listen address is dialled on loopback; `ledger` is the default TARGET.
        monkeypatch.setenv("PROVAULT_GRPC_LEDGER_LISTEN", f"0.0.0.0:{ledger_port}")
        for argv in ([], ["ledger"]):
            code, out, _ = _run(capsys, *argv, *data)
            assert (code, out) == (0, f"provault health: 127.0.0.1:{ledger_port} SERVING\n")
        # `query` from a configuration file, with its CA.
        config = tmp_path / "provault.toml"
        config.write_text(f'[grpc]\nquery_listen = "localhost:{query_port}"\ntls_ca = "{pki.ca}"\n')
        code, out, _ = _run(capsys, "query", "--config", str(config), *data)
        assert (code, out) == (0, f"provault health: localhost:{query_port} SERVING\n")
    code, _, err = _run(capsys, "ledger", *data)
    assert code == 1 and f"127.0.0.1:{ledger_port} is not reachable" in err


def test_a_running_provault_up_wins_over_the_settings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    data.mkdir()
    with plaintext_health_server() as (ledger_port, _), plaintext_health_server() as (query_port, _):
        # The stack file names this (live) process, as `provault up` names its own.
        write_stack_file(
            data,
            Endpoints(
                postgres_dsn="postgresql://x@127.0.0.1/x",
                nats_url="nats://127.0.0.1:4222",
                ledger_grpc=f"127.0.0.1:{ledger_port}",
                query_grpc=f"127.0.0.1:{query_port}",
            ),
        )
        for word, port in (("ledger", ledger_port), ("query", query_port)):
            code, out, _ = _run(capsys, word, "--data-dir", str(data))
            assert (code, out) == (0, f"provault health: 127.0.0.1:{port} SERVING\n")


@pytest.mark.parametrize("listen", ["0.0.0.0:7430", "[::]:7430", ":::7430", "[::1]:7430", "10.0.0.5:7430"])
def test_wildcard_listen_addresses_are_dialled_on_loopback(listen: str, tmp_path: Path) -> None:
    from ledger.cli._health import resolve_target  # noqa: PLC0415

    settings = Settings(data_dir=tmp_path, grpc=GrpcSettings(ledger_listen=listen))
    expected = {"0.0.0.0:7430": "127.0.0.1:7430", "[::]:7430": "[::1]:7430", ":::7430": "[::1]:7430"}.get(
        listen, listen
    )
    assert resolve_target("ledger", settings) == expected
    assert resolve_target("10.1.2.3:99", settings) == "10.1.2.3:99"


@pytest.mark.parametrize(
    "argv",
    [
        ["foo"],
        ["host:"],
        [":7430"],
        ["host:99999"],
        ["host:0"],
        ["::1:7430"],
        ["127.0.0.1:7430", "extra"],
        ["--timeout", "0"],
        ["--timeout", "soon"],
    ],
)
def test_a_wrong_command_line_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["health", *argv])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err
    if argv[0] != "--timeout" and len(argv) == 1:
        assert f"argument TARGET: expected HOST:PORT, `ledger` or `query`, found {argv[0]!r}" in err


def test_ipv6_and_host_names_parse(capsys: pytest.CaptureFixture[str]) -> None:
    from ledger.cli import build_parser  # noqa: PLC0415

    for target in ("[::1]:7430", "ledger.internal:7430", "provault-ledger.provault.svc.cluster.local:7430"):
        assert build_parser().parse_args(["health", target]).target == target


# --- the real servers ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_the_real_ledger_and_query_servers(
    ledger, tmp_path: Path, pki: Tls, capsys: pytest.CaptureFixture[str]
) -> None:
    """LedgerService and QueryService with TLS and tokens, as `ledger serve` / `query serve` secure them: no token
    needed, each SERVING as a whole and for its own service, the other service unknown."""
    from ledger.grpckit.tokens import TokenStore, tokens_path  # noqa: PLC0415
    from tests.service.test_auth import serving  # noqa: PLC0415

    settings = Settings(data_dir=tmp_path / "data", grpc=GrpcSettings(tls_cert=str(pki.cert), tls_key=str(pki.key)))
    TokenStore(tokens_path(settings)).create(role="admin", name="bootstrap")
    with serving(ledger, settings) as s:
        for target, own, other in (
            (s.ledger_target, "provault.v1.LedgerService", "provault.v1.QueryService"),
            (s.query_target, "provault.v1.QueryService", "provault.v1.LedgerService"),
        ):
            port = target.rsplit(":", 1)[1]
            tls = ["--tls-ca", str(pki.ca), "--tls-name", "localhost"]
            for service, code_expected, status in (
                ("", 0, "SERVING"),
                (own, 0, "SERVING"),
                (other, 1, "SERVICE_UNKNOWN"),
            ):
                code, out, err = _run(capsys, f"127.0.0.1:{port}", *tls, "--service", service, "--json")
                assert code == code_expected, err
                assert json.loads(out) == {"target": f"127.0.0.1:{port}", "service": service, "status": status}
