"""The schema: migrations apply once, the log refuses change, the service role is least-privileged."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from ledger.db import connect
from ledger.store import migrate as mig
from tests.ledgerkit import Ledger, dataset_prov

pytestmark = pytest.mark.postgres

LOG_TABLES = ("entries", "merkle_nodes", "checkpoints", "rejections", "trust_root")


def test_migrations_apply_once(pg_dsn: str) -> None:
    assert mig.pending(pg_dsn) == [1, 2]
    assert mig.migrate(pg_dsn) == ["ledger V001 ledger", "ledger V002 entries_store_the_payload"]
    assert mig.migrate(pg_dsn) == []
    assert mig.pending(pg_dsn) == []


def test_an_edited_applied_migration_is_reported(pg_dsn: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "V001__one.sql").write_text("CREATE TABLE public.one (x int);")
    mig.migrate(pg_dsn, "demo", folder)
    (folder / "V001__one.sql").write_text("CREATE TABLE public.one (x bigint);")
    with pytest.raises(mig.MigrationError, match="was changed after it was applied"):
        mig.migrate(pg_dsn, "demo", folder)


def test_a_failing_migration_applies_nothing(pg_dsn: str, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "V001__bad.sql").write_text("CREATE TABLE public.half (x int); SELECT no_such_function();")
    with pytest.raises(mig.MigrationError, match="V001 bad failed"):
        mig.migrate(pg_dsn, "demo", folder)
    with connect(pg_dsn, autocommit=True) as c:
        assert c.execute("SELECT to_regclass('public.half')").fetchone()[0] is None


@pytest.mark.parametrize("bad_name", ["1__x.sql", "V01__x.sql", "V001-x.sql"])
def test_badly_named_migrations_are_refused(tmp_path: Path, bad_name: str) -> None:
    (tmp_path / bad_name).write_text("SELECT 1;")
    with pytest.raises(mig.MigrationError, match="expected a name like"):
        mig.discover(tmp_path)


@pytest.fixture
def filled(ledger: Ledger) -> Ledger:
    chain, reg = ledger.producer_with_key()
    ledger.append(reg, chain.emit("dataset.registered", dataset_prov()), b"garbage")
    return ledger


@pytest.mark.parametrize("table", LOG_TABLES)
@pytest.mark.parametrize(
    "statement",
    ["UPDATE ledger.{t} SET {c} = {c}", "DELETE FROM ledger.{t}", "TRUNCATE ledger.{t}"],
    ids=["update", "delete", "truncate"],
)
def test_superuser_cannot_change_the_log_without_disabling_triggers(filled: Ledger, table: str, statement: str) -> None:
    column = {
        "entries": "payload",
        "merkle_nodes": "hash",
        "checkpoints": "note",
        "rejections": "reason",
        "trust_root": "name",
    }[table]
    with (
        connect(filled.dsn, autocommit=True) as c,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only"),
    ):
        c.execute(statement.format(t=table, c=column))


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE ledger.entries SET kind = kind",
        "DELETE FROM ledger.entries",
        "INSERT INTO ledger.trust_root VALUES ('" + "a" * 64 + "', '\\x00', 'admin', 'x')",
        "ALTER TABLE ledger.entries DISABLE TRIGGER ALL",
    ],
)
def test_service_role_holds_no_change_privilege(filled: Ledger, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        filled.conn.execute(statement)
    count = filled.conn.execute("SELECT count(*) FROM ledger.entries").fetchone()[0]
    assert count == 2
