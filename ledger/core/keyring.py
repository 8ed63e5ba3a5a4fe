"""The key registry: who may sign what, as the log says.

The registry starts from the trust root (admin keys given to
``provault ledger init``) and changes only through two event kinds, both of
which only an admin key may sign:

* ``key.registered`` binds a key id to a public key, an identity, a role
  (``producer`` or ``admin``), the event kinds it may sign and the producer
  ids it may speak for (shell-style patterns, ``*`` for any);
* ``key.revoked`` ends a key.  Once the revocation is in the log, nothing more
  signed by that key is accepted; ``effective_from`` says from which event
  time its earlier entries are suspect (the impact query uses it).

Replaying the log from the trust root rebuilds the registry exactly, which is
what ``provault verify`` does.
"""

from __future__ import annotations

import base64
import binascii
import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from .errors import InvalidEvent, KeyNotPermitted, KeyRevoked, UnknownKey, expected_found
from .events import parse_time
from .keys import Ed25519Verifier, keyid_of

KEY_REGISTERED = "key.registered"
KEY_REVOKED = "key.revoked"
ADMIN_ONLY_KINDS = frozenset({KEY_REGISTERED, KEY_REVOKED})
ROLES = ("producer", "admin")
IDENTITY_TYPES = ("person", "service", "host")
_KEYID = re.compile(r"[0-9a-f]{64}")
_ROLE_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
IDENTITY_ROLES = "roles"
"""Member of a key's identity naming the duties its holder has (``ml-lead,security``), set by the admin who
registers it; approvals count for a gate policy's role only through it (docs/supply-chain.md)."""
_PATTERN = re.compile(r"[A-Za-z0-9._:/@*?-]+")


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRecord:
    keyid: str
    public_key: bytes
    role: str
    identity: Mapping[str, str]
    kinds: tuple[str, ...]
    producers: tuple[str, ...]
    registered_seq: int | None
    """Log seq of the key.registered entry; None for trust-root keys."""
    revoked_seq: int | None = None
    revoked_from: datetime | None = None
    revoked_reason: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_seq is not None

    def may_sign(self, kind: str) -> bool:
        if kind in ADMIN_ONLY_KINDS:
            return self.role == "admin"
        return self.role == "admin" or any(fnmatch.fnmatchcase(kind, p) for p in self.kinds)

    def may_speak_for(self, producer_id: str) -> bool:
        return self.role == "admin" or any(fnmatch.fnmatchcase(producer_id, p) for p in self.producers)


def identity_roles(identity: Mapping[str, str]) -> tuple[str, ...]:
    """The duties a key's registered identity names (its ``roles`` member, comma-separated); () when none."""
    text = identity.get(IDENTITY_ROLES, "")
    return tuple(r for r in (part.strip() for part in text.split(",")) if r)


