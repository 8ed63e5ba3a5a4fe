"""``provault run`` and the asset commands; the acceptance test trains a real scikit-learn model twice.

Tests that need no ledger point the agent at a closed port: the events stay
in the spool (the commands say so and exit 0), and the test reads them back
from there.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import select
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from agents.spool import Spool
from ledger.cli import main
from ledger.core.envelope import parse_envelope
from ledger.core.events import Event, parse_event
from ledger.core.keys import Ed25519Signer, save_private_key
from tests.agents.test_runs import (
    AUTHOR,
    git,
    git_repo,
    ledger_events,
    read_with_prov_package,
    relations,
    sha256_of,
    thaw,
)
from tests.service.natskit import wait_for

HERE_PYTHON = os.path.dirname(sys.executable)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def offline_env(tmp_path: Path, producer: str = "trainer@host-1/cli") -> dict[str, str]:
    """Configuration for an agent whose ledger is unreachable: everything stays spooled."""
    key = Ed25519Signer.generate()
    save_private_key(key, tmp_path / "producer.key")
    return {
        "PROVAULT_NATS_URL": f"nats://127.0.0.1:{closed_port()}",
        "PROVAULT_DATA_DIR": str(tmp_path / "data"),
        "PROVAULT_AGENT_KEY_FILE": str(tmp_path / "producer.key"),
        "PROVAULT_AGENT_PRODUCER_ID": producer,
        "PROVAULT_AGENT_SPOOL_DIR": str(tmp_path / "spool"),
        "PROVAULT_AGENT_PUBLISH_TIMEOUT_S": "0.3",
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    }


def spooled(tmp_path: Path) -> list[Event]:
    spool = Spool(tmp_path / "spool")
    try:
        return [parse_event(parse_envelope(r.envelope).payload) for r in spool.take(1000)]
    finally:
        spool.close()


def activity(event: Event) -> dict[str, Any]:
    return next(iter(thaw(event.prov)["activity"].values()))


@pytest.fixture
def offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name, value in offline_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", HERE_PYTHON + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setattr("agents._prov._default_cache", None)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    return tmp_path


# --- the wrapper, offline -----------------------------------------------------------------------


def test_a_failing_command_exits_with_its_code_and_emits_run_failed(offline: Path, capsys) -> None:
    Path("in.csv").write_text("1\n")
    code = main(
        [
            "run",
            "--input",
            "in.csv",
            "--output",
            "out.bin",
            "--",
            "python",
            "-c",
            "import sys; print('hi'); sys.exit(3)",
        ]
    )
    assert code == 3
    out, err = capsys.readouterr()
    assert "spooled" in err and "sent the next time producer trainer@host-1/cli runs" in err
    started, failed = spooled(offline)
    assert (started.kind, failed.kind) == ("run.started", "run.failed")
    end = activity(failed)
    assert end["provault:exitCode"] == 3 and end["provault:error"] == "command exited with code 3"
    assert "wasGeneratedBy" not in thaw(failed.prov), "a failed command's outputs are not claimed"
    assert shlex.split(activity(started)["provault:command"]) == [
        "python",
        "-c",
        "import sys; print('hi'); sys.exit(3)",
    ]


def test_a_missing_command_is_127_and_emits_nothing(offline: Path, capsys) -> None:
    assert main(["run", "--", "no-such-command-here"]) == 127
    assert "command not found" in capsys.readouterr().err
    assert not (offline / "spool").exists()


def test_a_command_that_cannot_be_executed_is_126_and_a_failed_run(offline: Path, capsys) -> None:
    Path("not-a-program").write_bytes(b"\x00\x01 neither ELF nor script")
    Path("not-a-program").chmod(0o755)
    assert main(["run", "--", "./not-a-program"]) == 126
    assert "cannot execute" in capsys.readouterr().err
    started, failed = spooled(offline)
    assert (
        activity(failed)["provault:exitCode"] == 126
        and "cannot execute ./not-a-program" in activity(failed)["provault:error"]
    )


def test_manifest_and_flags_declare_inputs_outputs_and_params(offline: Path) -> None:
    Path("conf").mkdir()
    Path("conf/a.yaml").write_text("lr: 0.1\n")
    Path("conf/b.yaml").write_text("depth: 3\n")
    Path("train.csv").write_text("x\n1\n")
    Path("job.toml").write_text(
        textwrap.dedent("""
        name = "nightly"
        inputs = ["train.csv", {path = "conf", role = "config", name = "settings"}]
        outputs = [{path = "model.bin", kind = "model"}, "report.txt"]

        [params]
        C = 0.5
        solver = "lbfgs"
    """)
    )
    script = "open('model.bin','wb').write(b'M'); open('report.txt','w').write('ok')"
    code = main(
        ["run", "--manifest", "job.toml", "--param", "C=2", "--param", 'tag="007"', "--", "python", "-c", script]
    )
    assert code == 0
    started, completed = spooled(offline)
    act = activity(started)
    assert act["provault:name"] == "nightly"
    assert json.loads(act["provault:params"]) == {"C": 2, "solver": "lbfgs", "tag": "007"}
    roles = {u["prov:entity"]: u["prov:role"] for u in relations(thaw(started.prov), "used")}
    assert roles[sha256_of(Path("train.csv"))] == "provault:data"
    conf = next(e for e, a in thaw(started.prov)["entity"].items() if a.get("prov:label") == "settings")
    assert roles[conf] == "provault:config" and thaw(started.prov)["entity"][conf]["provault:files"] == 2
    done = thaw(completed.prov)
    kinds = {e: a["prov:type"]["$"] for e, a in done["entity"].items()}
    assert kinds == {sha256_of(Path("model.bin")): "provault:Model", sha256_of(Path("report.txt")): "provault:Artifact"}
    assert {d["prov:usedEntity"] for d in relations(done, "wasDerivedFrom")} == {sha256_of(Path("train.csv"))}
    for e in (started, completed):
        read_with_prov_package(thaw(e.prov))


def test_an_invalid_manifest_lists_every_problem(offline: Path, capsys) -> None:
    Path("bad.json").write_text(json.dumps({"inputs": [{"file": "x"}], "outputs": "model.pkl", "extra": 1}))
    assert main(["run", "--manifest", "bad.json", "--", "true"]) == 1
    err = capsys.readouterr().err
    assert "[manifest_invalid]" in err
    for problem in (
        "unknown key 'extra'",
        "inputs[0]: expected a path or a table with 'path'",
        "outputs: expected a list",
    ):
        assert problem in err


def test_a_declared_output_that_was_not_written_is_reported(offline: Path, capsys) -> None:
    assert main(["run", "--model", "never.pkl", "--", "true"]) == 0
    assert "declared output" in capsys.readouterr().err
    _, completed = spooled(offline)
    assert json.loads(activity(completed)["provault:missingOutputs"])[0].endswith("never.pkl")


CHILD = textwrap.dedent("""
    import pathlib, signal, sys
    # signals are taken with sigtimedwait so each one is seen with who sent it (the kernel or a process)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    pathlib.Path("ready").write_text("1")
    got = [signal.sigtimedwait({signal.SIGINT, signal.SIGTERM}, 20)]
    while got[-1] is not None:  # a second delivery would arrive within half a second
        got.append(signal.sigtimedwait({signal.SIGINT, signal.SIGTERM}, 0.5))
    seen = [f"{i.si_signo}:{'kernel' if i.si_code == 0x80 else 'process'}" for i in got[:-1]]
    pathlib.Path("got").write_text(" ".join(seen))
    sys.exit(40 + len(seen))
