"""C2SP tlog-checkpoint bodies inside C2SP signed notes, with Ed25519 keys.

A checkpoint body (c2sp.org/tlog-checkpoint)::

    <origin>\\n<tree size>\\n<base64 root hash>\\n[<extension line>\\n ...]

A signed note (c2sp.org/signed-note) is the text, one blank line, and one or
more lines ``— <key name> base64(4-byte key hash || signature)``.  The Ed25519
key hash is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]`` and a verifier
key ("vkey") is written ``<name>+<hex key hash>+base64(0x01 || public key)``.

Parsing is strict: anything off-format raises :class:`MalformedCheckpoint`
(notes here only ever carry checkpoints).  Verification follows the spec:
signatures from unknown keys are ignored, a known key whose signature fails
rejects the whole note (:class:`SignatureInvalid`), and a note no trusted key
signed cannot be verified (:class:`UnknownKey`).  :func:`open_checkpoint` also
requires a verified signature whose key name equals the origin, as
tlog-checkpoint recommends for the log's own signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from .errors import (
    CannotVerify,
    InvalidArgument,
    KeyMaterialError,
    MalformedCheckpoint,
    SignatureInvalid,
    UnknownKey,
    expected_found,
)
from .keys import SIGNATURE_SIZE, Ed25519Signer, Ed25519Verifier, Signer, Verifier, keyid_of

HASH_SIZE = 32
KEY_HASH_SIZE = 4
MAX_SIGNATURES = 100
MAX_TREE_SIZE = 2**64 - 1
ED25519_TYPE = 0x01
SIGNATURE_PREFIX = "\u2014 "  # em dash, space
_SIGNER_KEY_PREFIX = "PRIVATE+KEY+"

_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_TREE_SIZE = re.compile(r"0|[1-9][0-9]{0,19}")
_KEY_HASH_HEX = re.compile(r"[0-9a-f]{8}")


# --- checkpoint body ------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Checkpoint:
    """A log's tree head: who (origin), how many leaves (size), which root."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        _check_line(self.origin, "checkpoint origin")
        if not isinstance(self.size, int) or isinstance(self.size, bool) or not 0 <= self.size <= MAX_TREE_SIZE:
            raise MalformedCheckpoint(
                expected_found("checkpoint tree size", "an integer in [0, 2^64-1]", repr(self.size))
            )
        if not isinstance(self.root_hash, bytes) or len(self.root_hash) != HASH_SIZE:
            raise MalformedCheckpoint(
                expected_found("checkpoint root hash", f"{HASH_SIZE} bytes", _describe(self.root_hash))
            )
        if not isinstance(self.extensions, tuple):
            raise MalformedCheckpoint(
                expected_found("checkpoint extensions", "a tuple of lines", type(self.extensions).__name__)
            )
        for i, line in enumerate(self.extensions):
            _check_line(line, f"checkpoint extension line {i + 1}")


