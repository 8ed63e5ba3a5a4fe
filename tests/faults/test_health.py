"""gRPC health follows the servers a process needs, and comes back by itself.

* the probe's rules, round by round (which target each failing dependency turns, a check that raises, the log);
* causes: the supervisor's and the probe's NOT_SERVING hold a server down independently;
* QueryService with its own PostgreSQL stopped and started again;
* ``provault ledger serve`` (a child process, JSON logs, metrics on a free port) through a NATS outage
  and a PostgreSQL outage: NOT_SERVING and ``provault_dependency_up 0`` while each is down, SERVING again after.
"""

from __future__ import annotations

import json
import logging
import re
import time
import urllib.request
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ledger.config import HealthSettings, NatsSettings, PostgresSettings, Settings
from ledger.embedded import EmbeddedPostgres
from ledger.health import DependencyProbe, PostgresCheck
from ledger.metrics import REGISTRY
from query.projector import migrate_prov
from query.service import QueryGrpcService
from query.stack import health_probe
from tests.ledgerkit import Ledger

from .faultkit import save_checkpoint_key, serving, wait_until

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
TIMEOUT = 5


def _health(target: str, service: str = "") -> int:
    with grpc.insecure_channel(target) as channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            .status
        )


class _Target:
    """Records what the probe tells it."""

    def __init__(self, depends_on: frozenset[str] | None = None) -> None:
        if depends_on is not None:
            self.depends_on = depends_on
        self.told: list[tuple[bool, str]] = []

    def set_serving(self, serving: bool, *, cause: str = "embedded") -> None:
        self.told.append((serving, cause))


def test_the_probe_turns_each_target_by_what_it_needs_and_says_so_once(caplog) -> None:
    state = {"postgres": None, "nats": None}

    def nats_check() -> str | None:
        if state["nats"] == "raise":
            raise OSError("connection refused")
        return state["nats"]

    query, ledger, everything = _Target(frozenset({"postgres"})), _Target(frozenset({"postgres", "nats"})), _Target()
    probe = DependencyProbe(
        {"postgres": lambda: state["postgres"], "nats": nats_check}, lambda: [query, ledger, everything]
    )
    with caplog.at_level(logging.INFO, logger="provault.health"):
        probe.probe()
        assert [t.told for t in (query, ledger, everything)] == [[(True, "dependencies")]] * 3
        state["nats"] = "raise"
        probe.probe()
        probe.probe()  # still down: nothing new to tell, nothing new to log
        assert query.told == [(True, "dependencies")]  # QueryService does not need NATS
        assert ledger.told[1:] == everything.told[1:] == [(False, "dependencies")]
        assert probe.failing == {"nats": "OSError: connection refused"}
        assert REGISTRY.get_sample_value("provault_dependency_up", {"dependency": "nats"}) == 0
        assert REGISTRY.get_sample_value("provault_dependency_up", {"dependency": "postgres"}) == 1
        state["nats"] = None
        probe.probe()
        assert ledger.told[-1] == everything.told[-1] == (True, "dependencies") and len(ledger.told) == 3
        assert REGISTRY.get_sample_value("provault_dependency_up", {"dependency": "nats"}) == 1
    lines = [(r.levelname, r.getMessage(), r.dependency) for r in caplog.records if r.name == "provault.health"]
    assert lines == [
        ("WARNING", "nats is unreachable: OSError: connection refused", "nats"),
        ("INFO", "nats is reachable again", "nats"),
    ]


def test_query_health_follows_its_postgres(tmp_path: Path, own_postgres: EmbeddedPostgres) -> None:
    ledger = Ledger(own_postgres.dsn())
    migrate_prov(ledger.dsn)
    settings = Settings(data_dir=tmp_path, health=HealthSettings(probe_interval_s=0.1, probe_timeout_s=1.0))
    query = QueryGrpcService(dsn=ledger.dsn, listen="127.0.0.1:0", max_message_bytes=4 << 20)
    query.start()
    probe = health_probe(settings, ledger.dsn, query)
    probe.start()
    name = "provault.v1.QueryService"
    try:
        wait_until(lambda: _health(query.address, name) == SERVING, timeout=10, what="SERVING")
        # Causes are independent: the supervisor's NOT_SERVING is not lifted by a passing probe, nor the reverse.
        query.set_serving(False, cause="embedded")
        time.sleep(0.3)  # a few probe rounds, all passing
        assert _health(query.address, name) == _health(query.address) == NOT_SERVING
        query.set_serving(True, cause="embedded")
        assert _health(query.address, name) == SERVING

        ledger.close()
        own_postgres.stop()
        wait_until(lambda: _health(query.address, name) == NOT_SERVING, timeout=10, what="NOT_SERVING")
        assert _health(query.address) == NOT_SERVING  # the server as a whole, too
        assert "PostgreSQL at 127.0.0.1:" in probe.failing["postgres"]
        own_postgres.start()
        wait_until(lambda: _health(query.address, name) == SERVING, timeout=20, what="SERVING again")
        assert probe.failing == {}
    finally:
        probe.stop()
        query.stop()


