"""Ed25519 keys, key ids, key files, and the Signer / Verifier seam.

Signing uses ``cryptography``; verification, the ledger's hot path, uses
libsodium through PyNaCl, which verifies about twice as fast and rejects
non-canonical encodings and small-order keys.

A key id is the lowercase hex SHA-256 of the raw 32-byte public key
(DESIGN contract 2).  Signing goes through the :class:`Signer` protocol and
verification through :class:`Verifier`, so a KMS or HSM backend can be added
later without touching the envelope or checkpoint code.

Key files:

* private keys: PKCS#8 PEM (``-----BEGIN PRIVATE KEY-----``) or the raw
  32-byte seed; refused when group or others can read them.
* public keys: SubjectPublicKeyInfo PEM or the raw 32 bytes.
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError

from .errors import InsecureKeyFile, KeyMaterialError, SignatureInvalid, expected_found

PUBLIC_KEY_SIZE = 32
SEED_SIZE = 32
SIGNATURE_SIZE = 64


def keyid_of(public_key: bytes) -> str:
    """Lowercase hex SHA-256 of the raw 32-byte Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE:
        raise KeyMaterialError(
            expected_found("Ed25519 public key length", f"{PUBLIC_KEY_SIZE} bytes", f"{len(public_key)} bytes")
        )
    return hashlib.sha256(public_key).hexdigest()


def pinned_keys(admin_keys: Sequence[bytes] | None) -> dict[str, bytes] | None:
    """keyid -> raw public key of the admin keys an auditor pinned (None: none were pinned).

    Used by ``provault verify --admin-key`` and ``verify-bundle --admin-key``.
    """
    if admin_keys is None:
        return None
    pins: dict[str, bytes] = {}
    for i, pk in enumerate(admin_keys):
        if not isinstance(pk, bytes) or len(pk) != PUBLIC_KEY_SIZE:
            raise KeyMaterialError(
                expected_found(f"pinned admin key [{i}]", "a raw 32-byte Ed25519 public key", repr(pk)[:40])
            )
        pins[keyid_of(pk)] = pk
    if not pins:
        raise KeyMaterialError("no admin keys were pinned", hint="pass at least one admin public key, or None")
    return pins


@runtime_checkable
class Signer(Protocol):
    """Anything that can produce Ed25519 signatures for one key."""

    @property
    def keyid(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def sign(self, message: bytes) -> bytes: ...


@runtime_checkable
class Verifier(Protocol):
    """Checks signatures for one key; returns None or raises SignatureInvalid."""

    @property
    def keyid(self) -> str: ...

    @property
    def public_key(self) -> bytes: ...

    def verify(self, signature: bytes, message: bytes) -> None: ...


@dataclass(frozen=True, slots=True)
class Ed25519Verifier:
    """Verifier for a raw 32-byte Ed25519 public key."""

    public_key: bytes

    def __post_init__(self) -> None:
        keyid_of(self.public_key)  # validates the length

    @property
    def keyid(self) -> str:
        return keyid_of(self.public_key)

    def verify(self, signature: bytes, message: bytes) -> None:
        if len(signature) != SIGNATURE_SIZE:
            raise SignatureInvalid(
                expected_found(f"Ed25519 signature length for key {self.keyid[:16]}", SIGNATURE_SIZE, len(signature))
            )
        try:
            crypto_sign_open(signature + message, self.public_key)
        except BadSignatureError:
            raise SignatureInvalid(
                f"Ed25519 signature does not verify under key {self.keyid}",
                hint="the signed bytes were altered, or a different key signed them",
            ) from None


class Ed25519Signer:
    """In-process Ed25519 signer holding the private key in memory."""

    __slots__ = ("_key", "_public", "_keyid")

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self._public = private_key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        self._keyid = keyid_of(self._public)

    @classmethod
    def generate(cls) -> Ed25519Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Signer:
        if len(seed) != SEED_SIZE:
            raise KeyMaterialError(
                expected_found("Ed25519 private seed length", f"{SEED_SIZE} bytes", f"{len(seed)} bytes")
            )
        return cls(Ed25519PrivateKey.from_private_bytes(seed))

    @property
    def keyid(self) -> str:
        return self._keyid

    @property
    def public_key(self) -> bytes:
        return self._public

    def seed(self) -> bytes:
        return self._key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )

    def sign(self, message: bytes) -> bytes:
        return self._key.sign(message)

    def verifier(self) -> Ed25519Verifier:
        return Ed25519Verifier(self._public)

    def __repr__(self) -> str:  # never print key material
        return f"Ed25519Signer(keyid={self._keyid[:16]}...)"


