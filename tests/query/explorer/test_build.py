"""build_explorer: what the settings decide, and the settings it refuses before anything listens."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ledger.config import ExplorerSettings, Settings
from ledger.core.errors import ConfigError
from ledger.grpckit.tokens import TokenStore
from query.explorer import build_explorer
from tests.query.explorer.explorerkit import Browserless

DSN = "postgresql://nobody@127.0.0.1:1/none"  # never reached: these settings are refused before connecting


def settings(tmp_path: Path, **explorer) -> Settings:
    return Settings(data_dir=tmp_path, explorer=ExplorerSettings(**{"listen": "127.0.0.1:0", **explorer}))


def test_disabled_means_no_explorer(tmp_path: Path) -> None:
    assert build_explorer(settings(tmp_path, enabled=False), DSN) is None


def test_a_non_loopback_address_without_tls_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build_explorer(settings(tmp_path, listen="0.0.0.0:9440"), DSN)
    assert list(err.value.problems) == [
        "explorer.listen: 0.0.0.0:9440 is not a loopback address and grpc.tls_cert is unset: "
        "sign-in tokens and session cookies would cross the network in clear"
    ]
    assert err.value.hint == "set grpc.tls_cert and grpc.tls_key, or listen on 127.0.0.1"


def test_without_a_tokens_file_nobody_could_sign_in_so_it_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        build_explorer(settings(tmp_path), DSN)
    assert list(err.value.problems) == [
        f"explorer: auditors sign in with tokens, and the tokens file {tmp_path / 'auth' / 'tokens.json'} "
        "(grpc.tokens_file) does not exist"
    ]
    assert "explorer.enabled = false" in err.value.hint


@pytest.mark.postgres
def test_dev_mode_serves_a_sign_in_link_and_refuses_tokens(tmp_path: Path, pg_dsn: str) -> None:
    s = dataclasses.replace(settings(tmp_path), dev_mode=True)
    TokenStore(tmp_path / "auth" / "tokens.json").create(role="auditor")
    server = build_explorer(s, pg_dsn)
    assert server is not None
    server.start()
    try:
        key = server.url.split("key=")[1]
        assert len(key) >= 32 and server.url.startswith(server.base_url() + "/login/link?key=")
        b = Browserless(server.base_url())
        assert b.request("/").headers["Location"] == "/login"
        assert b.request(server.url[len(server.base_url()) :]).headers["Location"] == "/"
        assert b.api("whoami").json() == {"subject": "dev-mode", "max_nodes": 1000}
    finally:
        server.stop()
    assert not server.running()
