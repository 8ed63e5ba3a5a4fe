"""docs/agents.md runs: its examples against a real ledger, JetStream and ingest; its commands parse.

* every ```python block compiles; the ones not marked ``<!-- file: NAME -->``
  run in order, in one namespace, in one working directory, with the
  process-wide default agent configured for the test's stack;
* a block marked ``<!-- file: NAME -->`` is written to NAME at that point;
* the ``provault`` commands of a ```bash block marked ``<!-- run -->`` run
  in-process through ``ledger.cli.main``; every other ``provault`` command of
  the page is parsed by the real parser;
* the TOML examples load (configuration, manifest).
"""

from __future__ import annotations

import os
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytest

import agents.runtime
from agents.cli import load_manifest
from agents.runtime import agent_from_settings
from ledger.cli import build_parser, main
from ledger.config import load_settings
from ledger.core.keys import Ed25519Signer, save_private_key
from tests.agents.test_cli_run import HERE_PYTHON
from tests.agents.test_runs import ledger_events, read_with_prov_package, thaw
from tests.service.natskit import wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "agents.md"
_BLOCK = re.compile(r"(?:<!-- (?P<mark>file: \S+|run) -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    mark: str | None

    @property
    def file(self) -> str | None:
        return self.mark[len("file: ") :] if self.mark and self.mark.startswith("file: ") else None

    def commands(self) -> list[list[str]]:
        lines = [line.strip() for line in self.body.splitlines()]
        return [shlex.split(line)[1:] for line in lines if line.startswith("provault ")]


BLOCKS = [Block(m["lang"], m["body"], m["mark"]) for m in _BLOCK.finditer(DOC.read_text(encoding="utf-8"))]


def test_the_page_has_examples_of_every_part() -> None:
    python = [b for b in BLOCKS if b.lang == "python" and not b.file]
    assert len(python) >= 5
    text = " ".join(b.body for b in BLOCKS)
    for name in (
        "agents.run(",
        "agents.step(",
        "register_dataset(",
        "register_model(",
        "deploy_model(",
        "provault run",
    ):
        assert name in text, f"docs/agents.md has no example of {name}"
    assert {b.file for b in BLOCKS if b.file} == {"provault.toml", "train.py", "provault-run.toml"}


@pytest.mark.parametrize("index", [i for i, b in enumerate(BLOCKS) if b.lang == "python"], ids=lambda i: f"block{i}")
def test_python_blocks_compile(index: int) -> None:
    compile(BLOCKS[index].body, f"<docs/agents.md block {index}>", "exec")


def test_every_provault_command_parses() -> None:
    parser = build_parser()
    commands = [c for b in BLOCKS if b.lang == "bash" for c in b.commands()]
    assert len(commands) >= 8
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"docs/agents.md: `provault {shlex.join(argv)}` does not parse")


def test_the_toml_examples_load(tmp_path: Path) -> None:
    for block in BLOCKS:
        if block.file in ("provault.toml", "provault-run.toml"):
            (tmp_path / block.file).write_text(block.body)
    settings = load_settings(config_file=tmp_path / "provault.toml", env={})
    assert settings.agent.producer_id == "alice@gpu-07/train"
    manifest = load_manifest(tmp_path / "provault-run.toml")
    assert manifest.name == "train-price" and [o.role for o in manifest.outputs] == ["model"]
    assert manifest.inputs[1].path == str(tmp_path / "clean.csv")


@pytest.mark.postgres
@pytest.mark.nats
def test_the_examples_run_against_a_real_stack(
    tmp_path, monkeypatch, capfd, ledger, ingest, settings, nats_target
) -> None:
    key = Ed25519Signer.generate()
    ledger.append(ledger.registration(key, producers=["docs@test/*"]))
    save_private_key(key, tmp_path / "producer.key")
    env = {
        "PROVAULT_NATS_URL": nats_target.url,
        "PROVAULT_NATS_STREAM": settings.nats.stream,
        "PROVAULT_NATS_SUBJECT_PREFIX": settings.nats.subject_prefix,
        "PROVAULT_DATA_DIR": str(settings.data_dir),
        "PROVAULT_AGENT_KEY_FILE": str(tmp_path / "producer.key"),
        "PROVAULT_AGENT_PRODUCER_ID": "docs@test/cli",
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", HERE_PYTHON + os.pathsep + os.environ.get("PATH", ""))
    monkeypatch.setattr("agents._prov._default_cache", None)
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")
    sdk = agent_from_settings(load_settings(), producer_id="docs@test/sdk")
    monkeypatch.setattr(agents.runtime, "_default", sdk)

    namespace: dict = {"__name__": "docs_agents"}
    cli_events = 0
    try:
        for i, block in enumerate(BLOCKS):
            if block.file:
                Path(block.file).write_text(block.body)
            elif block.lang == "python":
                exec(compile(block.body, f"<docs/agents.md block {i}>", "exec"), namespace)
            elif block.lang == "bash" and block.mark == "run":
                for argv in block.commands():
                    assert main(argv) == 0, f"`provault {shlex.join(argv)}` failed: {capfd.readouterr().err}"
                    cli_events += 2 if argv[0] == "run" else 1
        assert sdk.flush(timeout=30)
    finally:
        sdk.close()

    out = capfd.readouterr().out
    assert "completed" in out and "failed" in out and "provault:deployment/price-prod/" in out
    assert namespace["failed"].status == "failed" and namespace["deployment"].startswith(
        "provault:deployment/price-prod/"
    )
    assert "trained on 4 rows with ['--epochs', '3']" in out
    expected = sdk.stats.emitted + cli_events
    wait_for(lambda: len(ledger_events(ledger)) == expected + 1, what=f"all {expected} events of the page")  # + the key
    events = [e for e in ledger_events(ledger) if e.kind != "key.registered"]
    assert ledger.rejections() == []
    assert {e.kind for e in events} == {
        "run.started",
        "run.completed",
        "run.failed",
        "dataset.registered",
        "model.registered",
        "model.deployed",
    }
    for e in events:
        read_with_prov_package(thaw(e.prov))