# --- encoding -------------------------------------------------------------


def private_key_pem(signer: Ed25519Signer) -> bytes:
    return signer._key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def public_key_pem(public_key: bytes) -> bytes:
    return Ed25519PublicKey.from_public_bytes(public_key).public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def parse_private_key(data: bytes, *, source: str = "private key") -> Ed25519Signer:
    """Parse PKCS#8 PEM or a raw 32-byte seed."""
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as e:
            raise KeyMaterialError(
                f"{source}: not a readable unencrypted PKCS#8 PEM private key ({type(e).__name__})",
                hint="write it with `provault keys new`, or give the raw 32-byte seed",
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyMaterialError(expected_found(f"{source} key type", "Ed25519", type(key).__name__))
        return Ed25519Signer(key)
    if len(data) == SEED_SIZE:
        return Ed25519Signer.from_seed(data)
    raise KeyMaterialError(
        expected_found(
            f"{source} format", "PKCS#8 PEM or a raw 32-byte Ed25519 seed", f"{len(data)} bytes of other data"
        )
    )


def parse_public_key(data: bytes, *, source: str = "public key") -> bytes:
    """Parse SubjectPublicKeyInfo PEM or raw 32 bytes; return the raw key."""
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as e:
            raise KeyMaterialError(f"{source}: not a readable PEM public key ({type(e).__name__})") from None
        if not isinstance(key, Ed25519PublicKey):
            raise KeyMaterialError(expected_found(f"{source} key type", "Ed25519", type(key).__name__))
        return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    if len(data) == PUBLIC_KEY_SIZE:
        return bytes(data)
    raise KeyMaterialError(
        expected_found(
            f"{source} format", "SubjectPublicKeyInfo PEM or raw 32 bytes", f"{len(data)} bytes of other data"
        )
    )


# --- files ----------------------------------------------------------------


def _write_atomic(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def save_private_key(
    signer: Ed25519Signer, path: str | os.PathLike[str], *, raw: bool = False, overwrite: bool = False
) -> Path:
    """Write a private key readable by its owner only (mode 0600)."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise KeyMaterialError(
            f"refusing to overwrite existing key file {p}", hint="choose another path or remove it first"
        )
    _write_atomic(p, signer.seed() if raw else private_key_pem(signer), 0o600)
    return p


def save_public_key(public_key: bytes, path: str | os.PathLike[str], *, raw: bool = False) -> Path:
    p = Path(path)
    _write_atomic(p, public_key if raw else public_key_pem(public_key), 0o644)
    return p


def load_private_key(path: str | os.PathLike[str]) -> Ed25519Signer:
    """Load a private key file; refuse it when group or others may read it."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise KeyMaterialError(
            f"private key file {p} does not exist", hint="create one with `provault keys new`"
        ) from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyMaterialError(expected_found(f"private key path {p}", "a regular file", "something else"))
    if st.st_mode & 0o077:
        raise InsecureKeyFile(
            expected_found(f"permissions of private key file {p}", "0600 or stricter", oct(st.st_mode & 0o777)),
            hint=f"run `chmod 600 {p}`",
        )
    return parse_private_key(p.read_bytes(), source=str(p))


def load_or_create_key(path: str | os.PathLike[str]) -> tuple[Ed25519Signer, bool]:
    """The private key at ``path``, or a new one written there (0600) with its public half at ``<path>.pub``.

    Returns the signer and whether it was created.
    """
    p = Path(path)
    if p.exists():
        return load_private_key(p), False
    signer = Ed25519Signer.generate()
    save_private_key(signer, p)
    save_public_key(signer.public_key, f"{p}.pub")
    return signer, True


def load_public_key(path: str | os.PathLike[str]) -> bytes:
    p = Path(path)
    try:
        data = p.read_bytes()
    except FileNotFoundError:
        raise KeyMaterialError(f"public key file {p} does not exist") from None
    except OSError as e:  # a directory, no permission, an I/O error: a clear refusal, not a traceback
        raise KeyMaterialError(f"cannot read public key file {p} ({e.strerror or type(e).__name__})") from None
    return parse_public_key(data, source=str(p))
