"""Docs that run: the examples in docs/ execute, and what they show is what the code does.

* Every ```python block of docs/events.md runs in a fresh namespace.
* A block preceded by ``<!-- shows: EXPR -->`` displays the value of ``EXPR``
  evaluated in the namespace of the nearest ```python block above it: bytes
  must equal the block's JSON written compactly with sorted keys (the way
  ``encode_event`` / ``encode_envelope`` write them), strings the block's
  text, anything else the block's JSON.
* docs/configuration.md lists exactly the keys of ``ledger.config.Settings``
  with their defaults and environment variable names, its TOML examples load,
  and its error example is what the CLI prints.
* docs/architecture.md's error tree is the hierarchy in ``ledger.core.errors``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from ledger.config import Settings, load_settings

DOCS = Path(__file__).resolve().parent.parent / "docs"
_BLOCK = re.compile(r"(?:<!-- shows: (?P<expr>.+?) -->\n)?^```(?P<lang>\w*)\n(?P<body>.*?)^```$", re.S | re.M)


def _blocks(name: str) -> list[tuple[str, str, str | None]]:
    """(language, body, shows-expression) of every fenced block, in order."""
    text = (DOCS / name).read_text(encoding="utf-8")
    return [(m["lang"], m["body"], m["expr"]) for m in _BLOCK.finditer(text)]


def _run(code: str, label: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": f"docs_example_{label}"}
    exec(compile(code, f"<docs/events.md {label}>", "exec"), namespace)
    return namespace


# --- docs/events.md ---------------------------------------------------------------


EVENT_BLOCKS = _blocks("events.md")
PYTHON_BLOCKS = [i for i, (lang, _, _) in enumerate(EVENT_BLOCKS) if lang == "python"]


def test_events_doc_has_examples_and_shown_outputs() -> None:
    assert len(PYTHON_BLOCKS) >= 2
    shown = [expr for _, _, expr in EVENT_BLOCKS if expr]
    assert {"payload", "envelope_bytes", "signer.keyid"} <= set(shown)


@pytest.mark.parametrize("index", PYTHON_BLOCKS, ids=lambda i: f"block{i}")
def test_events_doc_python_block_runs(index: int) -> None:
    _run(EVENT_BLOCKS[index][1], f"block{index}")


def _check_shown(value: Any, body: str, expr: str) -> None:
    if isinstance(value, bytes):
        compact = json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert compact.encode("utf-8") == value, f"docs/events.md shows {expr} with other bytes than the code makes"
    elif isinstance(value, str):
        assert body.strip() == value, f"docs/events.md shows {expr} as {body.strip()!r}, the code gives {value!r}"
    else:
        assert json.loads(body) == value, f"docs/events.md shows {expr} other than the code makes"


def test_events_doc_shows_what_the_code_produces() -> None:
    namespace: dict[str, Any] | None = None
    checked = 0
    for i, (lang, body, expr) in enumerate(EVENT_BLOCKS):
        if lang == "python":
            namespace = _run(body, f"block{i}")
        if expr:
            assert namespace is not None, f"<!-- shows: {expr} --> comes before any python block"
            _check_shown(eval(expr, namespace), body, expr)
            checked += 1
    assert checked >= 3


def test_worked_example_payload_is_a_valid_event_and_envelope_verifies() -> None:
    from ledger.core.envelope import parse_envelope  # noqa: PLC0415
    from ledger.core.events import encode_event, parse_event  # noqa: PLC0415

    ns = _run(EVENT_BLOCKS[PYTHON_BLOCKS[0]][1], "worked")
    env = parse_envelope(ns["envelope_bytes"])
    assert env.payload == ns["payload"]
    event = parse_event(env.payload)
    assert event.kind == "run.started" and encode_event(event) == ns["payload"]


# --- docs/configuration.md ------------------------------------------------------------


CONFIG_DOC = (DOCS / "configuration.md").read_text(encoding="utf-8")


def _settings_keys() -> set[str]:
    """Every key of Settings: top-level scalars as ``name``, section keys as ``section.name``."""
    keys: set[str] = set()
    hints = typing.get_type_hints(Settings)
    for f in dataclasses.fields(Settings):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys.update(f"{f.name}.{g.name}" for g in dataclasses.fields(tp))
        else:
            keys.add(f.name)
    return keys


_ROW = re.compile(r"^\| `([a-z_]+(?:\.[a-z_]+)?)` \| [^|]+ \| `([^`]*)` \| `(PROVAULT_[A-Z_]+)` \|", re.M)


def _documented() -> dict[str, tuple[str, str]]:
    """key -> (default, env var), from rows like | `nats.url` | string | `unset` | `PROVAULT_NATS_URL` | ... |."""
    rows = _ROW.findall(CONFIG_DOC)
    keys = [k for k, _, _ in rows]
    assert len(keys) == len(set(keys)), "a key is listed twice in docs/configuration.md"
    return {k: (default, env) for k, default, env in rows}


def _get(settings: Settings, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return getattr(getattr(settings, section) if section else settings, name)


def _type_of(key: str) -> type:
    section, _, name = key.rpartition(".")
    owner = typing.get_type_hints(Settings)[section] if section else Settings
    tp = typing.get_type_hints(owner)[name]
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def _sample(key: str) -> tuple[str, Any]:
    """A valid value for ``key`` that differs from its default: (env text, parsed value)."""
    tp = _type_of(key)
    special = {"nats.replicas": ("3", 3), "nats.max_msg_size": ("2000000", 2_000_000)}
    if key in special:
        return special[key]
    if tp is bool:
        return "true", True
    if tp is int:
        return "2048", 2048
    if tp is float:
        return "2.5", 2.5
    if tp is Path:
        return "/tmp/provault-docs", Path("/tmp/provault-docs")
    if key.endswith(("_listen", ".listen")):
        return "127.0.0.1:7", "127.0.0.1:7"
    choices = {"agent.transport": "grpc", "agent.backpressure": "drop", "log.format": "json", "log.level": "debug"}
    if key in choices:
        return choices[key], choices[key]
    return "DOCS_SAMPLE", "DOCS_SAMPLE"


def test_configuration_doc_lists_exactly_the_settings_keys() -> None:
    assert set(_documented()) == _settings_keys()


@pytest.mark.parametrize("key", sorted(_settings_keys()))
def test_configuration_doc_env_var_sets_its_key(key: str) -> None:
    _, env = _documented()[key]
    assert env == "PROVAULT_" + key.replace(".", "_").upper()
    text, value = _sample(key)
    assert _get(load_settings(env={env: text}), key) == value


@pytest.mark.parametrize("key", sorted(_settings_keys() - {"data_dir"}))  # data_dir depends on the platform
def test_configuration_doc_default_matches_the_code(key: str) -> None:
    default, _ = _documented()[key]
    value = _get(Settings(), key)
    if value is None:
        text = "unset"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, str):
        text = f'"{value}"'
    else:
        text = repr(value)
    assert default == text, f"{key}: docs/configuration.md says default {default}, the code has {text}"


TOML_BLOCKS = re.findall(r"^```toml\n(.*?)^```$", CONFIG_DOC, re.S | re.M)


def test_configuration_doc_has_toml_examples() -> None:
    assert TOML_BLOCKS


@pytest.mark.parametrize("index", range(len(TOML_BLOCKS)))
def test_configuration_doc_toml_example_loads(index: int, tmp_path: Path) -> None:
    path = tmp_path / "provault.toml"
    path.write_text(TOML_BLOCKS[index], encoding="utf-8")
    assert isinstance(load_settings(config_file=path, env={}), Settings)


def _marked_block(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\n```\w*\n(.*?)^```$", CONFIG_DOC, re.S | re.M)
    assert m, f"no block after <!-- {marker} --> in docs/configuration.md"
    return m.group(1)


def test_configuration_doc_error_example_is_what_the_cli_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ledger.cli import main  # noqa: PLC0415

    (tmp_path / "bad.toml").write_text(_marked_block("config-error-input"), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PROVAULT_POSTGRES_PORT", "abc")
    assert main(["up", "--config", "bad.toml", "--data-dir", str(tmp_path / "data")]) == 1
    assert capsys.readouterr().err == _marked_block("config-error-output")
    assert not (tmp_path / "data").exists(), "nothing may start when the configuration is invalid"


# --- docs/architecture.md ---------------------------------------------------------------


def test_architecture_doc_error_tree_matches_the_code() -> None:
    import ledger.core.errors as errors  # noqa: PLC0415

    text = (DOCS / "architecture.md").read_text(encoding="utf-8")
    tree = next(body for _, body, _ in _blocks("architecture.md") if body.startswith("ProvaultError"))
    assert tree in text
    documented: dict[str, tuple[str, str | None]] = {}
    parents: list[str] = []
    for line in tree.splitlines():
        m = re.fullmatch(r"(?P<indent>[│ ]*(?:[├└]── )?)(?P<name>\w+)\s+(?P<reason>\w+)", line)
        assert m, f"unreadable line in the error tree: {line!r}"
        depth = len(m["indent"]) // 4
        parents = parents[:depth]
        documented[m["name"]] = (m["reason"], parents[-1] if parents else None)
        parents.append(m["name"])
    actual = {
        name: (cls.reason, next((b.__name__ for b in cls.__bases__ if issubclass(b, errors.ProvaultError)), None))
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.ProvaultError) and cls.__module__ == errors.__name__
    }
    assert documented == actual
