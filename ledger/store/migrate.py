"""Numbered SQL migrations (``V001__name.sql``), applied once each, in order.

Each component (``ledger``, later ``prov``) keeps its migrations in a folder;
``public.provault_migrations`` records what was applied with a checksum, so a
migration file edited after it ran is reported instead of silently ignored.
Concurrent runners are serialised with an advisory lock.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import psycopg

from ledger.core.errors import StorageUnavailable
from ledger.db import connect

_NAME = re.compile(r"^V(\d{3})__([a-z0-9_]+)\.sql$")
_LOCK_KEY = 0x70726F76  # "prov"

LEDGER_MIGRATIONS = Path(__file__).with_name("migrations")


@dataclass(frozen=True, slots=True, kw_only=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


class MigrationError(StorageUnavailable):
    reason = "migration_failed"


def discover(folder: Path) -> tuple[Migration, ...]:
    found = []
    for path in sorted(folder.glob("*.sql")):
        m = _NAME.match(path.name)
        if not m:
            raise MigrationError(f"migration file {path.name}: expected a name like V001__what_it_does.sql")
        found.append(Migration(version=int(m.group(1)), name=m.group(2), sql=path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if versions != list(range(1, len(found) + 1)):
        raise MigrationError(
            f"migrations in {folder}: expected versions 1..{len(found)} without gaps, found {versions}"
        )
    return tuple(found)


def migrate(dsn: str, component: str = "ledger", folder: Path = LEDGER_MIGRATIONS) -> list[str]:
    """Apply pending migrations; return the names applied."""
    migrations = discover(folder)
    applied_now: list[str] = []
    with connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (_LOCK_KEY,))
        try:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS public.provault_migrations ("
                " component text NOT NULL, version int NOT NULL, name text NOT NULL,"
                " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),"
                " PRIMARY KEY (component, version))"
            )
            done = dict(
                conn.execute(
                    "SELECT version, checksum FROM public.provault_migrations WHERE component = %s", (component,)
                ).fetchall()
            )
            for m in migrations:
                if m.version in done:
                    _check_unchanged(component, m, done[m.version])
                    continue
                _apply(conn, component, m)
                applied_now.append(f"{component} V{m.version:03d} {m.name}")
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (_LOCK_KEY,))
    return applied_now


def _check_unchanged(component: str, m: Migration, checksum: str) -> None:
    if checksum != m.checksum:
        raise MigrationError(
            f"{component} migration V{m.version:03d} {m.name} was changed after it was applied "
            f"(checksum {m.checksum[:12]}, applied {checksum[:12]})",
            hint="never edit an applied migration; add a new numbered one instead",
        )


def _apply(conn: psycopg.Connection, component: str, m: Migration) -> None:
    try:
        with conn.transaction():
            conn.execute(m.sql.encode())  # type: ignore[arg-type] - trusted file from the package
            conn.execute(
                "INSERT INTO public.provault_migrations (component, version, name, checksum) VALUES (%s, %s, %s, %s)",
                (component, m.version, m.name, m.checksum),
            )
    except psycopg.Error as e:
        raise MigrationError(
            f"{component} migration V{m.version:03d} {m.name} failed: {e.diag.message_primary or type(e).__name__}",
            hint="nothing of this migration was applied; fix the cause and run `provault db migrate` again",
        ) from None


def pending(dsn: str, component: str = "ledger", folder: Path = LEDGER_MIGRATIONS) -> list[int]:
    """Versions not yet applied (an empty list means the schema is current)."""
    with connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('public.provault_migrations')").fetchone()[0]
        done = set()
        if exists:
            rows = conn.execute("SELECT version FROM public.provault_migrations WHERE component = %s", (component,))
            done = {r[0] for r in rows}
    return [m.version for m in discover(folder) if m.version not in done]