def check_role_names(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` as identity roles, or InvalidEvent naming the first that is not a short lowercase name."""
    out = tuple(names)
    for name in out:
        if not _ROLE_NAME.fullmatch(name):
            raise InvalidEvent(
                expected_found("role", "a lowercase name of letters, digits, '.', '_' or '-' (at most 64)", repr(name)),
                field="data.identity.roles",
            )
    return out


def root_key(public_key: bytes, name: str) -> KeyRecord:
    return KeyRecord(
        keyid=keyid_of(public_key),
        public_key=public_key,
        role="admin",
        identity={"type": "service", "name": name},
        kinds=("*",),
        producers=("*",),
        registered_seq=None,
    )


class SignedEvent(Protocol):
    """The parts of an event the registry looks at (an Event or an EventHead)."""

    @property
    def kind(self) -> str: ...

    @property
    def producer(self) -> Any: ...

    @property
    def data(self) -> Mapping[str, Any] | None: ...


# --- key event payloads -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRegistration:
    keyid: str
    public_key: bytes
    role: str
    identity: Mapping[str, str]
    kinds: tuple[str, ...]
    producers: tuple[str, ...]

    def to_data(self) -> dict[str, Any]:
        return {
            "keyid": self.keyid,
            "public_key": base64.b64encode(self.public_key).decode(),
            "role": self.role,
            "identity": dict(self.identity),
            "kinds": list(self.kinds),
            "producers": list(self.producers),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyRevocation:
    keyid: str
    effective_from: datetime
    reason: str

    def to_data(self) -> dict[str, Any]:
        from .events import format_time  # noqa: PLC0415 - keep the public import list short

        return {"keyid": self.keyid, "effective_from": format_time(self.effective_from), "reason": self.reason}


def _data(event: SignedEvent) -> Mapping[str, Any]:
    if event.data is None:
        raise InvalidEvent(f"{event.kind} event needs a `data` object", field="data")
    return event.data


def _str(data: Mapping[str, Any], name: str, where: str) -> str:
    value = data.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidEvent(
            expected_found(f"{where}.{name}", "a non-empty string", repr(value)[:80]), field=f"{where}.{name}"
        )
    return value


def _patterns(data: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = data.get(name)
    if (
        not isinstance(value, (list, tuple))
        or not value
        or not all(isinstance(p, str) and _PATTERN.fullmatch(p) for p in value)
    ):
        raise InvalidEvent(
            expected_found(f"data.{name}", "a non-empty list of patterns like 'run.*' or '*'", repr(value)[:80]),
            field=f"data.{name}",
        )
    return tuple(value)


def parse_registration(event: SignedEvent) -> KeyRegistration:
    data = _data(event)
    keyid = _str(data, "keyid", "data")
    try:
        public_key = base64.b64decode(_str(data, "public_key", "data"), validate=True)
    except (binascii.Error, ValueError):  # ValueError: non-ASCII text
        raise InvalidEvent("data.public_key: expected standard base64 of 32 bytes", field="data.public_key") from None
    if len(public_key) != 32:
        raise InvalidEvent(
            expected_found("data.public_key length", "32 bytes", f"{len(public_key)} bytes"), field="data.public_key"
        )
    if keyid_of(public_key) != keyid:
        raise InvalidEvent(
            expected_found("data.keyid", f"SHA-256 of the public key ({keyid_of(public_key)})", keyid),
            field="data.keyid",
        )
    role = _str(data, "role", "data")
    if role not in ROLES:
        raise InvalidEvent(expected_found("data.role", " or ".join(ROLES), repr(role)), field="data.role")
    identity = data.get("identity")
    if not isinstance(identity, Mapping):
        raise InvalidEvent("data.identity: expected an object with `type` and `name`", field="data.identity")
    if _str(identity, "type", "data.identity") not in IDENTITY_TYPES:
        raise InvalidEvent(
            expected_found("data.identity.type", ", ".join(IDENTITY_TYPES), repr(identity.get("type"))),
            field="data.identity.type",
        )
    _str(identity, "name", "data.identity")
    if not all(isinstance(v, str) for v in identity.values()):
        raise InvalidEvent("data.identity: every value must be a string", field="data.identity")
    check_role_names(identity_roles(identity))
    return KeyRegistration(
        keyid=keyid,
        public_key=public_key,
        role=role,
        identity=dict(identity),
        kinds=_patterns(data, "kinds"),
        producers=_patterns(data, "producers"),
    )


def parse_revocation(event: SignedEvent) -> KeyRevocation:
    data = _data(event)
    keyid = _str(data, "keyid", "data")
    if not _KEYID.fullmatch(keyid):
        raise InvalidEvent(
            expected_found("data.keyid", "64 lowercase hex digits", repr(keyid)[:80]), field="data.keyid"
        )
    try:
        effective_from = parse_time(_str(data, "effective_from", "data"))
    except InvalidEvent as e:
        raise InvalidEvent(f"data.effective_from: {e.message}", field="data.effective_from") from None
    return KeyRevocation(keyid=keyid, effective_from=effective_from, reason=_str(data, "reason", "data"))


def check_key_event(event: SignedEvent) -> None:
    """Validate the data of key events (part of the event contract for them)."""
    if event.kind == KEY_REGISTERED:
        parse_registration(event)
    elif event.kind == KEY_REVOKED:
        parse_revocation(event)


# --- the registry ---------------------------------------------------------------


class KeyRegistry:
    """Mutable registry owned by one sequencer; every change is a log entry."""

    def __init__(self, records: Iterable[KeyRecord] = ()) -> None:
        self._keys: dict[str, KeyRecord] = {r.keyid: r for r in records}

    def __len__(self) -> int:
        return len(self._keys)

    def get(self, keyid: str) -> KeyRecord | None:
        return self._keys.get(keyid)

    def records(self) -> tuple[KeyRecord, ...]:
        return tuple(self._keys.values())

    def public_keys(self) -> dict[str, bytes]:
        """keyid -> raw public key of every known key, revoked ones included.

        Revoked keys stay in the verification snapshot so a signature by one
        is refused as ``key_revoked`` (by :meth:`authorize`), not as unknown.
        """
        return {k: r.public_key for k, r in self._keys.items()}

    def verifiers(self) -> dict[str, Ed25519Verifier]:
        return {k: Ed25519Verifier(pk) for k, pk in self.public_keys().items()}

    def put(self, record: KeyRecord) -> None:
        self._keys[record.keyid] = record

    def authorize(self, keyid: str, event: SignedEvent) -> KeyRecord:
        """Raise unless ``keyid`` may sign ``event`` now; return its record."""
        rec = self._keys.get(keyid)
        if rec is None:
            raise UnknownKey(
                f"key {keyid} is not registered in this ledger", hint="register it with `provault keys register`"
            )
        if rec.revoked:
            raise KeyRevoked(
                f"key {keyid} was revoked at log seq {rec.revoked_seq} (effective from {rec.revoked_from}); "
                "nothing it signs is accepted any more",
                hint="sign with a current key",
            )
        if not rec.may_sign(event.kind):
            allowed = "admin-only kind" if event.kind in ADMIN_ONLY_KINDS else f"allowed kinds {list(rec.kinds)}"
            raise KeyNotPermitted(
                expected_found(f"kind signed by key {keyid[:16]}", allowed, repr(event.kind)),
                hint="register the key with the kinds it needs, or sign with another key",
            )
        if not rec.may_speak_for(event.producer.id):
            raise KeyNotPermitted(
                expected_found(
                    f"producer id for key {keyid[:16]}", f"one of {list(rec.producers)}", repr(event.producer.id)
                ),
                hint="register the key for this producer id, or use the producer's own key",
            )
        return rec

    def apply(self, event: SignedEvent, seq: int) -> KeyRecord | None:
        """Apply an accepted key event at log ``seq``; return the changed record."""
        if event.kind == KEY_REGISTERED:
            reg = parse_registration(event)
            if reg.keyid in self._keys:
                raise InvalidEvent(
                    f"key {reg.keyid} is already registered",
                    field="data.keyid",
                    hint="keys are registered once; revoke and use a new key",
                )
            rec = KeyRecord(
                keyid=reg.keyid,
                public_key=reg.public_key,
                role=reg.role,
                identity=reg.identity,
                kinds=reg.kinds,
                producers=reg.producers,
                registered_seq=seq,
            )
        elif event.kind == KEY_REVOKED:
            rev = parse_revocation(event)
            old = self._keys.get(rev.keyid)
            if old is None:
                raise InvalidEvent(f"cannot revoke key {rev.keyid}: it is not registered", field="data.keyid")
            if old.revoked:
                raise InvalidEvent(
                    f"key {rev.keyid} is already revoked (log seq {old.revoked_seq})", field="data.keyid"
                )
            if old.registered_seq is None:
                raise InvalidEvent(
                    f"key {rev.keyid} is a trust-root key; it cannot be revoked through the log",
                    field="data.keyid",
                    hint="trust-root keys change only through `provault ledger init` on the database",
                )
            rec = replace(old, revoked_seq=seq, revoked_from=rev.effective_from, revoked_reason=rev.reason)
        else:
            return None
        self._keys[rec.keyid] = rec
        return rec

    def check_apply(self, event: SignedEvent) -> None:
        """Raise what :meth:`apply` would raise, without changing anything."""
        if event.kind not in ADMIN_ONLY_KINDS:
            return
        snapshot = dict(self._keys)
        try:
            self.apply(event, -1)
        finally:
            self._keys = snapshot
