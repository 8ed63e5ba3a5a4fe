"""One consistent snapshot of the database for the whole audit."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import psycopg
from psycopg.pq import TransactionStatus


@contextlib.contextmanager
def snapshot(conn: psycopg.Connection) -> Iterator[None]:
    """One REPEATABLE READ, READ ONLY transaction, unless the caller already holds one."""
    if conn.info.transaction_status != TransactionStatus.IDLE:
        yield
        return
    saved = (conn.isolation_level, conn.read_only)
    conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
    conn.read_only = True
    try:
        with conn.transaction():
            yield
    finally:
        if not conn.closed and conn.info.transaction_status == TransactionStatus.IDLE:
            conn.isolation_level, conn.read_only = saved