""")


def _wrapper_argv() -> list[str]:
    return [sys.executable, "-m", "ledger.cli", "run", "--", sys.executable, "child.py"]


@pytest.mark.parametrize("signo", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signals_sent_to_the_wrapper_reach_the_command_once(offline: Path, signo: int) -> None:
    Path("child.py").write_text(CHILD)
    wrapper = subprocess.Popen(_wrapper_argv(), env=os.environ.copy(), stdin=subprocess.DEVNULL)
    try:
        wait_for(lambda: Path("ready").exists(), timeout=30, what="the child to start")
        wrapper.send_signal(signo)
        assert wrapper.wait(timeout=30) == 41
    finally:
        wrapper.kill()
    assert Path("got").read_text() == f"{int(signo)}:process"
    failed = spooled(offline)[-1]
    assert failed.kind == "run.failed" and activity(failed)["provault:exitCode"] == 41


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernel-sent signals are told apart on Linux only")
def test_ctrl_c_at_a_terminal_reaches_the_command_once(offline: Path) -> None:
    """^C makes the kernel signal the whole foreground group; the wrapper must not send a second one."""
    import pty  # noqa: PLC0415

    Path("child.py").write_text(CHILD)
    pid, master = pty.fork()
    if pid == 0:  # pragma: no cover - the child: becomes the wrapper on the new terminal
        os.execve(sys.executable, _wrapper_argv(), os.environ.copy())
    try:
        wait_for(lambda: Path("ready").exists(), timeout=30, what="the child to start")
        time.sleep(0.2)
        os.write(master, b"\x03")
        deadline = time.monotonic() + 30
        while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
            if select.select([master], [], [], 0.05)[0]:
                try:
                    os.read(master, 65536)  # keep the terminal drained
                except OSError:  # the terminal's last process has exited
                    time.sleep(0.05)
        assert done[0] == pid, "the wrapper did not exit"
        assert os.waitstatus_to_exitcode(done[1]) == 41
    finally:
        os.close(master)
    assert Path("got").read_text() == f"{int(signal.SIGINT)}:kernel", (
        "delivered once, by the terminal, not again by the wrapper"
    )


# --- the acceptance test: a real scikit-learn training script, wrapped and instrumented -------------

TRAIN = textwrap.dedent("""
    import csv, pickle
    from sklearn.linear_model import LogisticRegression

    def fit(C=1.0):
        with open("data.csv", newline="") as f:
            rows = list(csv.reader(f))[1:]
        X = [[float(v) for v in r[:-1]] for r in rows]
        y = [int(r[-1]) for r in rows]
        model = LogisticRegression(C=C, max_iter=1000).fit(X, y)
        with open("model.pkl", "wb") as f:
            pickle.dump(model, f)
        return model.score(X, y)

    if __name__ == "__main__":
        print("accuracy", fit())
