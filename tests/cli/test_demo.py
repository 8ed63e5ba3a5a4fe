"""`provault demo`: the whole story on a real stack, run as a user runs it, twice; and docs/quickstart.md.

The demo runs as a subprocess (``python -m ledger.cli demo``) on a fresh data
directory, then a second time on the same one.  While it runs, its child
processes (PostgreSQL, nats-server, ingest workers) are recorded; none may
outlive it.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.cli import build_parser, main
from tests.cli.test_up import _alive, _children, _start_up, _stop

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "docs" / "quickstart.md"
BUDGET_S = 60.0
"""The demo's promise: done in under a minute (it takes about 10 s on a 2-core machine)."""
TIMEOUT_S = 240.0


@dataclass(frozen=True, slots=True)
class Round:
    code: int
    out: str
    err: str
    seconds: float
    children: frozenset[int]


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVAULT_")}
    env["XDG_CACHE_HOME"] = str(tmp / "cache")  # the agents' digest cache, not the user's
    return env


def _run_demo(data_dir: Path, tmp: Path, name: str) -> Round:
    out, err = tmp / f"{name}.out", tmp / f"{name}.err"
    seen: set[int] = set()
    start = time.monotonic()
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "demo", "--data-dir", str(data_dir)],
            stdout=o,
            stderr=e,
            env=_env(tmp),
            cwd=tmp,
        )
        while proc.poll() is None:
            seen.update(_children(proc.pid))
            if time.monotonic() - start > TIMEOUT_S:
                proc.kill()
                proc.wait()
                pytest.fail(
                    f"provault demo did not finish within {TIMEOUT_S:.0f} s:\n{out.read_text()}\n{err.read_text()}"
                )
            time.sleep(0.05)
    seconds = time.monotonic() - start
    return Round(proc.returncode, out.read_text(), err.read_text(), seconds, frozenset(seen))


@pytest.fixture(scope="module")
def rounds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Round, Round]:
    tmp = tmp_path_factory.mktemp("demo")
    data = tmp / "state"
    first = _run_demo(data, tmp, "first")
    assert first.code == 0, first.out + first.err
    second = _run_demo(data, tmp, "second")
    assert second.code == 0, second.out + second.err
    print(f"\nprovault demo took {first.seconds:.1f} s on a fresh data dir, {second.seconds:.1f} s the second time")
    return data, first, second


def _section(out: str, start: str, end: str) -> str:
    return out[out.index(start) : out.index(end, out.index(start))]


def _commands(out: str) -> list[list[str]]:
    """Every `$ provault ...` command the narrative shows, continuation lines joined."""
    text = re.sub(r" \\\n\s+", " ", out)
    return [
        shlex.split(line.split("$ ", 1)[1]) for line in text.splitlines() if line.lstrip().startswith("$ provault ")
    ]


# --- the story --------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.nats
def test_demo_finishes_within_a_minute_and_tells_ten_steps(rounds) -> None:
    _, first, second = rounds
    assert first.seconds < BUDGET_S and second.seconds < BUDGET_S, (first.seconds, second.seconds)
    for n in range(1, 11):
        assert f"[{n}/10] " in first.out
    steps = re.split(r"^\[\d+/10\] ", first.out, flags=re.M)[1:]
    assert len(steps) == 10
    assert all("$ provault " in step or "\n   >>> " in step for step in steps), "every step shows what to type"
    assert "\x1b[" not in first.out, "plain text, no colour"


