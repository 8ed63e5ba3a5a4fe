"""The least-privilege database set-up of deploy/kubernetes works against a real PostgreSQL.

The CloudNativePG Cluster in deploy/kubernetes/base/postgres-cluster.yaml runs
its ``postInitApplicationSQL`` as a superuser in a database owned by a
non-superuser owner, then creates the service logins of ``managed.roles``.
This test does the same on the test server, then runs what each process
does: the owner migrates and initialises, the ledger's login passes the
ledger's start-up checks and appends, the projector's login runs what
`provault query serve` runs (projector and QueryService), and the query
replicas' login serves queries (`--no-projector`) and audits the log.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import psycopg
import pytest
from psycopg import sql

from ledger.audit import audit
from ledger.bootstrap import initialise
from ledger.config import Settings
from ledger.core.keyring import KEY_REGISTERED, KeyRegistration
from ledger.core.keys import Ed25519Signer, load_private_key
from ledger.core.producing import ProducerChain
from ledger.db import connect
from ledger.service.appender import Appender
from ledger.service.ingest import limits_from
from ledger.service.runtime import load_checkpoint_signer
from provault.v1 import query_pb2, query_pb2_grpc
from query.projector import Projector, lag
from query.service import QueryGrpcService

from .manifests import KUBE, load_all

pytestmark = [pytest.mark.postgres]

CLUSTER = load_all(KUBE / "base" / "postgres-cluster.yaml")[0]["spec"]


def _dsn_as(dsn: str, user: str, password: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info.update(user=user, password=password)
    return psycopg.conninfo.make_conninfo(**info)


@pytest.fixture
def logins(pg_dsn: str) -> Iterator[dict[str, str]]:
    """The owner and the service logins, as CloudNativePG would create them (names made unique per test)."""
    tag = secrets.token_hex(4)
    password = secrets.token_hex(12)
    owner_name = CLUSTER["bootstrap"]["initdb"]["owner"]
    owner = f"{owner_name}_{tag}"
    roles = {r["name"]: f"{r['name']}_{tag}" for r in CLUSTER["managed"]["roles"]}
    db = psycopg.conninfo.conninfo_to_dict(pg_dsn)["dbname"]
    with psycopg.connect(pg_dsn, autocommit=True) as su:
        su.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(owner), sql.Literal(password)))
        su.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(sql.Identifier(db), sql.Identifier(owner)))
        for statement in CLUSTER["bootstrap"]["initdb"]["postInitApplicationSQL"]:
            su.execute(statement.replace(f"FOR ROLE {owner_name} ", f"FOR ROLE {owner} "))
        for spec in CLUSTER["managed"]["roles"]:
            su.execute(
                sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                    sql.Identifier(roles[spec["name"]]),
                    sql.Literal(password),
                    sql.SQL(", ").join(sql.Identifier(r) for r in spec["inRoles"]),
                )
            )
    try:
        yield {"owner": _dsn_as(pg_dsn, owner, password)} | {k: _dsn_as(pg_dsn, v, password) for k, v in roles.items()}
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as su:
            for role in (owner, *roles.values()):
                su.execute(sql.SQL("REASSIGN OWNED BY {} TO CURRENT_USER").format(sql.Identifier(role)))
                su.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
                su.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_each_service_runs_with_its_least_privileged_login(logins: dict[str, str], tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    assert initialise(settings, logins["owner"], [])  # migrations and trust root, as the database owner

    # The ledger: start-up checks (pending migrations, checkpoint key), then an append as provault_ledger.
    load_checkpoint_signer(settings, logins["provault_ledger_svc"])
    admin = load_private_key(settings.data_dir / "keys" / "admin.key")
    key = Ed25519Signer.generate()
    reg = KeyRegistration(
        keyid=key.keyid,
        public_key=key.public_key,
        role="producer",
        identity={"type": "service", "name": "trainer"},
        kinds=("*",),
        producers=("*",),
    )
    event = ProducerChain("admin/ops", admin).emit(
        KEY_REGISTERED, {"agent": {"provault:trainer": {}}}, data=reg.to_data()
    )
    appender = Appender(logins["provault_ledger_svc"], limits=limits_from(settings))
    try:
        assert len(appender.append([event.envelope], source="grpc").accepted) == 1
    finally:
        appender.close()

    projector = Projector(logins["provault_projector_svc"], poll_s=0.05)
    projector.start()
    try:
        with connect(logins["provault_query_svc"], autocommit=True, role="provault_auditor") as conn:
            deadline = time.monotonic() + 30
            while lag(conn) != (0, 1):
                assert time.monotonic() < deadline, f"the projector did not catch up: {projector.last_error}"
                time.sleep(0.05)
            assert audit(conn).ok
    finally:
        projector.stop()
    for login in ("provault_projector_svc", "provault_query_svc"):
        assert _search(logins[login]).as_of_seq == 0, login


def _search(dsn: str) -> query_pb2.SearchResponse:
    """One QueryService call, served by a QueryGrpcService connected as ``dsn``."""
    svc = QueryGrpcService(dsn=dsn, listen="127.0.0.1:0", max_message_bytes=4 << 20)
    svc.start()
    try:
        with grpc.insecure_channel(svc.address or "") as channel:
            return query_pb2_grpc.QueryServiceStub(channel).Search(query_pb2.SearchRequest(text="trainer"), timeout=10)
    finally:
        svc.stop()
