"""NATS users: who may publish events, who may consume them, and how they connect.

provault confines every NATS client to what its job needs (docs/security.md,
"NATS users"):

* an **agent** user may publish only on ``<subject_prefix>.<token>`` of the
  producer ids it was created for, and subscribe only to its own inbox (for
  JetStream's publish acknowledgements).  It cannot read the stream, create a
  consumer, or acknowledge (and so delete) a message of the work queue;
* the **ledger** user may use the JetStream API for its stream and its
  durable consumer only -- info, create, update, fetch, acknowledge -- and its
  own inbox.  It cannot publish events, delete or purge the stream;
* a **monitor** user (SREs, dashboards, the ``nats`` CLI) may read the
  stream's and its consumers' state and nothing else: no messages, no
  changes.

Users authenticate with NATS **nkeys**: an Ed25519 key pair whose seed stays
on the client (``nats.nkey_seed_file``, mode 0600) and whose public key is all
the server knows.  The server sends a nonce, the client signs it, so nothing
secret crosses the wire and nothing secret is in the server's config.

Inboxes are per user: a client's inbox prefix is ``_INBOX.<its public key>``
(:func:`inbox_prefix`), so a user's subscribe permission covers its own
replies and nobody else's (the shared ``_INBOX.>`` would let an agent read
the ledger's fetch replies, that is every other agent's events).

The registry (``nats.users_file``, default ``<data_dir>/auth/nats-users.json``)
holds names, roles, public keys and producer ids; ``provault nats
server-config`` renders it as a nats-server ``authorization`` block to
``include`` from the servers' config.  Once that block is in, a client
without a listed key is refused at connect.

The same seed must not sign events: producer signing keys (``provault keys``)
and NATS keys are separate, so leaking one does not give the other.
"""

from __future__ import annotations

import base64
import json
import os
import re
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import nkeys

from ledger.config import NatsSettings, Settings
from ledger.core.errors import ConfigError, InvalidEvent, ProvaultError
from ledger.core.events import check_producer_id
from ledger.filestore import exclusive, read_checked, read_registry, replace_atomically
from ledger.transport import CONSUMER, subject_for

ROLES = ("agent", "ledger", "monitor")
_FILE_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9@._:-]{0,127}")
_PUBLIC_USER_KEY = re.compile(r"U[A-Z2-7]{55}")


class NatsUserError(ProvaultError):
    reason = "nats_user_error"


# --- keys -------------------------------------------------------------------


def new_user_seed() -> tuple[str, str]:
    """A fresh NATS user key pair: (seed ``SU...``, public key ``U...``)."""
    seed = nkeys.encode_seed(os.urandom(32), nkeys.PREFIX_BYTE_USER)
    kp = nkeys.from_seed(bytearray(seed))
    try:
        return seed.decode(), kp.public_key.decode()
    finally:
        kp.wipe()


def public_key_of(seed: str, *, where: str) -> str:
    """The public key of a user seed; ConfigError naming ``where`` when it is not one."""
    if not seed.startswith("SU"):
        raise ConfigError(
            [f"{where}: expected a NATS user nkey seed (starting 'SU'), found one starting {seed[:2]!r}"],
            hint="create one with `provault nats user add NAME --role ROLE --seed-out FILE`",
        )
    try:
        raw = base64.b32decode(seed + "=" * (-len(seed) % 8))
        if nkeys.crc16_checksum(raw[:-2]) != raw[-2:]:
            raise ValueError("checksum mismatch")
        kp = nkeys.from_seed(bytearray(seed.encode()))
    except (nkeys.NkeysError, ValueError, TypeError) as e:
        why = "its checksum does not match: the file is damaged" if "checksum" in str(e) else type(e).__name__
        raise ConfigError([f"{where}: not a valid NATS nkey seed ({why})"]) from None
    try:
        return kp.public_key.decode()
    finally:
        kp.wipe()


