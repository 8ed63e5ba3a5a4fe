"""`provault up` rides out its embedded servers' crashes, keeps its ports, and the CLI spools while it is down.

One stack's life, in order: a producer key is registered; the stack stops and
`provault dataset register` spools (saying why and where); the stack starts
again on the same ports and the spooled event arrives; NATS is killed and its
port held by another process, so its restart fails and is retried with
backoff while the ledger's health says NOT_SERVING (QueryService, which does
not need NATS, stays SERVING); the port is released, NATS comes back and
events flow again; then the same for PostgreSQL, which both servers need, and
the projector carries on.  Events are accepted exactly once throughout.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
import psycopg
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from tests.cli.test_up import _children, _start_up, _stop

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def _cli(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVAULT_")}
    env["PROVAULT_DATA_DIR"] = str(data)
    return subprocess.run(
        [sys.executable, "-m", "ledger.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def _health(address: str) -> int:
    with grpc.insecure_channel(address) as channel:
        return health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=3).status


def _wait(what: str, check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def _accepted(dsn: str) -> int:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT count(*) FROM ledger.entries WHERE kind = 'dataset.registered'").fetchone()[0]


def _port_held(port: int) -> socket.socket:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen()
    return s


def _child(up_pid: int, program: str) -> int:
    for pid in _children(up_pid):
        if program in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode():
            return pid
    pytest.fail(f"no {program} child of provault up")


def _register(data: Path, name: str) -> subprocess.CompletedProcess[str]:
    path = data / f"{name}.csv"
    path.write_text(f"{name}\n", encoding="utf-8")
    return _cli(data, "dataset", "register", str(path), "--name", name)


def _kill_and_hold_port(up_pid: int, program: str, port: int) -> socket.socket:
    """SIGKILL the child, then hold its port at once, before the supervisor's first restart (0.5 s later)."""
    os.kill(_child(up_pid, program), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while True:
        try:
            return _port_held(port)
        except OSError:  # the dying server still holds it for a moment
            if time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def test_up_restarts_crashed_servers_on_their_ports_and_the_cli_spools_while_it_is_down(tmp_path: Path) -> None:
    data = tmp_path / "state"
    proc, first = _start_up(data)
    try:
        assert _cli(data, "keys", "new", str(data / "keys" / "producer.key")).returncode == 0
        reg = _cli(data, "keys", "register", str(data / "keys" / "producer.key.pub"), "--identity", "person:ci")
        assert reg.returncode == 0, reg.stderr
    finally:
        _stop(proc, signal.SIGINT)

    # -- the stack is down: the CLI spools, says why and where, exits 0
    down = _register(data, "while-down")
    assert down.returncode == 0, down.stderr
    assert down.stdout.rstrip().endswith(" spooled")
    assert f"no NATS configured and no running `provault up` found in {data}" in down.stderr
    spool = next(p for p in (data / "spool").iterdir() if not p.name.startswith("openlineage"))
    assert f"the events are kept in the spool {spool} and sent the next time producer" in down.stderr
    assert not (data / "stack.json").exists()

    # -- the second start listens where the first did
    proc, second = _start_up(data)
    try:
        assert (second["postgres_dsn"], second["nats_url"]) == (first["postgres_dsn"], first["nats_url"])
        ports = json.loads((data / "ports.json").read_text())
        assert second["nats_url"] == f"nats://127.0.0.1:{ports['nats']}"
        assert f"127.0.0.1:{ports['postgres']}/" in second["postgres_dsn"]
        dsn, ledger, query = second["postgres_dsn"], second["ledger_grpc"], second["query_grpc"]
        up = _register(data, "after-restart")
        assert up.stdout.rstrip().endswith(" delivered"), up.stderr
        _wait("both events in the log", lambda: _accepted(dsn) == 2)

        # -- NATS crashes and cannot get its port back at first
        held = _kill_and_hold_port(proc.pid, "nats-server", ports["nats"])
        try:
            _wait("the ledger to report NOT_SERVING", lambda: _health(ledger) == NOT_SERVING, timeout=10)
            assert _health(query) == SERVING
            time.sleep(1.6)  # the first retry (0.5 s) fails on the held port; the next is 1 s later
        finally:
            held.close()
        _wait("the ledger to report SERVING again", lambda: _health(ledger) == SERVING)
        assert _register(data, "after-nats").stdout.rstrip().endswith(" delivered")
        _wait("the third event in the log", lambda: _accepted(dsn) == 3)

        # -- PostgreSQL crashes: both servers are out of service until it is back
        held = _kill_and_hold_port(proc.pid, "postgres", ports["postgres"])
        try:
            _wait("both servers to report NOT_SERVING", lambda: NOT_SERVING == _health(ledger) == _health(query))
        finally:
            held.close()
        _wait("both servers to report SERVING", lambda: SERVING == _health(ledger) == _health(query))
        assert _register(data, "after-postgres").stdout.rstrip().endswith(" delivered")
        _wait("the fourth event in the log", lambda: _accepted(dsn) == 4)
        with psycopg.connect(dsn) as c:
            size = c.execute("SELECT count(*) FROM ledger.entries").fetchone()[0]
            _wait(
                "the projector to catch up",
                lambda: c.execute("SELECT last_seq FROM prov.position").fetchone()[0] == size - 1,
            )
    finally:
        out = _stop(proc, signal.SIGINT)
    assert proc.returncode == 0, out
    assert "NATS stopped unexpectedly; restarting it in 0.5 s (attempt 1;" in out
    assert f"NATS did not start again (nats-server cannot listen on 127.0.0.1:{ports['nats']}: another process" in out
    assert f"NATS is running again on {first['nats_url']}" in out
    assert "PostgreSQL stopped unexpectedly; restarting it in 0.5 s (attempt 1;" in out
    assert "PostgreSQL is running again on" in out