@pytest.mark.postgres
@pytest.mark.nats
def test_the_release_gate_allows_then_the_quarantine_denies_and_the_attestation_verifies(rounds) -> None:
    data, first, second = rounds
    release = _section(first.out, "[8/10] ", "[9/10] ")
    assert "provault gate: ALLOWED: model sha256:" in release
    for rule in ("provenance", "signers", "approvals", "quarantine", "metric:accuracy"):
        assert re.search(rf"^\s+PASS  {re.escape(rule)} ", release, flags=re.M), rule
    assert "1 distinct approver with role ml-lead, 1 needed: carol@example.com" in release
    assert re.search(r"recorded    gate\.decided event \S+ \(delivered\)", release)
    assert "provault verify-attestation: OK" in release
    incident = _section(first.out, "[9/10] ", "[10/10] ")
    assert "provault gate: DENIED: model sha256:" in incident
    failed = re.findall(r"^\s+FAIL  (\S+)\s+(.*)$", incident, flags=re.M)
    assert failed == [("quarantine", failed[0][1])] and "breast-cancer-raw is quarantined" in failed[0][1]
    assert "PASS  " not in incident, "after the quarantine only the failed rule is shown"
    # The quarantine stays: the second round's release gate denies the model from the start.
    again = _section(second.out, "[8/10] ", "[9/10] ")
    assert "provault gate: DENIED" in again and "FAIL  quarantine" in again
    demo = data / "demo"
    for name in ("release.toml", "release.intoto.json", "release.intoto.bundle.json"):
        assert (demo / name).stat().st_size > 0, name


@pytest.mark.postgres
@pytest.mark.nats
def test_every_command_shown_is_a_real_command(rounds) -> None:
    parser = build_parser()
    commands = _commands(rounds[1].out)
    assert len(commands) >= 15
    for argv in commands:
        parser.parse_args(argv[1:])  # exits 2 (SystemExit) on a command that does not exist


@pytest.mark.postgres
@pytest.mark.nats
def test_trace_names_the_model_the_commit_the_environment_both_authors_and_their_keys(rounds) -> None:
    out = rounds[1].out
    model = re.search(r"^   model\s+(sha256:[0-9a-f]{64})$", out, re.M).group(1)
    trace = _section(out, "$ provault trace ", "$ provault impact ")
    assert f"{model[:19]}…" in trace
    assert "provault:Model" in trace and "breast-cancer-logreg" in trace
    assert "provault:git/" in trace, "the training code's commit (git is installed here)"
    assert "provault:Environment" in trace
    assert "breast-cancer-clean" in trace and "breast-cancer-raw" in trace, "v2 and v1"
    assert "provault:person/alice@example.com" in trace and "provault:person/bob@example.com" in trace
    keys = trace[trace.index("SIGNED BY (") :]
    for holder in ("alice@example.com", "bob@example.com", "pipeline", "serving", "admin (root key)"):
        assert holder in keys


@pytest.mark.postgres
@pytest.mark.nats
def test_impact_of_the_raw_data_counts_every_prediction_and_the_rounds_add_up(rounds) -> None:
    _, first, second = rounds
    assert re.search(r"predictions affected:\s+300\b", first.out)
    assert re.search(r"models affected:\s+4\b", first.out)
    assert re.search(r"deployments affected:\s+1\s+breast-cancer-prod", first.out)
    assert re.search(r"predictions affected:\s+600\b", second.out), "a second round adds to the same ledger"
    assert re.search(r"deployments affected:\s+2\b", second.out)


@pytest.mark.postgres
@pytest.mark.nats
def test_the_audit_and_the_bundle_verify(rounds) -> None:
    data, first, second = rounds
    for r in (first, second):
        assert "provault verify: OK:" in r.out
        assert "provault verify-bundle: OK (checkpoint key and admin key pinned)" in r.out
    demo = data / "demo"
    assert (demo / "bundle.json").is_file()
    # Offline, with the real CLI and the pinned keys the demo left.
    assert (
        main(
            [
                "verify-bundle",
                str(demo / "bundle.json"),
                "--key",
                str(demo / "log.vkey"),
                "--admin-key",
                str(data / "keys" / "admin.key.pub"),
            ]
        )
        == 0
    )


@pytest.mark.postgres
@pytest.mark.nats
def test_a_second_round_reuses_the_keys(rounds) -> None:
    _, first, second = rounds
    assert first.out.count("(new)") == 5, "alice, bob, pipeline, serving, carol"
    assert second.out.count("(kept from an earlier demo)") == 5
    assert "the ledger already holds" in second.out