def read_seed_file(path: str | Path, *, key: str = "nats.nkey_seed_file") -> tuple[str, str]:
    """(seed, public key) from a seed file; refused when others may read it or it holds no user seed."""
    p = Path(path).expanduser()
    try:
        st, data = read_checked(p)
        text = data.decode("ascii")
    except OSError as e:
        raise ConfigError([f"{key}: cannot read {p} ({e.strerror})"]) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{key}: {p} is not a NATS nkey seed file (it is not ASCII text)"]) from None
    if st.st_mode & 0o077:
        raise ConfigError(
            [f"{key}: {p} is readable by others (mode {st.st_mode & 0o777:o}); it holds a secret"],
            hint=f"chmod 600 {p}",
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if len(lines) != 1:
        raise ConfigError([f"{key}: {p} must hold exactly one nkey seed line, found {len(lines)}"])
    return lines[0], public_key_of(lines[0], where=f"{key} ({p})")


def inbox_prefix(public_key: str) -> str:
    """The inbox prefix of a user: its replies arrive under ``_INBOX.<public key>.``."""
    return f"_INBOX.{public_key}"


def connect_options(settings: NatsSettings) -> dict[str, Any]:
    """Extra ``nats.connect`` arguments for the configured credentials and TLS ({} for neither)."""
    opts: dict[str, Any] = {}
    if settings.nkey_seed_file:
        seed, public = read_seed_file(settings.nkey_seed_file)
        opts["nkeys_seed_str"] = seed
        opts["inbox_prefix"] = inbox_prefix(public)
    if settings.tls_ca:
        try:
            opts["tls"] = ssl.create_default_context(cafile=os.path.expanduser(settings.tls_ca))
        except (OSError, ssl.SSLError) as e:
            raise ConfigError([f"nats.tls_ca: cannot load CA certificates from {settings.tls_ca} ({e})"]) from None
        # TLS before the server says anything: otherwise a server (or someone in the middle) that
        # announces tls_required=false in INFO keeps the connection in clear despite the CA.
        # The servers need `handshake_first: true` in their tls block (docs/security.md, "NATS users").
        opts["tls_handshake_first"] = True
    return opts


def is_refusal(e: BaseException) -> bool:
    """Whether a NATS error says the server refused this user (connect) or one of its requests (permissions)."""
    text = str(e).lower()
    return "permissions violation" in text or "authorization violation" in text or "authentication" in text


def require_ledger_user(settings: Settings) -> None:
    """Outside dev mode the ledger must connect as its own NATS user: refuse to start otherwise."""
    if settings.dev_mode or settings.nats.nkey_seed_file:
        return
    raise ConfigError(
        [
            "nats.nkey_seed_file is unset: outside dev mode the ledger connects to NATS as its own user, "
            "so that no anonymous client can consume or acknowledge (delete) the events it has not recorded"
        ],
        hint="create it with `provault nats user add ledger --role ledger --seed-out FILE`, install the users with "
        '`provault nats server-config` (docs/security.md, "NATS users"); `provault up` runs a development stack without credentials',
    )


# --- the registry -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NatsUser:
    name: str
    role: str
    public_key: str
    producers: tuple[str, ...] = ()
    """Producer ids an agent user may publish for (exact ids: NATS subjects have no partial-token wildcards)."""
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "role": self.role,
            "public_key": self.public_key,
            "producers": list(self.producers),
            "created": self.created,
        }


def check_user(user: NatsUser) -> list[str]:
    """What is wrong with a user entry (empty when nothing is)."""
    p = []
    if not _NAME.fullmatch(user.name):
        p.append(
            f"name: expected letters, digits and @._:- (at most 128, not starting with a sign), found {user.name!r}"
        )
    if user.role not in ROLES:
        p.append(f"role: expected one of {', '.join(ROLES)}, found {user.role!r}")
    if not _PUBLIC_USER_KEY.fullmatch(user.public_key):
        p.append(
            f"public_key: expected a NATS user public key (U followed by 55 base32 characters), found {user.public_key[:60]!r}"
        )
    if user.role == "agent" and not user.producers:
        p.append("producers: an agent user needs at least one producer id to publish for")
    if user.role != "agent" and user.producers:
        p.append(f"producers: a {user.role} user publishes no events; it takes no producer ids")
    for pid in user.producers:
        try:
            check_producer_id(pid)  # the events' own rule: only ids an event can carry, all ASCII
        except InvalidEvent as e:
            p.append(f"producers: {e.message}")
    return p


def _user(obj: object, where: str) -> NatsUser:
    if not isinstance(obj, dict):
        raise ConfigError([f"{where}: expected an object, found {type(obj).__name__}"])
    known = {"name", "role", "public_key", "producers", "created"}
    if unknown := sorted(set(obj) - known):
        raise ConfigError([f"{where}: unknown member {unknown[0]!r}"])
    try:
        user = NatsUser(
            name=obj["name"],
            role=obj["role"],
            public_key=obj["public_key"],
            producers=tuple(obj.get("producers", ())),
            created=str(obj.get("created", "")),
        )
    except KeyError as e:
        raise ConfigError([f"{where}: missing member {e.args[0]!r}"]) from None
    if not all(isinstance(v, str) for v in (user.name, user.role, user.public_key, *user.producers)):
        raise ConfigError([f"{where}: name, role, public_key and producers must be strings"])
    if problems := check_user(user):
        raise ConfigError([f"{where}: {q}" for q in problems])
    return user


def parse_users_file(data: bytes, source: str) -> dict[str, NatsUser]:
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise ConfigError(
            [f"NATS users file {source}: {e}"], hint="fix it, or recreate it with `provault nats user add`"
        ) from None
    if not isinstance(doc, dict) or doc.get("version") != _FILE_VERSION or not isinstance(doc.get("users"), list):
        raise ConfigError([f'NATS users file {source}: expected {{"version": {_FILE_VERSION}, "users": [...]}}'])
    users = [_user(u, f"NATS users file {source}: users[{i}]") for i, u in enumerate(doc["users"])]
    by_name = {u.name: u for u in users}
    if len(by_name) != len(users):
        raise ConfigError([f"NATS users file {source}: a user name appears twice"])
    keys = {u.public_key for u in users}
    if len(keys) != len(users):
        raise ConfigError([f"NATS users file {source}: a public key appears twice (one key, one user)"])
    return by_name


