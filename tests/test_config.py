"""Settings: defaults, file and environment layering, every bad key reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.config import Settings, load_settings
from ledger.core.errors import ConfigError


def test_defaults_are_valid_and_embedded() -> None:
    s = load_settings(env={})
    assert isinstance(s, Settings)
    assert s.postgres.dsn is None and s.nats.url is None
    assert s.nats.stream == "PROVAULT" and s.nats.subject_prefix == "provault.events"
    assert s.checkpoint_key_path == s.data_dir / "keys" / "checkpoint.key"


def test_environment_beats_file_and_options_beat_both(tmp_path: Path) -> None:
    cfg = tmp_path / "provault.toml"
    cfg.write_text(
        'data_dir = "/from/file"\n[nats]\nreplicas = 3\nstream = "FILE"\n[postgres]\ndsn = "postgresql://file"\n'
    )
    env = {"PROVAULT_NATS_STREAM": "ENV", "PROVAULT_DATA_DIR": "/from/env"}
    s = load_settings(config_file=cfg, env=env, data_dir="/from/option")
    assert s.nats.replicas == 3  # file only
    assert s.nats.stream == "ENV"  # env over file
    assert s.postgres.dsn == "postgresql://file"
    assert s.data_dir == Path("/from/option")


def test_config_file_named_by_environment(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[signing]\ncheckpoint_every = 5\n")
    assert load_settings(env={"PROVAULT_CONFIG": str(cfg)}).signing.checkpoint_every == 5


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[nats]\nreplicas = 2\ncolour = "blue"\n[nope]\nx = 1\n[grpc]\nledger_listen = "nowhere"\n')
    env = {"PROVAULT_NATS_PORT": "abc", "PROVAULT_TYPO": "1", "PROVAULT_TEST_PG_DSN": "ignored"}
    with pytest.raises(ConfigError) as err:
        load_settings(config_file=cfg, env=env)
    problems = "\n".join(err.value.problems)
    assert "[nats] colour: unknown key" in problems
    assert "unknown section [nope]" in problems
    assert "PROVAULT_NATS_PORT: expected int, found 'abc'" in problems
    assert "PROVAULT_TYPO: unknown key" in problems
    assert "nats.replicas: expected 1, 3 or 5, found 2" in problems
    assert "grpc.ledger_listen: expected HOST:PORT" in problems
    assert "TEST_PG_DSN" not in problems
    assert len(err.value.problems) == 6


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not toml [", "not valid TOML"),
        ("[ingest]\nbatch_size = 0\n", "ingest.batch_size: expected 1..100000, found 0"),
        ('dev_mode = "maybe"\n', "expected bool, found 'maybe'"),
        ('[signing]\norigin = "has space"\n', "signing.origin"),
        ("[ingest]\nmax_payload_bytes = 99999999\n", "its base64 plus signatures must fit nats.max_msg_size"),
    ],
)
def test_bad_files_name_the_key(tmp_path: Path, text: str, fragment: str) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=None) as err:
        load_settings(config_file=cfg, env={})
    assert fragment in str(err.value)


def test_missing_config_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_file=tmp_path / "absent.toml", env={})


def test_settings_are_frozen() -> None:
    s = load_settings(env={})
    with pytest.raises(AttributeError):
        s.dev_mode = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({"PROVAULT_POSTGRES_PORT": "5432.9"}, "expected int, found '5432.9'"),
        ({"PROVAULT_DATA_DIR": ""}, "expected Path, found ''"),
        ({"PROVAULT_INGEST_FETCH_TIMEOUT_S": "-1"}, "ingest.fetch_timeout_s: expected > 0"),
        ({"PROVAULT_NATS_MAX_BYTES": "0"}, "nats.max_bytes: expected -1 (unlimited) or a positive size"),
        ({"PROVAULT_NATS_STREAM": "PRÖV"}, "nats.stream"),
        ({"PROVAULT_COLOUR": "x"}, "known: data_dir, dev_mode"),
        ({"PROVAULT_EXPLORER_MAX_NODES": "0"}, "explorer.max_nodes: expected 1..10000, found 0"),
        ({"PROVAULT_EXPLORER_MAX_NODES": "10001"}, "explorer.max_nodes: expected 1..10000, found 10001"),
        ({"PROVAULT_EXPLORER_SESSION_TTL_S": "0"}, "explorer.session_ttl_s: expected > 0, found 0.0"),
        ({"PROVAULT_EXPLORER_LISTEN": "9440"}, "explorer.listen"),
    ],
)
def test_bad_environment_values_are_named(env: dict, fragment: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(env=env)
    assert fragment in str(err.value)


def test_a_float_for_an_integer_key_in_toml_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text("[postgres]\nport = 5432.9\n")
    with pytest.raises(ConfigError, match="expected int, found 5432.9"):
        load_settings(config_file=cfg, env={})
