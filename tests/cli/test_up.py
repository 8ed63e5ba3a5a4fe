"""`provault up`: starts real servers, reuses its data, leaves no process behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

BANNER_TIMEOUT_S = 90


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _start_up(data_dir: Path, extra_env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PROVAULT_")}
    env["PROVAULT_GRPC_LEDGER_LISTEN"] = "127.0.0.1:0"
    env["PROVAULT_OPENLINEAGE_LISTEN"] = "127.0.0.1:0"
    env["PROVAULT_METRICS_LEDGER_LISTEN"] = "127.0.0.1:0"
    env["PROVAULT_EXPLORER_LISTEN"] = "127.0.0.1:0"
    env.update(extra_env or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "ledger.cli", "up", "--data-dir", str(data_dir)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + BANNER_TIMEOUT_S
    lines = []
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Press Ctrl-C" in line:
            return proc, json.loads((data_dir / "stack.json").read_text())
    proc.kill()
    pytest.fail("provault up did not come up:\n" + "".join(lines))


def _stop(proc: subprocess.Popen[str], sig: int) -> str:
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_up_serves_then_stops_everything(tmp_path: Path, sig: int) -> None:
    proc, info = _start_up(tmp_path / "state")
    children = _children(proc.pid)
    try:
        assert set(info["embedded"]) == {"postgres", "nats"}
        assert len(children) >= 2, "expected postgres and nats-server as children"
        assert info["postgres_dsn"].startswith("postgresql://postgres@127.0.0.1:")
        assert info["nats_url"].startswith("nats://127.0.0.1:")
        with psycopg.connect(info["postgres_dsn"]) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        out = _stop(proc, sig)
    assert proc.returncode == 0, out
    assert "stopped" in out
    time.sleep(0.2)
    assert [c for c in children if _alive(c)] == []
    assert not (tmp_path / "state" / "stack.json").exists()


def test_second_up_reuses_the_data(tmp_path: Path) -> None:
    proc, info = _start_up(tmp_path / "state")
    try:
        with psycopg.connect(info["postgres_dsn"]) as conn:
            conn.execute("CREATE TABLE kept (x int)")
            conn.execute("INSERT INTO kept VALUES (42)")
    finally:
        _stop(proc, signal.SIGINT)
    proc, info = _start_up(tmp_path / "state")
    try:
        with psycopg.connect(info["postgres_dsn"]) as conn:
            assert conn.execute("SELECT x FROM kept").fetchall() == [(42,)]
    finally:
        _stop(proc, signal.SIGINT)
    assert proc.returncode == 0


def test_second_up_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    proc, _ = _start_up(tmp_path / "state")
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PROVAULT_")}
        res = subprocess.run(
            [sys.executable, "-m", "ledger.cli", "up", "--data-dir", str(tmp_path / "state")],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    finally:
        _stop(proc, signal.SIGINT)
    assert res.returncode == 1
    assert "already running" in res.stderr