def test_postgres_check_is_bounded_and_names_the_server(own_postgres: EmbeddedPostgres) -> None:
    check = PostgresCheck(own_postgres.dsn(), timeout_s=1.0)
    assert check() is None
    own_postgres.stop()
    started = time.monotonic()
    problem = check()
    assert problem is not None and problem.startswith(f"PostgreSQL at 127.0.0.1:{own_postgres.port}/")
    assert time.monotonic() - started < 5  # a refused connection fails at once; the timeouts bound the rest
    own_postgres.start()
    assert check() is None
    check.close()


def _metric(url: str, name: str, **labels: str) -> float | None:
    with urllib.request.urlopen(url, timeout=TIMEOUT) as r:
        body = r.read().decode()
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in body.splitlines():
        if line.startswith(f"{name}{{{wanted}}} " if labels else f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.mark.nats
def test_ledger_serve_health_and_metrics_follow_nats_and_postgres(
    tmp_path: Path, own_postgres: EmbeddedPostgres, nats_target
) -> None:
    server = nats_target.server
    if server is None:
        pytest.skip("needs the embedded NATS server (this test stops and restarts it)")
    ledger = Ledger(own_postgres.dsn())
    settings = Settings(
        data_dir=tmp_path / "data",
        postgres=PostgresSettings(dsn=ledger.dsn),
        nats=NatsSettings(url=nats_target.url, stream=nats_target.stream, subject_prefix=nats_target.subject_prefix),
    )
    save_checkpoint_key(ledger, settings)
    ledger.close()  # the ledger process holds the only connections
    env = {"PROVAULT_LOG_FORMAT": "json", "PROVAULT_HEALTH_PROBE_INTERVAL_S": "0.1"}
    with serving(settings, ledger, nats_target.url, tmp_path / "ledger.log", extra_env=env) as lp:
        lp_banner: dict[str, str] = {}

        def banner() -> bool:
            m = re.search(r"gRPC (127\.0\.0\.1:\d+), .*, metrics (http://\S+)", lp.output())
            if m:
                lp_banner.update(grpc=m.group(1), metrics=m.group(2))
            return bool(m)

        wait_until(banner, timeout=60, what="the ledger's banner", alive=lp)
        target, url = lp_banner["grpc"], lp_banner["metrics"]
        name = "provault.v1.LedgerService"
        wait_until(lambda: _health(target, name) == SERVING, timeout=10, what="SERVING", alive=lp)
        assert _metric(url, "provault_dependency_up", dependency="nats") == 1
        assert _metric(url, "provault_dependency_up", dependency="postgres") == 1
        assert _metric(url, "provault_log_entries") is not None

        for outage, down, up in (
            ("nats", server.stop, server.restart),
            ("postgres", own_postgres.stop, own_postgres.start),
        ):
            down()
            wait_until(
                lambda: _health(target, name) == NOT_SERVING, timeout=15, what=f"NOT_SERVING ({outage})", alive=lp
            )
            assert _metric(url, "provault_dependency_up", dependency=outage) == 0
            up()
            wait_until(lambda: _health(target, name) == SERVING, timeout=30, what=f"SERVING ({outage})", alive=lp)
            assert _metric(url, "provault_dependency_up", dependency=outage) == 1
    assert lp.proc.returncode == 0, lp.output()

    records = [json.loads(line) for line in lp.out.read_text().splitlines() if line.startswith("{")]
    said = [(r["level"], r["dependency"], r["msg"].split(":")[0]) for r in records if r.get("dependency")]
    assert said == [
        ("warning", "nats", "nats is unreachable"),
        ("info", "nats", "nats is reachable again"),
        ("warning", "postgres", "postgres is unreachable"),
        ("info", "postgres", "postgres is reachable again"),
    ]
    assert all({"ts", "level", "logger", "msg"} <= set(r) for r in records)
