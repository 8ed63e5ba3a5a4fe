"""What every step of the demo shares: its settings, paths, agents, the in-process CLI, the database, waiting for the ledger."""

from __future__ import annotations

import contextlib
import io
import shlex
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.config import Settings, load_settings
from ledger.core.keys import load_private_key
from ledger.db import connect
from ledger.stack import Stack, redact_dsn

from ._cast import (
    ACTORS,
    ALICE,
    AUDITOR,
    STEPS,
    WAIT_S,
    Actor,
    Layout,
    wait_until,
)
from ._narrate import Narrator
from ._stack import DemoFailed, check_running, start_stack
from ._text import scalar, text_table, toml_string

if TYPE_CHECKING:
    import psycopg

    from agents.runtime import Agent


class DemoBase:
    """State and helpers of one telling; the steps are in ``_producing`` and ``_auditing``."""

    def __init__(
        self, settings: Settings, *, out: Narrator, config: str | None = None, started: float | None = None
    ) -> None:
        self.settings = settings
        self.config = config
        self.say = out
        self.paths = Layout(settings.data_dir)
        self.agents: dict[str, Agent] = {}
        self.dsn = ""
        self.started = time.monotonic() if started is None else started
        self.rejections_before = 0
        self.commit: str | None = None

    # --- helpers -----------------------------------------------------------------------

    def cli(self, argv: Sequence[str]) -> str:
        """Run a ``provault`` command in this process (the real parser and handler); its stdout."""
        return self.cli_code(argv)[1]

    def cli_code(self, argv: Sequence[str], ok: Sequence[int] = (0,)) -> tuple[int, str]:
        """Run a ``provault`` command in this process; its exit code (one of ``ok``, else DemoFailed) and stdout."""
        from ledger.cli import build_parser  # noqa: PLC0415 - the CLI package imports this one

        extra = ["--data-dir", str(self.settings.data_dir), *(["--config", self.config] if self.config else [])]
        args = build_parser().parse_args([*argv, *extra])
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = int(args.run(args) or 0)
        if code not in ok:
            raise DemoFailed(
                f"`provault {shlex.join(argv)}` exited with {code}", hint=buffer.getvalue().strip() or None
            )
        return code, buffer.getvalue()

    def db(self) -> psycopg.Connection:
        return connect(self.dsn, autocommit=True, role=AUDITOR)

    def agent(self, actor: Actor) -> Agent:
        return self.agents[actor.name]

    # --- 1. the stack ------------------------------------------------------------------------

    def start(self, stack: Stack) -> None:
        self.say.step(
            1,
            STEPS,
            "Start the stack as `provault up` does: PostgreSQL and NATS JetStream (embedded), "
            "the ledger service, the projector and QueryService.",
        )
        self.say.command(["provault", "up"])
        endpoints, changes = start_stack(stack)
        self.dsn = endpoints.postgres_dsn
        with self.db() as conn:
            size = scalar(conn, "SELECT size FROM ledger.log_state")
            self.rejections_before = scalar(conn, "SELECT coalesce(max(id), 0) FROM ledger.rejections")
        origin = {name: "embedded" if name in endpoints.embedded else "external" for name in ("postgres", "nats")}
        self.say.say(
            f"postgres {redact_dsn(endpoints.postgres_dsn)} ({origin['postgres']}), "
            f"nats {endpoints.nats_url} ({origin['nats']})"
        )
        self.say.say(
            f"ledger gRPC {endpoints.ledger_grpc}, query gRPC {endpoints.query_grpc}; "
            + (
                "a new ledger: schema migrated, checkpoint and admin keys created"
                if changes
                else f"the ledger already holds {size} entries: this round adds to them"
            )
        )

    # --- 2. keys -----------------------------------------------------------------------------

    def keys(self) -> None:
        from agents.runtime import agent_from_settings  # noqa: PLC0415 - agents are loaded when used

        self.say.step(
            2,
            STEPS,
            "Three people and two services get a signing key each; the admin key registers them in "
            "the log: who holds the key, which events it may sign, for which producer.",
        )
        rows = [("identity", "keyid", "may sign", "producer", "registered")]
        for actor in ACTORS:
            key = self.paths.keys / f"{actor.name}.key"
            new_key = ["keys", "new", self.paths.rel(key)]
            register = [
                "keys",
                "register",
                self.paths.rel(key) + ".pub",
                "--identity",
                actor.identity,
                "--kinds",
                actor.kinds,
                "--producers",
                f"{actor.name}@*",
                *(["--roles", actor.roles] if actor.roles else []),
            ]
            if actor is ALICE:
                self.say.command(["provault", *new_key])
                self.say.command(["provault", *register])
            if not key.exists():
                self.cli(["keys", "new", str(key)])
            signer = load_private_key(key)
            seq, fresh = self._registered(signer.keyid), False
            if seq is None:
                self.cli(["keys", "register", f"{key}.pub", *register[3:]])
                seq, fresh = self._registered(signer.keyid), True
            config = self._write_config(actor, key)
            settings = load_settings(config_file=config, data_dir=self.settings.data_dir)
            self.agents[actor.name] = agent_from_settings(settings, producer_id=actor.producer, signer=signer)
            rows.append(
                (
                    actor.identity,
                    signer.keyid[:12] + "…",
                    actor.kinds,
                    actor.producer,
                    f"seq {seq}" + (" (new)" if fresh else " (kept from an earlier demo)"),
                )
            )
        self.say.say(
            "The same for bob, pipeline, serving and carol, the ML lead, whose key is registered with "
            "`--roles ml-lead`: release policies count approvals by it. Each gets a config file naming its key "
            "and producer id (alice.toml, ...)."
        )
        self.say.show(text_table(rows))

    def _registered(self, keyid: str) -> int | None:
        with self.db() as conn:
            row = conn.execute(
                "SELECT registered_seq, revoked_seq FROM ledger.keys WHERE keyid = %s", (keyid,)
            ).fetchone()
        if row is not None and row[1] is not None:
            raise DemoFailed(
                f"the demo key {keyid[:16]}… was revoked at seq {row[1]}",
                hint=f"delete {self.paths.keys} to give the demo new keys",
            )
        return None if row is None else int(row[0])

    def _write_config(self, actor: Actor, key: Path) -> Path:
        path = self.paths.root / f"{actor.name}.toml"
        path.write_text(
            f"# provault demo: {actor.identity} (use it with `provault ... --config {path.name}`)\n"
            f"[agent]\nproducer_id = {toml_string(actor.producer)}\nkey_file = {toml_string(str(key))}\n",
            encoding="utf-8",
        )
        return path

    # --- 3. data ------------------------------------------------------------------------------

    def settle(self, stack: Stack) -> None:
        self.say.step(
            7,
            STEPS,
            "Wait until every event is committed, covered by a signed checkpoint and projected into the PROV graph.",
        )
        t0 = time.monotonic()
        size, tree_size, projected = self.caught_up(stack)
        emitted = sum(a.stats.emitted for a in self.agents.values())
        self.say.command(["provault", "checkpoint"])
        self.say.command(["provault", "project", "--lag"])
        self.say.say(
            f"{emitted} events from {len(self.agents)} producers committed ({size} log entries in all) after "
            f"{time.monotonic() - t0:.1f} s; the latest checkpoint signs a tree of {tree_size}; the projection "
            f"is at seq {projected}, behind by {size - 1 - projected}"
        )

    def caught_up(self, stack: Stack) -> tuple[int, int, int]:
        """Wait until every agent's events are committed, checkpointed and projected: (log size, tree size,
        projected seq)."""
        for name, agent in self.agents.items():
            if not agent.flush(timeout=WAIT_S):
                raise DemoFailed(
                    f"the {name} agent could not deliver its events within {WAIT_S:.0f} s",
                    hint=f"they stay in {agent.spool.dir}; last error: {agent.stats.last_error}",
                )
        expected = {a.producer_id: a.position.seq - 1 for a in self.agents.values()}
        with self.db() as conn:
            wait_until(
                lambda: self._committed(conn, expected) or check_running(stack), "the ledger to commit every event"
            )
            size = scalar(conn, "SELECT size FROM ledger.log_state")
            wait_until(
                lambda: (
                    scalar(conn, "SELECT coalesce(max(tree_size), 0) FROM ledger.checkpoints") >= size
                    or check_running(stack)
                ),
                "a checkpoint that covers the log",
            )
            wait_until(
                lambda: scalar(conn, "SELECT last_seq FROM prov.position") >= size - 1 or check_running(stack),
                "the projector to catch up",
            )
            tree_size = scalar(conn, "SELECT coalesce(max(tree_size), 0) FROM ledger.checkpoints")
            projected = scalar(conn, "SELECT last_seq FROM prov.position")
        return size, tree_size, projected

    def _committed(self, conn: psycopg.Connection, expected: dict[str, int]) -> bool:
        rejected = conn.execute(
            "SELECT producer_id, reason, message FROM ledger.rejections WHERE id > %s ORDER BY id LIMIT 1",
            (self.rejections_before,),
        ).fetchone()
        if rejected:
            raise DemoFailed(f"the ledger refused an event of {rejected[0]} [{rejected[1]}]: {rejected[2]}")
        rows = conn.execute(
            "SELECT producer_id, last_seq FROM ledger.producers WHERE producer_id = ANY(%s)", (list(expected),)
        )
        done = dict(rows.fetchall())
        return all(done.get(pid, 0) >= seq for pid, seq in expected.items())

    # --- 8. the incident ------------------------------------------------------------------------------
