"""``<data_dir>/ports.json``: the embedded servers' ports, kept from the first start (the stack itself: test_up_supervision.py)."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from ledger.core.errors import ServerStartError
from ledger.embedded import EmbeddedNats, free_port
from ledger.stack import PORTS_FILE, _port, read_ports, write_ports


def test_ports_round_trip_and_a_missing_file_is_a_first_start(tmp_path: Path) -> None:
    assert read_ports(tmp_path) == {}
    write_ports(tmp_path, {"nats": 4222, "postgres": 5432})
    assert read_ports(tmp_path) == {"nats": 4222, "postgres": 5432}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", "cannot be read"),
        ('{"nats": "4222"}', 'is not {"postgres": PORT, "nats": PORT}: {"nats": "4222"}'),
        ('{"nats": 70000}', "is not {"),
        ('{"redis": 6379}', "is not {"),
        ("[4222]", "is not {"),
    ],
)
def test_a_damaged_ports_file_is_refused_by_name(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / PORTS_FILE).write_text(text, encoding="utf-8")
    with pytest.raises(ServerStartError) as e:
        read_ports(tmp_path)
    assert str(tmp_path / PORTS_FILE) in str(e.value) and message in str(e.value)
    assert e.value.hint == "fix it, or delete it to pick new ports"


def test_the_configured_port_wins_then_the_saved_one_then_any(tmp_path: Path) -> None:
    assert _port(tmp_path, "nats", 4333, {"nats": 4222}) == 4333
    port = free_port()
    assert _port(tmp_path, "nats", 0, {"nats": port}) == port
    assert _port(tmp_path, "nats", 0, {}) == 0


def test_a_saved_port_another_process_holds_is_an_error_naming_the_file(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(ServerStartError) as e:
            _port(tmp_path, "nats", 0, {"nats": port})
        assert f"nats listens on 127.0.0.1:{port} in this data dir (kept in {tmp_path / PORTS_FILE}" in str(e.value)
        assert f"or delete {tmp_path / PORTS_FILE} to pick new ports" in (e.value.hint or "")
        # the same check guards any requested port: a foreign listener would pass the readiness probe
        with pytest.raises(ServerStartError, match=f"nats-server cannot listen on 127.0.0.1:{port}: another process"):
            EmbeddedNats(tmp_path / "nats", port=port).start()