""")

TRAIN_SDK = textwrap.dedent("""
    import agents
    from train import fit

    with agents.run("train-iris-sdk", params={"C": 1.0}) as run:
        run.use("data.csv")
        acc = fit(C=1.0)
        run.metric("accuracy", acc)
        run.produce("model.pkl", kind="model")
    print(run.id, acc)
""")


def iris_csv(path: Path) -> None:
    from sklearn.datasets import load_iris  # noqa: PLC0415

    iris = load_iris()
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow([*iris.feature_names, "species"])
        w.writerows([*map(float, x), int(t)] for x, t in zip(iris.data, iris.target, strict=True))


def stack_env(tmp_path: Path, settings, nats_target, ledger, producer: str) -> dict[str, str]:
    key = Ed25519Signer.generate()
    ledger.append(ledger.registration(key, producers=[producer]))
    save_private_key(key, tmp_path / f"{producer.rsplit('/', 1)[1]}.key")
    return {
        **os.environ,
        "PATH": HERE_PYTHON + os.pathsep + os.environ.get("PATH", ""),
        "PROVAULT_NATS_URL": nats_target.url,
        "PROVAULT_NATS_STREAM": settings.nats.stream,
        "PROVAULT_NATS_SUBJECT_PREFIX": settings.nats.subject_prefix,
        "PROVAULT_DATA_DIR": str(settings.data_dir),
        "PROVAULT_AGENT_KEY_FILE": str(tmp_path / f"{producer.rsplit('/', 1)[1]}.key"),
        "PROVAULT_AGENT_PRODUCER_ID": producer,
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    }


def check_training_run(events: list[Event], *, data: str, model: str, commit: str) -> tuple[dict, dict, str]:
    """The facts both ways of recording must give; returns the two documents and the environment id."""
    assert [e.kind for e in events] == ["run.started", "run.completed"]
    started, completed = thaw(events[0].prov), thaw(events[1].prov)
    run_id = next(iter(started["activity"]))
    env_id = next(e for e, a in started["entity"].items() if a["prov:type"]["$"] == "provault:Environment")
    env_text = json.dumps(
        thaw(events[0].data)["environment"], sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert env_id == "sha256:" + hashlib.sha256(env_text.encode()).hexdigest()
    used = {u["prov:entity"]: u["prov:role"] for d in (started, completed) for u in relations(d, "used")}
    assert used == {data: "provault:data", f"provault:git/{commit}": "provault:code", env_id: "provault:environment"}
    assert started["entity"][f"provault:git/{commit}"]["provault:dirty"] is False
    assert {w["prov:agent"] for w in relations(started, "wasAssociatedWith")} >= {f"provault:person/{AUTHOR}"}
    assert relations(completed, "wasGeneratedBy")[0]["prov:entity"] == model
    assert relations(completed, "wasGeneratedBy")[0]["prov:activity"] == run_id
    assert relations(completed, "wasDerivedFrom") == [
        {"prov:generatedEntity": model, "prov:usedEntity": data, "prov:activity": run_id}
    ]
    for doc in (started, completed):
        read_with_prov_package(doc)
    return started, completed, env_id


@pytest.mark.postgres
@pytest.mark.nats
def test_a_real_sklearn_training_run_wrapped_and_instrumented(tmp_path, ledger, ingest, settings, nats_target) -> None:
    repo = tmp_path / "repo"
    commit = git_repo(
        repo, {"train.py": TRAIN, "train_sdk.py": TRAIN_SDK}, ignore=("data.csv", "model.pkl", "__pycache__/")
    )
    iris_csv(repo / "data.csv")
    data = sha256_of(repo / "data.csv")

    # (a) no code change: the command wrapped by provault run
    env = stack_env(tmp_path, settings, nats_target, ledger, "trainer@ci/wrapped")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger.cli",
            "run",
            "--input",
            "data.csv",
            "--output",
            "model.pkl",
            "--param",
            "C=1.0",
            "--",
            "python",
            "train.py",
        ],
        cwd=repo,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("accuracy "), "the command's stdout passes through untouched"
    assert "delivered" in done.stderr
    model_a = sha256_of(repo / "model.pkl")
    wait_for(lambda: len(ledger_events(ledger, "trainer@ci/wrapped")) == 2, what="the wrapped run's events")
    started, _, env_a = check_training_run(
        ledger_events(ledger, "trainer@ci/wrapped"), data=data, model=model_a, commit=commit
    )
    act = started["activity"][next(iter(started["activity"]))]
    assert json.loads(act["provault:params"]) == {"C": 1.0} and act["provault:command"] == "python train.py"
    assert act["provault:name"] == "train.py"

    # (b) the same training instrumented with the SDK
    env = stack_env(tmp_path, settings, nats_target, ledger, "trainer@ci/sdk")
    done = subprocess.run(
        [sys.executable, "train_sdk.py"], cwd=repo, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    run_id, acc = done.stdout.split()
    model_b = sha256_of(repo / "model.pkl")
    wait_for(lambda: len(ledger_events(ledger, "trainer@ci/sdk")) == 2, what="the SDK run's events")
    started, completed, env_b = check_training_run(
        ledger_events(ledger, "trainer@ci/sdk"), data=data, model=model_b, commit=commit
    )
    assert json.loads(started["activity"][run_id]["provault:params"]) == {"C": 1.0}
    assert json.loads(completed["activity"][run_id]["provault:metrics"]) == {"accuracy": float(acc)}
    assert env_a == env_b, "same interpreter and packages: same environment id"
    assert ledger.rejections() == []
    assert git(repo, "status", "--porcelain") == ""


# --- dataset / model commands --------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.nats
def test_dataset_and_model_commands_reach_the_ledger(
    tmp_path, monkeypatch, ledger, ingest, settings, nats_target, capsys
) -> None:
    for name, value in stack_env(tmp_path, settings, nats_target, ledger, "trainer@ci/assets").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("agents._prov._default_cache", None)
    monkeypatch.chdir(tmp_path)
    Path("raw.csv").write_text("a\n1\n2\n")
    Path("clean.csv").write_text("a\n1\n")
    Path("m.pkl").write_bytes(b"model")
    raw = sha256_of(Path("raw.csv"))
    assert main(["dataset", "register", "raw.csv", "--name", "raw"]) == 0
    assert main(["dataset", "register", "clean.csv", "--name", "clean", "--derived-from", raw, "--json"]) == 0
    assert main(["model", "register", "m.pkl", "--name", "m", "--version", "2"]) == 0
    assert (
        main(
            [
                "model",
                "deploy",
                sha256_of(Path("m.pkl")),
                "--name",
                "prod",
                "--target",
                "k8s://prod/m",
                "--approved-by",
                "carol@example.com",
                "--json",
            ]
        )
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"dataset.registered {raw} event ") and lines[0].endswith(" delivered")
    clean, deployed = json.loads(lines[1]), json.loads(lines[3])
    assert clean["id"] == sha256_of(Path("clean.csv")) and clean["delivered"] is True
    assert deployed["id"].startswith("provault:deployment/prod/")
    wait_for(lambda: len(ledger_events(ledger, "trainer@ci/assets")) == 4, what="four events")
    events = ledger_events(ledger, "trainer@ci/assets")
    assert [e.kind for e in events] == [
        "dataset.registered",
        "dataset.registered",
        "model.registered",
        "model.deployed",
    ]
    assert [e.id for e in events][1::2] == [clean["event"], deployed["event"]]
    assert relations(thaw(events[1].prov), "wasDerivedFrom")[0]["prov:usedEntity"] == raw
    assert deployed["id"] in thaw(events[3].prov)["entity"]
    assert ledger.rejections() == []
