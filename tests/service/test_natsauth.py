"""NATS users without a server: keys, seed files, the registry, and the rendered permissions.

The rendered block is also checked by the real ``nats-server -t``; what the
permissions do on a live server is tests/security/test_nats_auth.py.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import nkeys
import pytest

from ledger.config import NatsSettings
from ledger.core.errors import ConfigError
from ledger.embedded import nats_server_binary
from ledger.natsauth import (
    NatsUser,
    NatsUserError,
    NatsUsers,
    connect_options,
    inbox_prefix,
    new_user_seed,
    permissions,
    read_seed_file,
    render_server_config,
)
from ledger.transport import CONSUMER

NS = NatsSettings()


def _seed_file(tmp_path: Path, text: str, mode: int = 0o600, name: str = "u.nk") -> Path:
    p = tmp_path / name
    p.write_text(text)
    p.chmod(mode)
    return p


def _users(tmp_path: Path) -> NatsUsers:
    store = NatsUsers(tmp_path / "auth" / "nats-users.json")
    store.add(name="ledger", role="ledger", public_key=new_user_seed()[1])
    store.add(name="gpu-07", role="agent", public_key=new_user_seed()[1], producers=["trainer@gpu-07", "eval/v2"])
    return store


# --- keys and seed files -----------------------------------------------------------------------------


def test_a_new_seed_is_a_user_nkey_whose_public_key_matches() -> None:
    seed, public = new_user_seed()
    assert seed.startswith("SU") and public.startswith("U") and len(public) == 56
    kp = nkeys.from_seed(bytearray(seed.encode()))
    assert kp.public_key.decode() == public
    assert new_user_seed()[1] != public


def test_connect_options_carry_the_seed_and_a_private_inbox(tmp_path: Path) -> None:
    seed, public = new_user_seed()
    opts = connect_options(NatsSettings(nkey_seed_file=str(_seed_file(tmp_path, f"# gpu-07\n{seed}\n"))))
    assert opts == {"nkeys_seed_str": seed, "inbox_prefix": f"_INBOX.{public}"}
    assert connect_options(NatsSettings()) == {}, "no credentials configured: connect as before"


@pytest.mark.parametrize(
    ("text", "mode", "message"),
    [
        ("{seed}\n", 0o644, "is readable by others (mode 644)"),
        ("{seed}\n", 0o640, "is readable by others (mode 640)"),
        ("", 0o600, "exactly one nkey seed line, found 0"),
        ("{seed}\n{seed}\n", 0o600, "exactly one nkey seed line, found 2"),
        ("pvt_0123456789ab_xxx\n", 0o600, "expected a NATS user nkey seed (starting 'SU'), found one starting 'pv'"),
        ("{account}\n", 0o600, "expected a NATS user nkey seed (starting 'SU'), found one starting 'SA'"),
        ("{broken}\n", 0o600, "not a valid NATS nkey seed"),
    ],
    ids=[
        "world-readable",
        "group-readable",
        "empty",
        "two-seeds",
        "a-token-not-a-seed",
        "account-seed",
        "bad-checksum",
    ],
)
def test_a_bad_seed_file_is_refused_with_its_reason(tmp_path: Path, text: str, mode: int, message: str) -> None:
    seed, _ = new_user_seed()
    account = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_ACCOUNT).decode()
    broken = seed[:-3] + ("AAA" if not seed.endswith("AAA") else "BBB")
    p = _seed_file(tmp_path, text.format(seed=seed, account=account, broken=broken), mode)
    with pytest.raises(ConfigError, match="nats.nkey_seed_file") as err:
        read_seed_file(p)
    assert message in str(err.value.diagnostics())


def test_a_missing_seed_file_or_ca_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nats.nkey_seed_file: cannot read .*absent.nk"):
        connect_options(NatsSettings(nkey_seed_file=str(tmp_path / "absent.nk")))
    with pytest.raises(ConfigError, match=r"nats.tls_ca: cannot load CA certificates"):
        connect_options(NatsSettings(tls_ca=str(tmp_path / "absent.pem")))


# --- the registry ----------------------------------------------------------------------------------


def test_users_are_added_listed_and_removed(tmp_path: Path) -> None:
    store = _users(tmp_path)
    assert set(store.load()) == {"ledger", "gpu-07"}
    assert store.load()["gpu-07"].producers == ("trainer@gpu-07", "eval/v2")
    assert store.path.stat().st_mode & 0o777 == 0o600
    removed = store.remove("gpu-07")
    assert removed.name == "gpu-07" and set(store.load()) == {"ledger"}
    with pytest.raises(NatsUserError, match=r"no NATS user named 'gpu-07' .*\(users: ledger\)"):
        store.remove("gpu-07")


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"name": "ledger", "role": "ledger"}, "a NATS user named 'ledger' already exists"),
        ({"name": "x y", "role": "ledger"}, "name: expected letters"),
        ({"name": "-x", "role": "ledger"}, "name: expected letters"),
        ({"name": "x", "role": "admin"}, "role: expected one of agent, ledger, monitor, found 'admin'"),
        ({"name": "x", "role": "agent"}, "an agent user needs at least one producer id"),
        ({"name": "x", "role": "ledger", "producers": ["p"]}, "a ledger user publishes no events"),
        ({"name": "x", "role": "agent", "producers": ["has space"]}, "producers: producer.id: expected characters A-Z"),
        ({"name": "x", "role": "agent", "producers": ["nl\nx"]}, "producers: producer.id: expected characters A-Z"),
        ({"name": "x", "role": "agent", "producers": [""]}, "producers: producer.id: expected a non-empty string"),
        ({"name": "x", "role": "agent", "producers": ["trainer.*"]}, "producers: producer.id: expected characters A-Z"),
        ({"name": "x", "role": "agent", "producers": ["caf\u00e9"]}, "producers: producer.id: expected characters A-Z"),
        (
            {"name": "x", "role": "agent", "producers": ["p"], "public_key": "not-a-key"},
            "public_key: expected a NATS user public key",
        ),
    ],
    ids=[
        "same-name",
        "space-in-name",
        "sign-first",
        "unknown-role",
        "agent-without-producer",
        "ledger-with-producer",
        "space-in-producer",
        "newline-in-producer",
        "empty-producer",
        "wildcard-producer",
        "non-ascii-producer",
        "bad-public-key",
    ],
)
def test_a_bad_user_is_refused_and_the_registry_is_unchanged(tmp_path: Path, kw: dict, message: str) -> None:
    store = _users(tmp_path)
    before = store.path.read_bytes()
    kw.setdefault("public_key", new_user_seed()[1])
    with pytest.raises(NatsUserError, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.add(**kw)
    assert store.path.read_bytes() == before


def test_one_key_belongs_to_one_user(tmp_path: Path) -> None:
    store = _users(tmp_path)
    key = store.load()["ledger"].public_key
    with pytest.raises(NatsUserError, match="already belongs to another user"):
        store.add(name="copy", role="ledger", public_key=key)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: "not json", "NATS users file .*: Expecting value"),
        (lambda d: json.dumps({"version": 2, "users": []}), r'expected \{"version": 1, "users": \[...\]\}'),
        (lambda d: json.dumps({**d, "users": [{**d["users"][0], "extra": 1}]}), r"users\[0\]: unknown member 'extra'"),
        (
            lambda d: json.dumps({**d, "users": [{k: v for k, v in d["users"][0].items() if k != "role"}]}),
            r"users\[0\]: missing member 'role'",
        ),
        (lambda d: json.dumps({**d, "users": [d["users"][0], d["users"][0]]}), "a user name appears twice"),
        (
            lambda d: json.dumps({**d, "users": [d["users"][0], {**d["users"][0], "name": "other"}]}),
            "a public key appears twice",
        ),
        (
            lambda d: json.dumps({**d, "users": [{**d["users"][0], "role": "root"}]}),
            r"users\[0\]: role: expected one of",
        ),
        (lambda d: json.dumps({**d, "users": [{**d["users"][0], "name": 7}]}), "must be strings"),
    ],
    ids=[
        "not-json",
        "other-version",
        "unknown-member",
        "missing-member",
        "name-twice",
        "key-twice",
        "bad-role",
        "not-a-string",
    ],
)
def test_a_hand_edited_registry_is_refused_with_the_place(tmp_path: Path, edit, message: str) -> None:
    store = _users(tmp_path)
    store.path.write_text(edit(json.loads(store.path.read_text())))
    with pytest.raises(ConfigError, match=message):
        store.load()


def test_a_registry_others_may_write_is_refused(tmp_path: Path) -> None:
    store = _users(tmp_path)
    store.path.chmod(0o666)
    with pytest.raises(ConfigError, match=r"writable by others \(mode 666\): anyone could add a user"):
        store.load()


# --- permissions and the rendered block -------------------------------------------------------------


def test_an_agent_may_publish_only_on_its_producers_subjects_and_read_only_its_inbox() -> None:
    seed, public = new_user_seed()
    user = NatsUser(name="gpu-07", role="agent", public_key=public, producers=("trainer@gpu-07", "eval.v2/x"))
    assert permissions(user, NS) == {
        # '.' (a token separator) and the other signs a producer id may hold are escaped: no id reaches another's subject.
        "publish": {"allow": ["provault.events.trainer~40gpu-07", "provault.events.eval~2ev2~2fx"]},
        "subscribe": {"allow": [f"{inbox_prefix(public)}.>"]},
    }


def test_the_ledger_may_use_only_its_stream_and_consumer() -> None:
    user = NatsUser(name="ledger", role="ledger", public_key=new_user_seed()[1])
    perms = permissions(user, NatsSettings(stream="AUDIT"))
    publish = perms["publish"]["allow"]
    assert all(".AUDIT" in s or s == "$JS.API.INFO" for s in publish)
    assert not any(s.startswith("provault.events") for s in publish), "the ledger publishes no events"
    assert not any(w in s for s in publish for w in ("PURGE", "STREAM.DELETE", "MSG.DELETE", "$JS.API.>")), publish
    assert all(CONSUMER in s for s in publish if ".CONSUMER." in s or s.startswith("$JS.ACK")), "only its own consumer"
    assert perms["subscribe"] == {"allow": [f"_INBOX.{user.public_key}.>"]}


def test_the_rendered_block_is_valid_nats_server_config(tmp_path: Path) -> None:
    store = _users(tmp_path)
    text = render_server_config(list(store.load().values()), NS, source=str(store.path))
    assert text.isascii()
    (tmp_path / "users.conf").write_text(text)
    main = tmp_path / "server.conf"
    main.write_text('listen: "127.0.0.1:4222"\ninclude "users.conf"\n')
    res = subprocess.run(
        [str(nats_server_binary()), "-t", "-c", str(main)], capture_output=True, text=True, timeout=30, check=False
    )
    assert res.returncode == 0, res.stderr
    assert "is valid" in res.stderr + res.stdout
    for user in store.load().values():
        assert f'nkey: "{user.public_key}"' in text
    assert text.index("# ledger ledger") < text.index("# agent gpu-07"), "the ledger first, then agents by name"


def test_a_monitor_may_only_read_the_state_of_the_stream_and_its_consumers() -> None:
    user = NatsUser(name="grafana", role="monitor", public_key=new_user_seed()[1])
    publish = permissions(user, NS)["publish"]["allow"]
    assert all(".INFO" in s or ".NAMES" in s or ".LIST" in s for s in publish), publish
    assert not any(
        w in s for s in publish for w in ("MSG", "CREATE", "DELETE", "PURGE", "UPDATE", "$JS.ACK", "provault.events")
    )


def test_rendering_refuses_a_set_of_users_nobody_could_run_with(tmp_path: Path) -> None:
    with pytest.raises(NatsUserError, match="no NATS users to render"):
        render_server_config([], NS)
    agent = NatsUser(name="a", role="agent", public_key=new_user_seed()[1], producers=("p",))
    with pytest.raises(NatsUserError, match="no user has the ledger role"):
        render_server_config([agent], NS)
