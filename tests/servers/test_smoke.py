"""The test servers are real: a JetStream round trip and a PostgreSQL transaction."""

from __future__ import annotations

import asyncio

import nats
import psycopg
import pytest


@pytest.mark.postgres
def test_postgres_transaction_commits_and_rolls_back(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        conn.execute("CREATE TABLE t (x int primary key)")
        conn.commit()
        with conn.transaction():
            conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(psycopg.errors.UniqueViolation), conn.transaction():
            conn.execute("INSERT INTO t VALUES (2)")
            conn.execute("INSERT INTO t VALUES (1)")  # duplicate: whole transaction rolls back
        assert conn.execute("SELECT array_agg(x ORDER BY x) FROM t").fetchone()[0] == [1]


@pytest.mark.postgres
def test_each_test_gets_an_empty_database(pg_dsn: str) -> None:
    with psycopg.connect(pg_dsn) as conn:
        n = conn.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'").fetchone()[0]
    assert n == 0


@pytest.mark.nats
def test_jetstream_publish_then_fetch(nats_target) -> None:
    async def go() -> list[bytes]:
        nc = await nats.connect(nats_target.url, connect_timeout=5)
        try:
            js = nc.jetstream()
            subject = f"{nats_target.subject_prefix}.smoke"
            await js.add_stream(name=nats_target.stream, subjects=[f"{nats_target.subject_prefix}.>"])
            ack = await js.publish(subject, b"one", headers={"Nats-Msg-Id": "m1"})
            dup = await js.publish(subject, b"one", headers={"Nats-Msg-Id": "m1"})
            assert ack.seq == 1 and dup.duplicate is True
            sub = await js.pull_subscribe(subject, durable="smoke", stream=nats_target.stream)
            msgs = await sub.fetch(1, timeout=5)
            for m in msgs:
                await m.ack()
            return [m.data for m in msgs]
        finally:
            await nc.close()

    assert asyncio.run(go()) == [b"one"]
