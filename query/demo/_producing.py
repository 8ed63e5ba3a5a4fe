"""The demo's producing steps: datasets, code, training runs, a deployment, served predictions, all through the SDK."""

from __future__ import annotations

import itertools
import secrets
import shutil
import subprocess
from typing import TYPE_CHECKING

from . import _train
from ._cast import (
    ALICE,
    APPROVAL_COMMENT,
    CAROL,
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
    Trained,
)
from ._stack import DemoFailed
from ._text import run_git, short_label, text_table

if TYPE_CHECKING:
    pass
from ._base import DemoBase


class ProducingSteps(DemoBase):
    """Steps that produce lineage, each through the ``agents`` SDK."""

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
        from agents.governance import approval_event  # noqa: PLC0415

        best = max(results, key=lambda r: (r.accuracy, -r.c))
        approver = CAROL
        self.say.step(
            5,
            STEPS,
            f"The best model ({best.actor.name}'s C={best.c:g}, accuracy {best.accuracy:.3f}) is "
            f"registered by {best.actor.name}, approved by {approver.name} with her own key, and deployed.",
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
                "approve",
                MODEL_NAME,
                "--comment",
                APPROVAL_COMMENT,
                "--config",
                f"{approver.name}.toml",
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
        approval = approval_event(model, approver=approver.who, comment=APPROVAL_COMMENT)
        self.agent(approver).emit(approval.kind, approval.prov, data=approval.data)
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
