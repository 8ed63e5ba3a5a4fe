"""The story ``provault demo`` tells, step by step, on a real stack.

Every step goes through the product: keys through ``provault keys`` (run in
this process, with the arguments it prints), datasets, runs, models and
deployments through the ``agents`` SDK with one agent per person or service,
predictions through ``LoggedModel`` / ``PredictionLogger``, answers through
``query.traverse``, ``ledger.audit`` and the audit-bundle builder and
verifier.  Nothing writes to a table directly; the demo only reads
(``provault_auditor``) to wait for the ledger and to answer.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import secrets
import shlex
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ledger.config import Settings, load_settings
from ledger.core.keys import load_private_key, load_public_key
from ledger.db import connect
from ledger.stack import Stack, redact_dsn

from . import _train
from ._cast import (
    ACTORS,
    ALICE,
    AUDITOR,
    BOB,
    DEPLOYMENT,
    MODEL_NAME,
    PIPELINE,
    PREDICTIONS,
    REQUEST_ROWS,
    SERVING,
    STEPS,
    TARGET,
    TRAINING,
    WAIT_S,
    Actor,
    Layout,
    Trained,
    wait_until,
)
from ._narrate import Narrator
from ._stack import DemoFailed, check_running, start_stack
from ._text import impact_lines, run_git, scalar, short_label, text_table, toml_string, without_edges

if TYPE_CHECKING:
    import psycopg

    from agents.runtime import Agent


class Demo:
    """The steps of one telling; :func:`query.demo.run_demo` calls them in order and stops the stack."""

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
        from ledger.cli import build_parser  # noqa: PLC0415 - the CLI package imports this one

        extra = ["--data-dir", str(self.settings.data_dir), *(["--config", self.config] if self.config else [])]
        args = build_parser().parse_args([*argv, *extra])
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            code = args.run(args)
        if code:
            raise DemoFailed(
                f"`provault {shlex.join(argv)}` exited with {code}", hint=buffer.getvalue().strip() or None
            )
        return buffer.getvalue()

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
            "Two people and two services get a signing key each; the admin key registers them in "
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
            "The same for bob, pipeline and serving; each gets a config file naming its key and producer "
            "id (alice.toml, ...)."
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

    def datasets(self) -> tuple[str, str]:
        import agents  # noqa: PLC0415

        self.say.step(
            3,
            STEPS,
            "Alice registers the raw data, scikit-learn's breast-cancer set (v1); a pipeline step "
            "standardises it into v2, derived from v1.",
        )
        p = self.paths
        rows = _train.write_raw(p.raw)
        raw_cmd = ["dataset", "register", p.rel(p.raw), "--name", "breast-cancer-raw"]
        self.say.command(["provault", *raw_cmd, "--author", ALICE.who, "--config", "alice.toml"])
        v1 = agents.register_dataset(p.raw, name="breast-cancer-raw", author=ALICE.who, agent=self.agent(ALICE))
        code = self.commit = self.code_repo()
        std = ["python", f"{p.rel(p.code)}/train.py", "standardize", p.rel(p.raw), p.rel(p.clean)]
        self.say.command(
            [
                "provault",
                "run",
                "--config",
                "pipeline.toml",
                "--name",
                "standardize",
                *(["--repo", p.rel(p.code)] if code else []),
                "--author",
                ALICE.who,
                "--input",
                p.rel(p.raw),
                "--output",
                p.rel(p.clean),
                "--",
                *std,
            ]
        )
        self.say.command(
            [
                "provault",
                "dataset",
                "register",
                p.rel(p.clean),
                "--name",
                "breast-cancer-clean",
                "--derived-from",
                p.rel(p.raw),
                "--author",
                ALICE.who,
                "--config",
                "pipeline.toml",
            ]
        )
        pipeline = self.agent(PIPELINE)
        with (
            agents.run("breast-cancer-pipeline", agent=pipeline, author=ALICE.who, repo=p.code) as parent,
            agents.step("standardize", agent=pipeline, author=ALICE.who, repo=p.code) as step,
        ):
            step.use(p.raw, name="breast-cancer-raw")
            _train.standardize(p.raw, p.clean)
            step.produce(p.clean, kind="data", name="breast-cancer-clean")
        v2 = agents.register_dataset(
            p.clean, name="breast-cancer-clean", derived_from=[v1], author=ALICE.who, agent=pipeline
        )
        self.say.show(
            text_table(
                [
                    ("v1", "breast-cancer-raw", short_label(v1), f"{rows} rows, 30 features, registered by alice"),
                    (
                        "v2",
                        "breast-cancer-clean",
                        short_label(v2),
                        f"made by step {short_label(step.id)} of pipeline {short_label(parent.id)}",
                    ),
                ]
            )
        )
        if code:
            self.say.say(
                f"The training code is committed in {p.rel(p.code)}/ ({code[:12]}); every run names that commit."
            )
        return v1, v2

    def code_repo(self) -> str | None:
        """Put the training code (``query/demo/_train.py``) in a git repository; its commit, or None without git."""
        code = self.paths.code
        code.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(_train.__file__, code / "train.py")
        if shutil.which("git") is None:
            self.say.say("(git is not installed: the runs record `provault:codeUnknown` instead of a commit)")
            return None
        git = [
            "git",
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "user.name=Alice",
            "-c",
            f"user.email={ALICE.who}",
        ]
        try:
            if not (code / ".git").exists():
                run_git([*git, "init", "-q"], code)
            run_git([*git, "add", "train.py"], code)
            if run_git([*git, "status", "--porcelain"], code):
                run_git([*git, "commit", "-q", "-m", "training code of the provault demo"], code)
            return run_git([*git, "rev-parse", "HEAD"], code).strip()
        except (OSError, subprocess.CalledProcessError) as e:
            self.say.say(f"(git failed, {e}: the runs record `provault:codeUnknown` instead of a commit)")
            return None

    # --- 4. training ---------------------------------------------------------------------------

    def train(self) -> list[Trained]:
        import agents  # noqa: PLC0415

        self.say.step(
            4,
            STEPS,
            "Alice and Bob train logistic regressions on v2, each with their own key: parameters, "
            "code commit, environment, held-out accuracy and model file are recorded.",
        )
        p = self.paths
        p.models.mkdir(parents=True, exist_ok=True)
        first = p.models / f"logreg-C{TRAINING[0][1]:g}.json"
        fit = ["python", f"{p.rel(p.code)}/train.py", "fit", p.rel(p.clean), p.rel(first), "--C", f"{TRAINING[0][1]:g}"]
        self.say.command(
            [
                "provault",
                "run",
                "--config",
                "alice.toml",
                "--name",
                "train-logreg",
                *(["--repo", p.rel(p.code)] if self.commit else []),
                "--author",
                ALICE.who,
                "--input",
                p.rel(p.clean),
                "--model",
                p.rel(first),
                "--param",
                f"C={TRAINING[0][1]:g}",
                "--",
                *fit,
            ]
        )
        self.say.say(
            "(the demo itself uses the Python SDK, `with agents.run(...) as run:`, which records the accuracy too)"
        )
        results, rows = [], [("run", "by", "C", "accuracy", "model")]
        for actor, c in TRAINING:
            params = {"C": c, "max_iter": _train.MAX_ITER, "test_size": _train.TEST_SIZE, "seed": _train.SEED}
            with agents.run(
                "train-logreg", params=params, agent=self.agent(actor), author=actor.who, repo=p.code
            ) as run:
                run.use(p.clean, name="breast-cancer-clean")
                model, accuracy = _train.fit(p.clean, c)
                run.metric("accuracy", accuracy)
                path = p.models / f"logreg-C{c:g}.json"
                _train.save_model(model, path, _train.load(p.clean)[2])
                artifact = run.produce(path, kind="model", name=path.stem)
            results.append(Trained(actor=actor, c=c, run=run, accuracy=accuracy, path=path, model_id=artifact.id))
            rows.append((short_label(run.id), actor.name, f"{c:g}", f"{accuracy:.3f}", short_label(artifact.id)))
        self.say.show(text_table(rows))
        return results

    # --- 5. register and deploy ------------------------------------------------------------------

    def deploy(self, results: list[Trained]) -> tuple[Trained, str]:
        import agents  # noqa: PLC0415

        best = max(results, key=lambda r: (r.accuracy, -r.c))
        approver = BOB if best.actor is ALICE else ALICE
        self.say.step(
            5,
            STEPS,
            f"The best model ({best.actor.name}'s C={best.c:g}, accuracy {best.accuracy:.3f}) is "
            f"registered by {best.actor.name} and deployed, with {approver.name} approving.",
        )
        cfg = f"{best.actor.name}.toml"
        self.say.command(
            [
                "provault",
                "model",
                "register",
                self.paths.rel(best.path),
                "--name",
                MODEL_NAME,
                "--version",
                "1",
                "--run",
                best.run.id,
                "--author",
                best.actor.who,
                "--config",
                cfg,
            ]
        )
        self.say.command(
            [
                "provault",
                "model",
                "deploy",
                self.paths.rel(best.path),
                "--name",
                DEPLOYMENT,
                "--target",
                TARGET,
                "--deployer",
                best.actor.who,
                "--approved-by",
                approver.who,
                "--config",
                cfg,
            ]
        )
        agent = self.agent(best.actor)
        model = agents.register_model(
            best.path, name=MODEL_NAME, version="1", run=best.run, author=best.actor.who, agent=agent
        )
        deployment = agents.deploy_model(
            model, name=DEPLOYMENT, target=TARGET, approved_by=approver.who, deployer=best.actor.who, agent=agent
        )
        self.say.show(text_table([("model", model), ("deployment", deployment)]))
        return best, deployment

    # --- 6. serving --------------------------------------------------------------------------------

    def serve(self, best: Trained, deployment: str) -> list[str]:
        from agents.predictions import PredictionLogger  # noqa: PLC0415
        from agents.serving import LoggedModel  # noqa: PLC0415

        self.say.step(
            6,
            STEPS,
            "The serving node answers requests; each prediction is logged with its id, input digest "
            "and output, in signed `predictions.logged` batches.",
        )
        self.say.show(
            ">>> model = LoggedModel(estimator, PredictionLogger(agent, deployment=DEPLOYMENT, model=MODEL, "
            'service="serving"))'
        )
        tag = secrets.token_hex(3)
        counter = itertools.count(1)
        logger = PredictionLogger(self.agent(SERVING), deployment=deployment, model=best.model_id, service=SERVING.name)
        try:
            served = LoggedModel(
                _train.load_model(best.path), logger, id_fn=lambda X, i: f"req-{tag}-{next(counter):03d}", strict=True
            )
            data = _train.load(self.paths.clean)[0][:PREDICTIONS]
            ids: list[str] = []
            for start in range(0, len(data), REQUEST_ROWS):
                ids += served.call("predict", data[start : start + REQUEST_ROWS])[1]
            if not logger.flush(timeout=WAIT_S):
                raise DemoFailed(
                    f"the prediction logger did not deliver within {WAIT_S:.0f} s", hint=str(logger.stats.last_error)
                )
        finally:
            logger.close(timeout=5)
        s = logger.stats
        self.say.say(
            f"{s.emitted} predictions logged ({len(data) // REQUEST_ROWS} requests, ids {ids[0]} … {ids[-1]}) "
            f"in {s.batches} signed batch(es), {s.dropped} dropped"
        )
        return ids

    # --- 7. waiting -------------------------------------------------------------------------------

    def settle(self, stack: Stack) -> None:
        self.say.step(
            7,
            STEPS,
            "Wait until every event is committed, covered by a signed checkpoint and projected into the PROV graph.",
        )
        t0 = time.monotonic()
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
        emitted = sum(a.stats.emitted for a in self.agents.values())
        self.say.command(["provault", "checkpoint"])
        self.say.command(["provault", "project", "--lag"])
        self.say.say(
            f"{emitted} events from {len(self.agents)} producers committed ({size} log entries in all) after "
            f"{time.monotonic() - t0:.1f} s; the latest checkpoint signs a tree of {tree_size}; the projection "
            f"is at seq {projected}, behind by {size - 1 - projected}"
        )

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

    def incident(self, prediction: str, v1: str) -> None:
        from query import render, traverse  # noqa: PLC0415
        from query.cli.trace import impact_summary  # noqa: PLC0415

        self.say.step(
            8,
            STEPS,
            f"The incident: prediction {prediction} is disputed. Trace it back: model, run, data, "
            "code, environment, people, and the keys that signed each step.",
        )
        self.say.command(["provault", "trace", prediction])
        with self.db() as conn:
            answer = traverse.trace(conn, prediction)
            self.say.show(without_edges(render.as_table(answer)))
            self.say.say("Then the raw data v1 turns out to be mislabelled. What did it reach?")
            self.say.command(["provault", "impact", v1, "--limit", "3"])
            impact = traverse.trace(conn, v1, direction=traverse.DOWNSTREAM, predictions_limit=3)
            self.say.show(impact_lines(impact_summary(impact)))
        self.verify()
        self.bundle(prediction)

    def verify(self) -> None:
        from ledger.audit import audit  # noqa: PLC0415

        self.say.say("Is the ledger itself intact? Re-derive every entry, signature, Merkle node and checkpoint:")
        self.say.command(["provault", "verify"])
        with self.db() as conn:
            report = audit(conn)
        if not report.ok:
            first = report.first_problem.describe() if report.first_problem else "?"
            raise DemoFailed(f"provault verify found {report.problem_count} problem(s); the first: {first}")
        self.say.show(
            f"provault verify: OK: {report.entries_checked} entries, {report.nodes_checked} Merkle nodes and "
            f"{report.checkpoints_checked} checkpoints re-verified; root {report.root_hash.hex()[:16]}…"
        )

    def bundle(self, prediction: str) -> None:
        from ledger.core.checkpoint import format_vkey  # noqa: PLC0415
        from ledger.store import checkpoints  # noqa: PLC0415
        from query.bundle import bundle_trace  # noqa: PLC0415
        from query.bundle_verify import read_bundle, verify_bundle, write_bundle  # noqa: PLC0415

        p = self.paths
        path, vkey_path = p.root / "bundle.json", p.root / "log.vkey"
        admin_pub = self.settings.data_dir / "keys" / "admin.key.pub"
        self.say.say("Hand the auditor the evidence for this trace, to check offline against keys they pinned:")
        self.say.command(["provault", "bundle", f"provault:prediction/{prediction}", "-o", p.rel(path)])
        self.say.command(["provault", "checkpoint", "--vkey", "--out", p.rel(vkey_path)])
        self.say.command(
            ["provault", "verify-bundle", p.rel(path), "--key", p.rel(vkey_path), "--admin-key", p.rel(admin_pub)]
        )
        with self.db() as conn:
            bundle = bundle_trace(conn, prediction, direction="upstream")
            verifier = checkpoints.checkpoint_verifier(conn)
        size = write_bundle(bundle, path)
        vkey = format_vkey(verifier.name, verifier.verifier.public_key)
        vkey_path.write_text(vkey + "\n", encoding="utf-8")
        # Offline from here: the file and the two pinned keys, no database.
        report = verify_bundle(
            read_bundle(path),
            vkey=vkey_path.read_text(encoding="utf-8").strip(),
            admin_keys=[load_public_key(admin_pub)],
        )
        pinned = "checkpoint key and admin key pinned" if report.fully_pinned else "keys NOT fully pinned"
        self.say.show(
            f"wrote {p.rel(path)} ({size} bytes): {report.entries} entries, {report.key_entries} key entries, "
            f"{report.nodes} nodes, {report.edges} edges"
        )
        self.say.say(
            f"provault verify-bundle: OK ({pinned}): the checkpoint of size {report.tree_size} is signed, every "
            "entry is proven in it, every signature is by a key valid at its seq, the graph recomputes from the "
            "signed events"
        )

    # --- 9. the end ---------------------------------------------------------------------------------------

    def explore(self, prediction: str) -> None:
        d = self.settings.data_dir
        self.say.step(
            9,
            STEPS,
            f"Done in {time.monotonic() - self.started:.1f} s. The stack is stopped; the ledger, keys, "
            f"data, models and bundle stay in {d}. Explore them yourself, from {self.paths.root}:",
        )
        self.say.command(["export", f"PROVAULT_DATA_DIR={d}"])
        self.say.command(["provault", "up"])
        self.say.say("and, in another terminal (same PROVAULT_DATA_DIR):")
        self.say.command(["provault", "trace", prediction, "--format", "svg", "--out", "trace.svg"])
        self.say.command(
            [
                "provault",
                "sparql",
                "SELECT ?run ?who WHERE { ?run a prov:Activity ; prov:wasAssociatedWith ?who . ?who a prov:Person }",
            ]
        )
        self.say.command(["provault", "export", "--format", "turtle", "--out", "graph.ttl"])
        self.say.command(["provault", "keys", "list"])
        self.say.say("Running `provault demo` again adds another round to the same ledger, with the same keys.")
