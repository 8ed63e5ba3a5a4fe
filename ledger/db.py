"""PostgreSQL connections for every provault process, with driver errors translated at the edge.

Public: the ledger's store and audit, the projector and the query side all connect here.
Raw driver text never reaches a client: callers get StorageUnavailable with a message
that names the server (never the password) and what to do.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import psycopg
from psycopg.conninfo import conninfo_to_dict
from psycopg.types.json import set_json_loads

from ledger.core import fastjson
from ledger.core.errors import ProvaultError, StorageUnavailable

CONNECT_TIMEOUT_S = 10


def describe(dsn: str) -> str:
    """host:port/dbname of a DSN, without credentials."""
    try:
        info = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "(unparseable DSN)"
    return f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '?')}"


def connect(dsn: str, *, autocommit: bool = False, role: str | None = None) -> psycopg.Connection:
    """Open a connection; optionally drop to a least-privilege role."""
    try:
        conn = psycopg.connect(dsn, autocommit=autocommit, connect_timeout=CONNECT_TIMEOUT_S)
    except psycopg.OperationalError as e:
        raise StorageUnavailable(
            f"cannot connect to PostgreSQL at {describe(dsn)}: {_first_line(e)}",
            hint="is the server running? check PROVAULT_POSTGRES_DSN, or start `provault up`",
        ) from None
    fast_json(conn)
    if role:
        _set_role(conn, role)
    return conn


def fast_json(conn: psycopg.Connection) -> None:
    """Decode json / jsonb columns with ``ledger.core.fastjson`` on ``conn``: a trace or an impact reads thousands."""
    set_json_loads(fastjson.loads, conn)


def _set_role(conn: psycopg.Connection, role: str) -> None:
    try:
        conn.execute(psycopg.sql.SQL("SET ROLE {}").format(psycopg.sql.Identifier(role)))
        if not conn.autocommit:
            conn.commit()
    except psycopg.Error as e:
        conn.close()
        raise StorageUnavailable(
            f"cannot switch to database role {role!r}: {_first_line(e)}",
            hint=f"run `provault db migrate` (it creates the role) and GRANT {role} to the connecting user",
        ) from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return text[0] if text else type(e).__name__


P = ParamSpec("P")
T = TypeVar("T")


def translate_errors(fn: Callable[P, T]) -> Callable[P, T]:
    """Turn driver errors into StorageUnavailable; let provault errors through."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return fn(*args, **kwargs)
        except ProvaultError:
            raise
        except psycopg.Error as e:
            diag = getattr(e, "diag", None)
            text = (diag.message_primary if diag else None) or type(e).__name__
            raise StorageUnavailable(
                f"PostgreSQL error during {fn.__name__}: {text}",
                hint="check the server and `provault db migrate`; nothing of this operation was committed",
            ) from e

    return wrapper