@pytest.mark.postgres
@pytest.mark.nats
def test_no_process_is_left_behind(rounds) -> None:
    data, first, second = rounds
    for r in (first, second):
        assert len(r.children) >= 2, "expected postgres and nats-server as children"
        assert [c for c in r.children if _alive(c)] == []
    assert not (data / "stack.json").exists()
    assert not (data / "postgres" / "pgdata" / "postmaster.pid").exists()


@pytest.mark.postgres
@pytest.mark.nats
def test_refused_while_provault_up_holds_the_data_dir(tmp_path: Path) -> None:
    data = tmp_path / "state"
    proc, _ = _start_up(data, extra_env={"PROVAULT_GRPC_QUERY_LISTEN": "127.0.0.1:0"})
    try:
        res = subprocess.run(
            [sys.executable, "-m", "ledger.cli", "demo", "--data-dir", str(data)],
            capture_output=True,
            text=True,
            env=_env(tmp_path),
            timeout=120,
        )
        assert (data / "stack.json").exists(), "the running stack's file is left alone"
    finally:
        _stop(proc, signal.SIGINT)
    assert res.returncode == 1, res.stdout + res.stderr
    assert "already running" in res.stderr and "[demo_failed]" in res.stderr


def _processes_using(path: Path) -> list[int]:
    """Live processes whose command line names ``path`` (the stack's servers do)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if str(path) in cmdline and _alive(int(entry.name)):
                out.append(int(entry.name))
    return out


@pytest.mark.postgres
@pytest.mark.nats
def test_a_failing_step_stops_the_stack_and_says_which_step(tmp_path: Path, monkeypatch, capsys) -> None:
    from query.demo import _train  # noqa: PLC0415

    def broken_fit(path, c):
        raise RuntimeError("the GPU caught fire")

    monkeypatch.setattr(_train, "fit", broken_fit)
    for name in [k for k in os.environ if k.startswith("PROVAULT_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    data = tmp_path / "state"
    assert main(["demo", "--data-dir", str(data)]) == 1
    err = capsys.readouterr().err
    assert "provault: error [demo_failed]: step 4 failed" in err and "RuntimeError: the GPU caught fire" in err
    assert _processes_using(data) == []
    assert not (data / "stack.json").exists()


@pytest.mark.postgres
@pytest.mark.nats
def test_sigterm_stops_the_stack(tmp_path: Path) -> None:
    data, out = tmp_path / "state", tmp_path / "out"
    with open(out, "w") as o:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ledger.cli", "demo", "--data-dir", str(data)],
            stdout=o,
            stderr=subprocess.STDOUT,
            env=_env(tmp_path),
        )
        deadline = time.monotonic() + TIMEOUT_S
        while "[3/10]" not in out.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        children = _children(proc.pid)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=120)
    assert code == 130, out.read_text()
    assert "interrupted" in out.read_text()
    time.sleep(0.2)
    assert len(children) >= 2 and [c for c in children if _alive(c)] == []
    assert _processes_using(data) == []


# --- docs/quickstart.md ---------------------------------------------------------------------


def _quickstart_commands() -> list[str]:
    text = QUICKSTART.read_text(encoding="utf-8")
    lines = [
        ln.strip() for block in re.findall(r"^```bash\n(.*?)^```$", text, re.S | re.M) for ln in block.splitlines()
    ]
    parts = [part.strip() for ln in lines if ln and not ln.startswith("#") for part in ln.split("&&")]
    return [part for part in parts if part.startswith("provault ")]


def test_quickstart_shows_the_demo_and_the_commands_to_do_it_yourself() -> None:
    commands = _quickstart_commands()
    assert "provault demo" in commands
    assert "provault up" in commands
    assert len(commands) >= 10


@pytest.mark.parametrize("command", _quickstart_commands())
def test_quickstart_command_parses(command: str) -> None:
    build_parser().parse_args(shlex.split(command, comments=True)[1:])