def format_checkpoint(cp: Checkpoint) -> str:
    """The checkpoint body: the exact text a log signs."""
    lines = (cp.origin, str(cp.size), base64.b64encode(cp.root_hash).decode("ascii"), *cp.extensions)
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse a checkpoint body strictly (c2sp.org/tlog-checkpoint, "Note text")."""
    _check_text(text, "checkpoint")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedCheckpoint(
            expected_found("checkpoint lines", "at least 3 (origin, size, root hash)", len(lines))
        )
    origin, size, root, *extensions = lines
    if not origin:
        raise MalformedCheckpoint(expected_found("checkpoint line 1 (origin)", "a non-empty log name", "an empty line"))
    if not _TREE_SIZE.fullmatch(size) or int(size) > MAX_TREE_SIZE:
        raise MalformedCheckpoint(
            expected_found(
                "checkpoint line 2 (tree size)", "a decimal in [0, 2^64-1] without leading zeros", repr(size)
            )
        )
    root_hash = _b64decode(root, "checkpoint line 3 (root hash)")
    if len(root_hash) != HASH_SIZE:
        raise MalformedCheckpoint(
            expected_found("checkpoint root hash length", f"{HASH_SIZE} bytes", f"{len(root_hash)} bytes")
        )
    for i, line in enumerate(extensions):
        if not line:
            raise MalformedCheckpoint(
                expected_found(f"checkpoint line {i + 4} (extension)", "a non-empty line", "an empty line")
            )
    return Checkpoint(origin=origin, size=int(size), root_hash=root_hash, extensions=tuple(extensions))


# --- signed notes ---------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteSignature:
    """One signature line: key name, 4-byte key hash, raw signature bytes."""

    name: str
    key_hash: bytes
    signature: bytes

    def __post_init__(self) -> None:
        _check_name(self.name, MalformedCheckpoint)
        if not isinstance(self.key_hash, bytes) or len(self.key_hash) != KEY_HASH_SIZE:
            raise MalformedCheckpoint(
                expected_found(f"key hash of signature by {self.name}", "4 bytes", _describe(self.key_hash))
            )
        if not isinstance(self.signature, bytes) or not self.signature:
            raise MalformedCheckpoint(
                expected_found(f"signature by {self.name}", "non-empty bytes", _describe(self.signature))
            )

    def label(self) -> str:
        """``name+keyhash``, how the spec and error messages name a key."""
        return f"{self.name}+{self.key_hash.hex()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Note:
    """Signed-note text (ends with a newline) and its signatures, in order."""

    text: str
    signatures: tuple[NoteSignature, ...] = ()

    def __post_init__(self) -> None:
        _check_text(self.text, "signed note text")
        if not isinstance(self.signatures, tuple) or not all(isinstance(s, NoteSignature) for s in self.signatures):
            raise MalformedCheckpoint(
                expected_found("note signatures", "a tuple of NoteSignature", _describe(self.signatures))
            )
        if len(self.signatures) > MAX_SIGNATURES:
            raise MalformedCheckpoint(
                expected_found("number of note signatures", f"at most {MAX_SIGNATURES}", len(self.signatures))
            )


def format_note(note: Note) -> str:
    """Text, blank line, one ``— name base64`` line per signature."""
    if not note.signatures:
        raise MalformedCheckpoint(
            expected_found("signatures on a note to format", "at least one", "none"),
            hint="sign it first with sign_note",
        )
    lines = (_format_signature_line(s) for s in note.signatures)
    return note.text + "\n" + "".join(lines)


def parse_note(message: str | bytes) -> Note:
    """Split a signed note at its last blank line and parse the signature lines."""
    if isinstance(message, bytes):
        try:
            message = message.decode("utf-8")
        except UnicodeDecodeError as e:
            raise MalformedCheckpoint(f"signed note is not valid UTF-8 (byte {e.start})") from None
    _check_text(message, "signed note")
    split = message.rfind("\n\n")
    if split < 0:
        raise MalformedCheckpoint(
            expected_found("signed note", "text, a blank line, then signature lines", "no blank line"),
            hint="a bare checkpoint body is not a signed note",
        )
    if split + 2 == len(message):
        raise MalformedCheckpoint(expected_found("signed note", "signature lines after the blank line", "none"))
    lines = message[split + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedCheckpoint(expected_found("number of note signatures", f"at most {MAX_SIGNATURES}", len(lines)))
    signatures = tuple(_parse_signature_line(line, i + 1) for i, line in enumerate(lines))
    return Note(text=message[: split + 1], signatures=signatures)


def _format_signature_line(sig: NoteSignature) -> str:
    return f"{SIGNATURE_PREFIX}{sig.name} {base64.b64encode(sig.key_hash + sig.signature).decode('ascii')}\n"


def _parse_signature_line(line: str, number: int) -> NoteSignature:
    what = f"signature line {number}"
    if not line.startswith(SIGNATURE_PREFIX):
        raise MalformedCheckpoint(
            expected_found(what, f"to start with {SIGNATURE_PREFIX!r} (em dash, space)", repr(line[:40]))
        )
    name, sep, encoded = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not sep or not name:
        raise MalformedCheckpoint(expected_found(what, "'— <key name> <base64 signature>'", repr(line[:40])))
    _check_name(name, MalformedCheckpoint)
    raw = _b64decode(encoded, f"{what} (signature by {name})")
    if len(raw) <= KEY_HASH_SIZE:
        raise MalformedCheckpoint(
            expected_found(f"{what} decoded length", "more than 4 bytes (key hash + signature)", len(raw))
        )
    return NoteSignature(name=name, key_hash=raw[:KEY_HASH_SIZE], signature=raw[KEY_HASH_SIZE:])


# --- keys -----------------------------------------------------------------


def key_hash(name: str, public_key: bytes) -> bytes:
    """Ed25519 key hash: SHA-256(name || 0x0A || 0x01 || public key)[:4]."""
    keyid_of(public_key)  # validates the length
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ED25519_TYPE]) + public_key).digest()[:KEY_HASH_SIZE]


@dataclass(frozen=True, slots=True, kw_only=True)
class NoteVerifier:
    """A trusted Ed25519 key under a note key name."""

    name: str
    verifier: Verifier

    def __post_init__(self) -> None:
        _check_name(self.name, KeyMaterialError)
        keyid_of(self.verifier.public_key)

    @property
    def key_hash(self) -> bytes:
        return key_hash(self.name, self.verifier.public_key)

    def vkey(self) -> str:
        return format_vkey(self.name, self.verifier.public_key)


def format_vkey(name: str, public_key: bytes) -> str:
    """``<name>+<hex key hash>+base64(0x01 || public key)``."""
    _check_name(name, KeyMaterialError)
    encoded = base64.b64encode(bytes([ED25519_TYPE]) + public_key).decode("ascii")
    return f"{name}+{key_hash(name, public_key).hex()}+{encoded}"


def parse_vkey(vkey: str) -> NoteVerifier:
    """Parse a verifier key string; only Ed25519 (type 0x01) is supported."""
    parts = vkey.split("+", 2) if isinstance(vkey, str) else []
    if len(parts) != 3:
        raise KeyMaterialError(expected_found("verifier key", "<name>+<hex key hash>+<base64 key>", "another shape"))
    name, hash_hex, encoded = parts
    public_key = _typed_key(name, hash_hex, encoded, "verifier key")
    return NoteVerifier(name=name, verifier=Ed25519Verifier(public_key))


def format_signer_key(name: str, signer: Ed25519Signer) -> str:
    """``PRIVATE+KEY+<name>+<hex key hash>+base64(0x01 || seed)`` -- a secret."""
    _check_name(name, KeyMaterialError)
    encoded = base64.b64encode(bytes([ED25519_TYPE]) + signer.seed()).decode("ascii")
    return f"{_SIGNER_KEY_PREFIX}{name}+{key_hash(name, signer.public_key).hex()}+{encoded}"


def parse_signer_key(skey: str) -> tuple[str, Ed25519Signer]:
    """Parse a signer key string into its key name and signer."""
    if not isinstance(skey, str) or not skey.startswith(_SIGNER_KEY_PREFIX) or skey.count("+") < 4:
        raise KeyMaterialError(
            expected_found("signer key", "PRIVATE+KEY+<name>+<hex key hash>+<base64 seed>", "another shape")
        )
    name, hash_hex, encoded = skey[len(_SIGNER_KEY_PREFIX) :].split("+", 2)
    seed = _typed_key(name, hash_hex, encoded, "signer key", derive_public=True)
    return name, Ed25519Signer.from_seed(seed)


def _typed_key(name: str, hash_hex: str, encoded: str, what: str, *, derive_public: bool = False) -> bytes:
    """Check name, 0x01 type byte, 32-byte key and key hash; return the key bytes."""
    _check_name(name, KeyMaterialError)
    if not _KEY_HASH_HEX.fullmatch(hash_hex):
        raise KeyMaterialError(
            expected_found(f"{what} hash for {name}", "8 lowercase hex digits", f"{len(hash_hex)} characters")
        )
    raw = _b64decode(encoded, f"{what} for {name}", error=KeyMaterialError, quote=not derive_public)
    if not raw or raw[0] != ED25519_TYPE:
        found = f"0x{raw[0]:02x}" if raw else "nothing"
        raise KeyMaterialError(expected_found(f"{what} type for {name}", "0x01 (Ed25519)", found))
    if len(raw) != 1 + 32:
        raise KeyMaterialError(
            expected_found(f"{what} length for {name}", "33 bytes (type + 32-byte key)", f"{len(raw)} bytes")
        )
    public = Ed25519Signer.from_seed(raw[1:]).public_key if derive_public else raw[1:]
    if key_hash(name, public).hex() != hash_hex:
        raise KeyMaterialError(
            expected_found(f"{what} hash for {name}", key_hash(name, public).hex(), hash_hex),
            hint="the name, the hash or the key was altered",
        )
    return raw[1:]


# --- signing and verifying --------------------------------------------------


def sign_note(text: str, name: str, signer: Signer) -> Note:
    """Sign ``text`` (which must end in a newline) as key ``name`` with Ed25519."""
    _check_text(text, "text to sign")
    _check_name(name, MalformedCheckpoint)
    signature = signer.sign(text.encode("utf-8"))
    if len(signature) != SIGNATURE_SIZE:
        raise KeyMaterialError(expected_found(f"signature length from signer {name}", SIGNATURE_SIZE, len(signature)))
    sig = NoteSignature(name=name, key_hash=key_hash(name, signer.public_key), signature=signature)
    return Note(text=text, signatures=(sig,))


def verify_note(note: Note, verifiers: Iterable[NoteVerifier]) -> tuple[NoteSignature, ...]:
    """Verify every signature from a trusted key; return the verified ones.

    Unknown signatures are ignored (signed-note spec).  Raises
    :class:`SignatureInvalid` when a trusted key's signature is wrong and
    :class:`UnknownKey` when no trusted key signed the note.
    """
    trusted = _index_verifiers(verifiers)
    message = note.text.encode("utf-8")
    verified: list[NoteSignature] = []
    for sig in note.signatures:
        verifier = trusted.get((sig.name, sig.key_hash))
        if verifier is None:
            continue  # 1. unknown key: ignored, as the spec requires
        _verify_one(verifier, sig, message)  # 2. known key: must verify
        if sig not in verified:
            verified.append(sig)
    if not verified:  # 3. at least one trusted signature
        raise UnknownKey(
            expected_found(
                "a signature from a trusted key",
                sorted(_label(k) for k in trusted),
                [s.label() for s in note.signatures],
            ),
            hint="add the signer's verifier key (name+hash+key) to the trusted keys",
        )
    return tuple(verified)


def _label(key: tuple[str, bytes]) -> str:
    return f"{key[0]}+{key[1].hex()}"


def _index_verifiers(verifiers: Iterable[NoteVerifier]) -> dict[tuple[str, bytes], Verifier]:
    trusted: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        if not isinstance(v, NoteVerifier):
            raise KeyMaterialError(
                expected_found("trusted note key", "a NoteVerifier (see parse_vkey)", type(v).__name__)
            )
        key = (v.name, v.key_hash)
        if key in trusted and trusted[key].public_key != v.verifier.public_key:
            raise KeyMaterialError(
                f"two different trusted keys share the name and hash {_label(key)}", hint="remove one"
            )
        trusted[key] = v.verifier
    if not trusted:
        raise CannotVerify(
            "no trusted note keys were given, so no signature can be checked", hint="pass the log's verifier key"
        )
    return trusted


def _verify_one(verifier: Verifier, sig: NoteSignature, message: bytes) -> None:
    try:
        verifier.verify(sig.signature, message)
    except SignatureInvalid as e:
        raise SignatureInvalid(
            f"signature by trusted key {sig.label()} does not verify over the note text",
            hint="the note text was altered after signing; reject the whole note",
        ) from e


# --- checkpoints as signed notes --------------------------------------------


def sign_checkpoint(cp: Checkpoint, name: str, signer: Signer) -> str:
    """The full signed-note text of ``cp`` signed by the log key ``name`` (= origin)."""
    if name != cp.origin:
        raise InvalidArgument(
            expected_found("log key name for a checkpoint", f"the origin {cp.origin!r}", repr(name)),
            hint="tlog-checkpoint: the log's key name should match the origin; open_checkpoint requires it",
        )
    return format_note(sign_note(format_checkpoint(cp), name, signer))


def open_checkpoint(note_text: str | bytes, verifiers: Iterable[NoteVerifier]) -> Checkpoint:
    """Parse a signed checkpoint, verify it, and return the checkpoint.

    Requires a verified signature from a trusted key named like the origin
    (the log's own key); verified witness cosignatures alone do not suffice.
    """
    note = parse_note(note_text)
    verified = verify_note(note, verifiers)
    cp = parse_checkpoint(note.text)
    if not any(sig.name == cp.origin for sig in verified):
        raise UnknownKey(
            expected_found(
                "a verified signature by the log key named after the origin",
                repr(cp.origin),
                [s.label() for s in verified],
            ),
            hint="trust the log's verifier key, whose name is the checkpoint origin",
        )
    return cp


# --- shared checks ----------------------------------------------------------


def _check_text(text: object, what: str) -> None:
    """UTF-8, no control characters but newline, non-empty, ends with newline."""
    if not isinstance(text, str):
        raise MalformedCheckpoint(expected_found(what, "text (str)", type(text).__name__))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise MalformedCheckpoint(f"{what} is not encodable as UTF-8 (character {e.start})") from None
    if (m := _CONTROL.search(text)) is not None:
        raise MalformedCheckpoint(
            expected_found(f"{what} characters", "no control characters but newline", f"{m.group()!r} at {m.start()}")
        )
    if not text.endswith("\n"):
        raise MalformedCheckpoint(expected_found(f"{what} ending", "a final newline", repr(text[-20:])))


def _check_line(value: object, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise MalformedCheckpoint(expected_found(what, "a non-empty line", _describe(value)))
    if "\n" in value or _CONTROL.search(value):
        raise MalformedCheckpoint(expected_found(what, "one line without control characters", repr(value[:40])))


def _check_name(name: object, error: type[Exception]) -> None:
    """Key names: non-empty, no Unicode spaces, no '+', no control characters."""
    if not isinstance(name, str) or not name:
        raise error(expected_found("note key name", "a non-empty string", _describe(name)))
    if "+" in name or any(ch.isspace() for ch in name) or _CONTROL.search(name):
        raise error(expected_found("note key name", "no spaces, '+' or control characters", repr(name[:40])))


def _b64decode(text: str, what: str, *, error: type[Exception] = MalformedCheckpoint, quote: bool = True) -> bytes:
    """Strict, canonical standard base64 (RFC 4648 section 4, with padding)."""
    shown = repr(text[:48]) if quote else f"{len(text)} characters"
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, binascii.Error):
        raise error(expected_found(what, "standard base64 with padding", shown)) from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise error(expected_found(what, "canonical standard base64", shown))
    return raw


def _describe(value: object) -> str:
    if isinstance(value, (bytes, tuple, list, str)):
        return f"{type(value).__name__} of length {len(value)}"
    return type(value).__name__
