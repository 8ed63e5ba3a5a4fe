"""``provault nats user add|list|remove`` and ``provault nats server-config``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.cli import main
from ledger.natsauth import read_seed_file


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_add_list_render_and_remove(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    code, out, err = _run(
        capsys, "nats", "user", "add", "ledger", "--role", "ledger", "--seed-out", str(tmp_path / "ledger.nk"), *d
    )
    assert code == 0
    seed, public = read_seed_file(tmp_path / "ledger.nk")
    assert out.strip() == public, "the public key goes to stdout, for scripts"
    assert "nats.nkey_seed_file" in err and "server-config" in err
    assert (tmp_path / "ledger.nk").stat().st_mode & 0o777 == 0o600
    code, out, _ = _run(
        capsys,
        "nats",
        "user",
        "add",
        "gpu-07",
        "--role",
        "agent",
        "--producer",
        "trainer@gpu-07",
        "--seed-out",
        str(tmp_path / "gpu-07.nk"),
        *d,
    )
    assert code == 0

    code, out, _ = _run(capsys, "nats", "user", "list", "--json", *d)
    listed = {u["name"]: u for u in json.loads(out)}
    assert listed["ledger"]["public_key"] == public and listed["gpu-07"]["producers"] == ["trainer@gpu-07"]
    assert seed not in out, "seeds are never kept or shown after add"

    code, out, _ = _run(capsys, "nats", "server-config", *d)
    assert code == 0 and out.startswith("# provault NATS users") and "authorization {" in out
    assert '"provault.events.trainer~40gpu-07"' in out and seed not in out
    code, _, err = _run(capsys, "nats", "server-config", "--out", str(tmp_path / "users.conf"), *d)
    assert code == 0 and (tmp_path / "users.conf").read_text() == out
    assert "for 2 users" in err

    code, out, _ = _run(capsys, "nats", "user", "remove", "gpu-07", *d)
    assert code == 0 and "re-render" in out and "reload" in out
    code, out, _ = _run(capsys, "nats", "user", "list", *d)
    assert "ledger" in out and "gpu-07" not in out


def test_refusals_change_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    d = ["--data-dir", str(tmp_path / "data")]
    users = tmp_path / "data" / "auth" / "nats-users.json"
    existing = tmp_path / "taken.nk"
    existing.write_text("something precious\n")

    # Nothing to render yet.
    code, _, err = _run(capsys, "nats", "server-config", *d)
    assert code == 1 and "no NATS users to render" in err
    # An existing seed file is never overwritten, and no user is added.
    code, _, err = _run(capsys, "nats", "user", "add", "a", "--role", "ledger", "--seed-out", str(existing), *d)
    assert code == 1 and "already exists; not overwriting" in err
    assert existing.read_text() == "something precious\n" and not users.exists()
    # A missing directory for the seed.
    code, _, err = _run(
        capsys, "nats", "user", "add", "a", "--role", "ledger", "--seed-out", str(tmp_path / "no" / "a.nk"), *d
    )
    assert code == 1 and "does not exist" in err and not users.exists()
    # Role rules.
    code, _, err = _run(capsys, "nats", "user", "add", "a", "--role", "agent", "--seed-out", str(tmp_path / "a.nk"), *d)
    assert code == 1 and "needs at least one producer id" in err and not (tmp_path / "a.nk").exists()
    with pytest.raises(SystemExit) as exit_:
        main(["nats", "user", "add", "a", "--role", "admin", "--seed-out", str(tmp_path / "a.nk"), *d])
    assert exit_.value.code == 2
    capsys.readouterr()
    # Only agents: the ledger could not consume.
    code, _, _ = _run(
        capsys,
        "nats",
        "user",
        "add",
        "a",
        "--role",
        "agent",
        "--producer",
        "p",
        "--seed-out",
        str(tmp_path / "a.nk"),
        *d,
    )
    assert code == 0
    code, _, err = _run(capsys, "nats", "server-config", *d)
    assert code == 1 and "no user has the ledger role" in err
    # Removing someone who is not there.
    before = users.read_bytes()
    code, _, err = _run(capsys, "nats", "user", "remove", "nobody", *d)
    assert code == 1 and "no NATS user named 'nobody'" in err and "(users: a)" in err
    assert users.read_bytes() == before


def test_help_names_the_roles_and_the_next_step(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["nats", "user", "add", "--help"])
    text = capsys.readouterr().out
    assert "--role {agent,ledger,monitor}" in text and "nkey_seed_file" in text and "server-config" in text
