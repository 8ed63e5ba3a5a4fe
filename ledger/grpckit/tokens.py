"""Bearer tokens for the gRPC services: their format, the file that stores their hashes, and where they may travel.

**Format.**  ``pvt_<id>_<secret>``: ``<id>`` is 12 hex digits that name the
token (in ``provault auth token list`` and in the servers' logs), ``<secret>``
is 32 random bytes in unpadded base64url.  Clients send it as gRPC metadata
``authorization: Bearer <token>``.

**Storage.**  Only ``sha256:<hex>`` of the whole token is stored, in a JSON
file (``grpc.tokens_file``, default ``<data_dir>/auth/tokens.json``, mode
0600, directory 0700) of entries ``{id, hash, role, producers, name,
created}``.  A salted slow hash would add nothing: the secret has 256 bits of
entropy, so nobody can guess it from its hash.  A token is found by its id and
checked with one constant-time comparison of the digests.  Writers take a lock
(``<file>.lock``) and replace the file atomically, so servers that re-read it
never see half a file.

**Travel.**  Without TLS a token crosses the wire in clear, which is only
allowed to and from loopback addresses (:func:`is_loopback`).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ledger.config import Settings
from ledger.core.errors import ConfigError, ProvaultError
from ledger.credentials import TOKEN_PREFIX, token_id_of
from ledger.filestore import exclusive, read_registry, replace_atomically

ROLES = ("producer", "auditor", "admin")
_FILE_VERSION = 1
_DUMMY_HASH = "sha256:" + "0" * 64


class TokenNotFound(ProvaultError):
    reason = "token_not_found"


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenEntry:
    """One stored token: never the token itself, only its hash."""

    id: str
    hash: str
    role: str
    producers: tuple[str, ...] = ()
    """Producer-id patterns (shell-style, ``*`` for any) a producer token may append for."""
    name: str = ""
    created: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "hash": self.hash,
            "role": self.role,
            "producers": list(self.producers),
            "name": self.name,
            "created": self.created,
        }


def tokens_path(settings: Settings) -> Path:
    """``grpc.tokens_file``, or ``<data_dir>/auth/tokens.json``."""
    if settings.grpc.tokens_file:
        return Path(settings.grpc.tokens_file).expanduser()
    return settings.data_dir / "auth" / "tokens.json"


def hash_token(token: str) -> str:
    return "sha256:" + hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh (id, token)."""
    token_id = secrets.token_hex(6)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii").rstrip("=")
    return token_id, f"{TOKEN_PREFIX}{token_id}_{secret}"


def match_token(entries: Mapping[str, TokenEntry], token: str) -> TokenEntry | None:
    """The entry ``token`` belongs to, compared in constant time; None when it belongs to none."""
    token_id = token_id_of(token)
    entry = entries.get(token_id) if token_id else None
    expected = entry.hash if entry else _DUMMY_HASH
    ok = hmac.compare_digest(hash_token(token).encode("ascii"), expected.encode("ascii"))
    return entry if ok and entry is not None else None


# --- the tokens file --------------------------------------------------------------------


def _entry(obj: object, where: str) -> TokenEntry:
    if not isinstance(obj, dict):
        raise ValueError(f"{where}: expected an object, found {type(obj).__name__}")
    fields = {k: obj.get(k) for k in ("id", "hash", "role", "name", "created")}
    for k in ("id", "hash", "role"):
        if not isinstance(fields[k], str) or not fields[k]:
            raise ValueError(f"{where}.{k}: expected a non-empty string, found {fields[k]!r}")
    if fields["role"] not in ROLES:
        raise ValueError(f"{where}.role: expected one of {', '.join(ROLES)}, found {fields['role']!r}")
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", fields["hash"]):
        raise ValueError(f"{where}.hash: expected sha256:<64 hex digits>, found {fields['hash'][:20]!r}")
    producers = obj.get("producers", [])
    if not isinstance(producers, list) or not all(isinstance(p, str) and p for p in producers):
        raise ValueError(f"{where}.producers: expected a list of non-empty patterns, found {producers!r}")
    return TokenEntry(
        id=fields["id"],
        hash=fields["hash"],
        role=fields["role"],
        producers=tuple(producers),
        name=str(fields["name"] or ""),
        created=str(fields["created"] or ""),
    )


def parse_tokens_file(data: bytes, source: str) -> dict[str, TokenEntry]:
    """Entries by id; ConfigError naming the file and the first problem."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("version") != _FILE_VERSION or not isinstance(doc.get("tokens"), list):
            raise ValueError(f'expected {{"version": {_FILE_VERSION}, "tokens": [...]}}')
        entries = [_entry(t, f"tokens[{i}]") for i, t in enumerate(doc["tokens"])]
    except ValueError as e:  # json.JSONDecodeError is a ValueError
        raise ConfigError(
            [f"tokens file {source}: {e}"], hint="fix or recreate it with `provault auth token create`"
        ) from None
    by_id = {e.id: e for e in entries}
    if len(by_id) != len(entries):
        raise ConfigError([f"tokens file {source}: a token id appears twice"])
    return by_id


class TokenStore:
    """The tokens file: read by the servers, changed by ``provault auth token``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def stamp(self) -> tuple[int, ...] | None:
        """What changes whenever the file is replaced or edited; None when it does not exist."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)

    def load(self) -> dict[str, TokenEntry]:
        """Entries by id ({} when the file does not exist); ConfigError when it is bad or others may write it."""
        data = read_registry(self.path, key="grpc.tokens_file", what="a token")
        return {} if data is None else parse_tokens_file(data, str(self.path))

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, TokenEntry]]:
        with exclusive(self.path):
            yield self.load()

    def _write(self, entries: Sequence[TokenEntry]) -> None:
        body = json.dumps({"version": _FILE_VERSION, "tokens": [e.to_json() for e in entries]}, indent=2) + "\n"
        replace_atomically(self.path, body)

    def create(self, *, role: str, producers: Sequence[str] = (), name: str = "") -> tuple[str, TokenEntry]:
        """Store a new token's hash; return the token (shown once, never stored) and its entry."""
        if role not in ROLES:
            raise ConfigError([f"role: expected one of {', '.join(ROLES)}, found {role!r}"])
        token_id, token = new_token()
        created = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        entry = TokenEntry(
            id=token_id, hash=hash_token(token), role=role, producers=tuple(producers), name=name, created=created
        )
        with self._locked() as entries:
            self._write([*entries.values(), entry])
        return token, entry

    def revoke(self, token_id: str) -> TokenEntry:
        """Remove a token; the servers refuse it once they see the file change."""
        with self._locked() as entries:
            entry = entries.pop(token_id, None)
            if entry is None:
                known = ", ".join(sorted(entries)) or "none"
                raise TokenNotFound(
                    f"no token with id {token_id!r} in {self.path} (ids: {known})",
                    hint="see `provault auth token list`",
                )
            self._write(list(entries.values()))
        return entry
