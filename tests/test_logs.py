"""provault's log lines: text for people, JSON for collectors, with the ids a record concerns as fields."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from ledger import logs
from ledger.cli import main


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger("provault")
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_lines_carry_the_structured_fields(capsys) -> None:
    logs.configure("json", "info")
    log = logging.getLogger("provault.ingest")
    log.warning(
        "rejected event %s: %s",
        "e-1",
        'a "quoted" reason\nwith a newline',
        extra={"event_id": "e-1", "producer_id": "trainer@host", "reason": "bad_signature", "seq": None},
    )
    log.info("plain")
    log.debug("below the level")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2  # one line per record, the newline inside the message escaped
    first, second = (json.loads(line) for line in lines)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", first["ts"])
    assert first | {"ts": "T"} == {
        "ts": "T",
        "level": "warning",
        "logger": "provault.ingest",
        "msg": 'rejected event e-1: a "quoted" reason\nwith a newline',
        "event_id": "e-1",
        "producer_id": "trainer@host",
        "reason": "bad_signature",
    }  # a field that is None is left out
    assert set(second) == {"ts", "level", "logger", "msg"} and second["msg"] == "plain"


def test_exceptions_are_kept_in_the_json_line(capsys) -> None:
    logs.configure("json", "debug")
    try:
        raise ValueError("boom")
    except ValueError:
        logging.getLogger("provault.projector").exception("projection failed")
    line = json.loads(capsys.readouterr().err)
    assert line["level"] == "error" and "ValueError: boom" in line["exception"]


def test_text_lines_and_reconfiguring_replaces_the_handler(capsys) -> None:
    logs.configure("json")
    logs.configure("text", "warning")
    assert sum(isinstance(h, logs._Stderr) for h in logging.getLogger("provault").handlers) == 1
    logging.getLogger("provault.health").warning("postgres is unreachable", extra={"dependency": "postgres"})
    logging.getLogger("provault.health").info("not shown at warning")
    (line,) = capsys.readouterr().err.splitlines()
    assert re.fullmatch(r"\S+Z WARNING provault\.health: postgres is unreachable", line)


def test_the_command_line_takes_the_log_settings(monkeypatch, capsys) -> None:
    monkeypatch.setenv("PROVAULT_LOG_FORMAT", "yaml")
    assert main(["keys", "list"]) == 1
    assert "log.format: expected 'text' or 'json', found 'yaml'" in capsys.readouterr().err
    monkeypatch.setenv("PROVAULT_LOG_FORMAT", "json")
    monkeypatch.setenv("PROVAULT_LOG_LEVEL", "loud")
    assert main(["keys", "list"]) == 1
    assert "log.level: expected one of 'debug', 'info', 'warning', 'error', found 'loud'" in capsys.readouterr().err