def users_path(settings: Settings) -> Path:
    return (
        Path(settings.nats.users_file).expanduser()
        if settings.nats.users_file
        else settings.data_dir / "auth" / "nats-users.json"
    )


class NatsUsers:
    """The registry file, changed by ``provault nats user ...``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, NatsUser]:
        """Users by name ({} when the file does not exist); ConfigError when it is bad or others may write it."""
        data = read_registry(self.path, key="nats.users_file", what="a user")
        return {} if data is None else parse_users_file(data, str(self.path))

    def _write(self, users: Sequence[NatsUser]) -> None:
        body = json.dumps({"version": _FILE_VERSION, "users": [u.to_json() for u in users]}, indent=2) + "\n"
        replace_atomically(self.path, body)

    def add(self, *, name: str, role: str, public_key: str, producers: Sequence[str] = ()) -> NatsUser:
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        user = NatsUser(
            name=name, role=role, public_key=public_key, producers=tuple(dict.fromkeys(producers)), created=created
        )
        if problems := check_user(user):
            raise NatsUserError("; ".join(problems))
        with exclusive(self.path):
            users = self.load()
            if name in users:
                raise NatsUserError(
                    f"a NATS user named {name!r} already exists in {self.path}",
                    hint="remove it first (`provault nats user remove NAME`), or choose another name",
                )
            if any(u.public_key == public_key for u in users.values()):
                raise NatsUserError(f"public key {public_key} already belongs to another user in {self.path}")
            self._write([*users.values(), user])
        return user

    def remove(self, name: str) -> NatsUser:
        with exclusive(self.path):
            users = self.load()
            user = users.pop(name, None)
            if user is None:
                known = ", ".join(sorted(users)) or "none"
                raise NatsUserError(
                    f"no NATS user named {name!r} in {self.path} (users: {known})", hint="see `provault nats user list`"
                )
            self._write(list(users.values()))
        return user


# --- the server's view -------------------------------------------------------------


def permissions(user: NatsUser, settings: NatsSettings) -> dict[str, Any]:
    """The nats-server permissions of one user: allow lists, everything else denied."""
    own_inbox = f"{inbox_prefix(user.public_key)}.>"
    stream, api = settings.stream, "$JS.API"
    if user.role == "agent":
        publish = [subject_for(settings, p) for p in user.producers]
    elif user.role == "monitor":
        publish = [
            f"{api}.INFO",
            f"{api}.STREAM.NAMES",
            f"{api}.STREAM.LIST",
            f"{api}.STREAM.INFO.{stream}",
            f"{api}.CONSUMER.NAMES.{stream}",
            f"{api}.CONSUMER.LIST.{stream}",
            f"{api}.CONSUMER.INFO.{stream}.*",
        ]
    else:
        publish = [
            f"{api}.INFO",
            f"{api}.STREAM.INFO.{stream}",
            f"{api}.STREAM.CREATE.{stream}",
            f"{api}.STREAM.UPDATE.{stream}",
            f"{api}.CONSUMER.INFO.{stream}.{CONSUMER}",
            f"{api}.CONSUMER.CREATE.{stream}.{CONSUMER}",
            f"{api}.CONSUMER.CREATE.{stream}.{CONSUMER}.>",
            f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{CONSUMER}",
            f"{api}.CONSUMER.DELETE.{stream}.{CONSUMER}",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{CONSUMER}",
            f"$JS.ACK.{stream}.{CONSUMER}.>",
        ]
    return {"publish": {"allow": publish}, "subscribe": {"allow": [own_inbox]}}


def render_server_config(users: Sequence[NatsUser], settings: NatsSettings, *, source: str = "") -> str:
    """A nats-server config fragment (``authorization { users = [...] }``) for ``include``.

    Strings are JSON-quoted, which the nats-server config parser reads as
    plain strings (so ``$JS...`` is never taken for a variable).
    """
    if not users:
        raise NatsUserError(
            "no NATS users to render: nobody could connect",
            hint="add the ledger's user and one per agent with `provault nats user add`",
        )
    if not any(u.role == "ledger" for u in users):
        raise NatsUserError(
            "no user has the ledger role: the ledger could not consume the stream",
            hint="provault nats user add ledger --role ledger --seed-out FILE",
        )
    lines = [
        "# provault NATS users: generated by `provault nats server-config`; do not edit by hand.",
        f"# Source: {source}" if source else "# Source: (given users)",
        f"# Stream {settings.stream}, subjects {settings.subject_prefix}.<producer token>.",
        "# Include it from each server's config (include ./<this file>) and reload: nats-server --signal reload",
        "authorization {",
        "  users = [",
    ]
    for u in sorted(users, key=lambda u: (u.role != "ledger", u.name)):
        scope = f" for {', '.join(u.producers)}" if u.producers else ""
        lines.append(f"    # {u.role} {u.name}{scope}".replace("\n", " "))
        lines.append(f"    {{nkey: {json.dumps(u.public_key)}, permissions: {json.dumps(permissions(u, settings))}}}")
    lines += ["  ]", "}", ""]
    return "\n".join(lines)
