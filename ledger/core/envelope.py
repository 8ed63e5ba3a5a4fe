"""DSSE v1 envelopes: sign an encoding, never an object (DESIGN contract 2).

A signature covers ``PAE(payloadType, payload)``::

    "DSSEv1" SP LEN(type) SP type SP LEN(payload) SP payload

where LEN is the ASCII decimal byte length.  The payload is carried as
base64 inside a JSON envelope; the ledger stores the envelope bytes exactly as
received, and verification runs over the payload bytes decoded from *those*
bytes.  Nothing is ever re-serialized before it is verified.

Parsing policy (:func:`parse_envelope`):

* the input is at most ``max_size`` bytes (default 1 MiB), UTF-8, one JSON
  object without duplicate member names or NaN / Infinity;
* ``payload``, ``payloadType`` and ``signatures`` are required; ``payloadType``
  must equal :data:`PAYLOAD_TYPE` unless the caller passes another (or None);
* base64 may use the standard or the URL-safe alphabet (not both in one
  value), padded or not, as DSSE allows; anything else, including non-zero
  trailing bits, is refused so one signature has exactly one encoding;
* at least one signature; each has ``keyid`` (64 lowercase hex, the SHA-256 of
  the Ed25519 public key) and a non-empty ``sig``; no keyid appears twice;
* **unknown members are ignored**, at the top level and inside signatures.
  DSSE's parsing rules require consumers to ignore unrecognized fields
  (signature ``extension`` is one), and nothing downstream reads them.

That leniency is for *reading*: entries already in a log were admitted under
it and must keep verifying.  It also means one signed payload has many valid
byte encodings, and the ledger stores and hashes the bytes it receives, so a
re-encoded copy seen in flight could be logged before the genuine envelope
(docs/security.md, D5).  The ledger therefore admits only the canonical
encoding, the bytes :func:`encode_envelope` writes (compact JSON, members in
sorted order, standard padded base64, nothing else): :func:`require_canonical`
checks it and names what differs.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import (
    CannotVerify,
    ConfigError,
    MalformedEnvelope,
    SignatureInvalid,
    UnknownKey,
    UnsupportedPayloadType,
    expected_found,
)
from .keys import Signer, Verifier
from .provjson import json_type as _json_type

PAYLOAD_TYPE = "application/vnd.provault.event+json;version=1"
MAX_ENVELOPE_SIZE = 1 << 20  # 1 MiB

_KEYID = re.compile(r"[0-9a-f]{64}")
_B64_STANDARD = re.compile(r"[A-Za-z0-9+/]*={0,2}")
_B64_URLSAFE = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding of a payload type and payload."""
    t = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(t), t, len(payload), payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    keyid: str
    sig: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.keyid, str) or not _KEYID.fullmatch(self.keyid):
            raise MalformedEnvelope(
                expected_found(
                    "signature keyid", "64 lowercase hex digits (SHA-256 of the public key)", repr(self.keyid)[:80]
                )
            )
        if not isinstance(self.sig, bytes) or not self.sig:
            raise MalformedEnvelope(
                expected_found(f"signature by {self.keyid}", "non-empty bytes", repr(self.sig)[:40])
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    payload_type: str
    payload: bytes
    signatures: tuple[Signature, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.payload_type, str) or not self.payload_type:
            raise MalformedEnvelope(expected_found("payloadType", "a non-empty string", repr(self.payload_type)[:80]))
        if not isinstance(self.payload, bytes):
            raise MalformedEnvelope(expected_found("payload", "bytes", type(self.payload).__name__))
        if not isinstance(self.signatures, tuple) or not self.signatures:
            raise MalformedEnvelope(
                expected_found("signatures", "a non-empty tuple of Signature", repr(self.signatures)[:80]),
                hint="an envelope without a signature can meet no threshold; sign it first",
            )
        seen: set[str] = set()
        for s in self.signatures:
            if not isinstance(s, Signature):
                raise MalformedEnvelope(expected_found("signatures item", "Signature", type(s).__name__))
            if s.keyid in seen:
                raise MalformedEnvelope(
                    f"signatures: keyid {s.keyid} appears more than once",
                    hint="one key signs an envelope at most once; a repeated key would count twice toward a threshold",
                )
            seen.add(s.keyid)

    def keyids(self) -> tuple[str, ...]:
        return tuple(s.keyid for s in self.signatures)


# --- signing and encoding ---------------------------------------------------


def sign_envelope(payload_type: str, payload: bytes, signers: Sequence[Signer]) -> Envelope:
    """Sign ``PAE(payload_type, payload)`` with every signer."""
    if not signers:
        raise ConfigError(["signers: expected at least one Signer, found none"])
    message = pae(payload_type, payload)
    sigs = tuple(Signature(keyid=s.keyid, sig=s.sign(message)) for s in signers)
    return Envelope(payload_type=payload_type, payload=payload, signatures=sigs)


def encode_envelope(env: Envelope) -> bytes:
    """Compact JSON, standard padded base64, members in sorted order."""
    doc = {
        "payload": base64.b64encode(env.payload).decode("ascii"),
        "payloadType": env.payload_type,
        "signatures": [{"keyid": s.keyid, "sig": base64.b64encode(s.sig).decode("ascii")} for s in env.signatures],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False, sort_keys=True).encode("utf-8")


# --- the stored form: the payload and the signatures, the envelope joined back on read --------------------

_STORED_HEAD = b'{"payload":"'
_STORED_MIDDLE = b'","payloadType":"%s","signatures":' % PAYLOAD_TYPE.encode()


def split_stored(raw: bytes) -> tuple[bytes, bytes]:
    """A canonical envelope of the ledger's payload type as it is stored: (payload bytes, signatures JSON).

    The ledger admits only canonical envelopes (:func:`require_canonical`), so
    the base64 text and the members around it carry nothing the payload and
    the signatures do not: :func:`join_stored` gives the exact bytes back.
    The payload compresses where its base64 text did not (docs/ledger.md).
    """
    refused = MalformedEnvelope("envelope: not the canonical form of a provault event envelope, cannot be stored")
    end = raw.find(b'"', len(_STORED_HEAD))
    tail = raw[end : end + len(_STORED_MIDDLE)]
    if not raw.startswith(_STORED_HEAD) or end < 0 or tail != _STORED_MIDDLE or not raw.endswith(b"}"):
        raise refused
    try:
        payload = base64.b64decode(raw[len(_STORED_HEAD) : end], validate=True)
    except binascii.Error:
        raise refused from None
    signatures = raw[end + len(_STORED_MIDDLE) : -1]
    if join_stored(payload, signatures) != raw:
        raise refused
    return payload, signatures


def join_stored(payload: bytes, signatures: bytes) -> bytes:
    """The exact envelope bytes of a stored entry (see :func:`split_stored`)."""
    return b"%s%s%s%s}" % (_STORED_HEAD, base64.b64encode(payload), _STORED_MIDDLE, signatures)


# --- parsing ------------------------------------------------------------------


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [k for k, _ in pairs]
        dup = next(k for k in names if names.count(k) > 1)
        raise MalformedEnvelope(f"envelope JSON: member name {dup!r} appears more than once")
    return obj


def _reject_constant(name: str) -> Any:
    raise MalformedEnvelope(expected_found("envelope JSON number", "a finite number", name))


def _load_json(raw: bytes, max_size: int) -> dict[str, Any]:
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise MalformedEnvelope(expected_found("envelope", "bytes", type(raw).__name__))
    if len(raw) > max_size:
        raise MalformedEnvelope(
            expected_found("envelope size", f"at most {max_size} bytes", f"{len(raw)} bytes"),
            hint="split the batch into several events",
        )
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError as e:
        raise MalformedEnvelope(f"envelope is not valid UTF-8 (byte {e.start})") from None
    try:
        doc = json.loads(text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except json.JSONDecodeError as e:
        raise MalformedEnvelope(f"envelope is not JSON: {e.msg} at line {e.lineno} column {e.colno}") from None
    except (ValueError, RecursionError) as e:  # over-long integers, absurd nesting
        raise MalformedEnvelope(f"envelope JSON cannot be decoded: {type(e).__name__}") from None
    if not isinstance(doc, dict):
        raise MalformedEnvelope(expected_found("envelope", "a JSON object", type(doc).__name__))
    return doc


def _member(obj: Mapping[str, Any], name: str, kind: type, where: str) -> Any:
    if name not in obj:
        raise MalformedEnvelope(f"{where}: required member {name!r} is missing")
    value = obj[name]
    if not isinstance(value, kind):
        raise MalformedEnvelope(expected_found(f"{where}.{name}", f"a JSON {_JSON_TYPE[kind]}", _json_type(value)))
    return value


_JSON_TYPE = {str: "string", list: "array", dict: "object"}


def decode_base64(text: str, *, what: str) -> bytes:
    """Strict DSSE base64: standard or URL-safe alphabet, padded or not, canonical."""
    try:  # fast path: canonical, padded, standard alphabet (what provault itself writes)
        data = base64.b64decode(text, validate=True)
        if base64.b64encode(data).decode("ascii") == text:
            return data
    except (binascii.Error, ValueError):
        pass
    standard = _B64_STANDARD.fullmatch(text) is not None
    if not standard and not _B64_URLSAFE.fullmatch(text):
        raise MalformedEnvelope(
            expected_found(what, "base64 (standard or URL-safe alphabet, not mixed)", "other characters")
        )
    body = text.rstrip("=")
    padding = len(text) - len(body)
    if len(body) % 4 == 1 or (padding and len(text) % 4):
        raise MalformedEnvelope(expected_found(f"{what} base64 length", "a valid base64 length and padding", len(text)))
    padded = body + "=" * (-len(body) % 4)
    try:
        data = base64.b64decode(padded, altchars=None if standard else b"-_", validate=True)
    except binascii.Error:  # pragma: no cover - the pattern checks above are stricter
        raise MalformedEnvelope(f"{what}: not decodable base64") from None
    if base64.b64encode(data).decode("ascii").rstrip("=") != body.translate(_URLSAFE_TO_STANDARD):
        raise MalformedEnvelope(
            f"{what}: base64 has non-zero trailing bits",
            hint="encode with a standard base64 encoder; each value has exactly one encoding",
        )
    return data


_URLSAFE_TO_STANDARD = str.maketrans("-_", "+/")


def _parse_signature(item: Any, index: int) -> Signature:
    where = f"signatures[{index}]"
    if not isinstance(item, dict):
        raise MalformedEnvelope(expected_found(where, "a JSON object", _json_type(item)))
    keyid = _member(item, "keyid", str, where)
    if not _KEYID.fullmatch(keyid):
        raise MalformedEnvelope(
            expected_found(
                f"{where}.keyid", "64 lowercase hex digits (SHA-256 of the raw public key)", repr(keyid[:80])
            )
        )
    sig = decode_base64(_member(item, "sig", str, where), what=f"{where}.sig")
    if not sig:
        raise MalformedEnvelope(expected_found(f"{where}.sig", "a non-empty signature", "an empty one"))
    return Signature(keyid=keyid, sig=sig)


def _parse_signatures(items: list[Any]) -> tuple[Signature, ...]:
    if not items:
        raise MalformedEnvelope(
            expected_found("signatures", "at least one signature", "an empty array"),
            hint="an envelope without a signature can meet no threshold",
        )
    sigs = tuple(_parse_signature(item, i) for i, item in enumerate(items))
    keyids = [s.keyid for s in sigs]
    for k in keyids:
        if keyids.count(k) > 1:
            raise MalformedEnvelope(f"signatures: keyid {k} appears more than once")
    return sigs


def _check_payload_type(payload_type: str, expected: str | None) -> None:
    if not payload_type:
        raise MalformedEnvelope(expected_found("payloadType", "a non-empty string", "an empty one"))
    try:
        payload_type.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedEnvelope("payloadType contains an unpaired surrogate escape") from None
    if expected is not None and payload_type != expected:
        raise UnsupportedPayloadType(
            expected_found("payloadType", repr(expected), repr(payload_type[:120])),
            hint="this ledger accepts provault events only",
        )


def parse_envelope(
    raw: bytes, *, max_size: int = MAX_ENVELOPE_SIZE, payload_type: str | None = PAYLOAD_TYPE
) -> Envelope:
    """Parse the exact received envelope bytes; raise MalformedEnvelope naming the first problem.

    ``payload_type`` is the only payload type accepted; pass None to accept any.
    """
    doc = _load_json(raw, max_size)
    ptype = _member(doc, "payloadType", str, "envelope")
    _check_payload_type(ptype, payload_type)
    payload = decode_base64(_member(doc, "payload", str, "envelope"), what="payload")
    sigs = _parse_signatures(_member(doc, "signatures", list, "envelope"))
    return Envelope(payload_type=ptype, payload=payload, signatures=sigs)


# --- canonical form: what the ledger admits ---------------------------------------------

_TOP_MEMBERS = frozenset({"payload", "payloadType", "signatures"})
_SIGNATURE_MEMBERS = frozenset({"keyid", "sig"})
_CANONICAL_BASE64 = "standard padded base64 (alphabet A-Z a-z 0-9 + /, '=' padding)"


def require_canonical(raw: bytes, env: Envelope | None = None) -> Envelope:
    """Refuse ``raw`` unless it is exactly ``encode_envelope(parse_envelope(raw))``; return the envelope.

    ``env`` is ``raw`` as :func:`parse_envelope` already parsed it (under the
    caller's size and payload-type policy); without it ``raw`` is parsed here
    with the default size limit and any payload type.  The MalformedEnvelope
    names the first thing that is not canonical: an unknown member, a base64
    value that is not standard padded base64, or else the first byte where the
    layout (whitespace, member order, string escapes) differs.
    """
    if env is None:
        env = parse_envelope(raw, payload_type=None)
    data = bytes(raw)
    canonical = encode_envelope(env)
    if data == canonical:
        return env
    raise MalformedEnvelope(
        _noncanonical(data, canonical),
        hint="send the bytes encode_envelope writes (provault's SDK always does): the ledger stores and hashes "
        "the exact envelope bytes, so it admits one encoding per signed event",
    )


def _noncanonical(raw: bytes, canonical: bytes) -> str:
    """What makes ``raw`` (parsed without error) differ from its canonical encoding, first problem first."""
    try:
        doc = json.loads(raw.decode("utf-8"))
        sigs = doc["signatures"]
        problem = _unknown_members(doc, sigs) or _base64_form(doc, sigs)
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError, MalformedEnvelope):  # pragma: no cover
        problem = None  # raw parsed already; the byte comparison below still says where it differs
    if problem:
        return problem
    at = _first_difference(raw, canonical)
    return (
        f"envelope: not in canonical form: the first difference is at byte {at} (found {raw[at : at + 16]!r}, "
        f"expected {canonical[at : at + 16]!r}); the envelope must be compact JSON (no whitespace) with the members "
        "in the canonical order (payload, payloadType, signatures; keyid, sig in each signature) and no needless "
        "string escapes"
    )


def _first_difference(a: bytes, b: bytes) -> int:
    """The first index where ``a`` and ``b`` differ (the shorter length if one is a prefix of the other).

    Binary search over slice comparisons (done in C), so a large envelope with
    a difference near its end costs O(n log n) byte compares, not a Python loop.
    """
    lo, hi = 0, min(len(a), len(b))
    while lo < hi:  # invariant: a[:lo] == b[:lo]; the first difference is in [lo, hi] (hi = no difference before it)
        mid = (lo + hi + 1) // 2
        if a[lo:mid] == b[lo:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _names(names: list[str]) -> str:
    shown = ", ".join(repr(n[:40]) for n in names[:3])
    more = f" and {len(names) - 3} more" if len(names) > 3 else ""
    return f"member{'s' if len(names) > 1 else ''} {shown}{more}"


def _unknown_members(doc: dict[str, Any], sigs: list[dict[str, Any]]) -> str | None:
    extra = sorted(set(doc) - _TOP_MEMBERS)
    if extra:
        return f"envelope: unknown {_names(extra)}; the ledger admits only payload, payloadType and signatures"
    for i, item in enumerate(sigs):
        extra = sorted(set(item) - _SIGNATURE_MEMBERS)
        if extra:
            return f"signatures[{i}]: unknown {_names(extra)}; the ledger admits only keyid and sig in a signature"
    return None


def _base64_form(doc: dict[str, Any], sigs: list[dict[str, Any]]) -> str | None:
    values = [("payload", doc["payload"])] + [(f"signatures[{i}].sig", s["sig"]) for i, s in enumerate(sigs)]
    for what, text in values:
        if base64.b64encode(decode_base64(text, what=what)).decode("ascii") == text:
            continue
        found = [
            f
            for f, bad in (
                ("the URL-safe alphabet ('-', '_')", "-" in text or "_" in text),
                ("no '=' padding", len(text) % 4 != 0),
            )
            if bad
        ]
        return expected_found(what, _CANONICAL_BASE64, " and ".join(found) or "another encoding of the same bytes")
    return None


# --- verification ---------------------------------------------------------------


def _check_threshold(threshold: object) -> int:
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise ConfigError(
            [expected_found("verification threshold", "an integer >= 1", repr(threshold))],
            hint="a threshold below 1 would accept unsigned envelopes",
        )
    return threshold


def _check_keyring(keyring: Mapping[str, Verifier], keyids: Sequence[str]) -> None:
    for k in keyids:
        if k in keyring and keyring[k].keyid != k:
            raise CannotVerify(
                f"keyring maps keyid {k} to a verifier for key {keyring[k].keyid}",
                hint="build the keyring as {verifier.keyid: verifier}",
            )


def verify_envelope(env: Envelope, keyring: Mapping[str, Verifier], *, threshold: int = 1) -> tuple[str, ...]:
    """Verify ``env`` against ``keyring``; return the keyids whose signatures verified.

    Raises UnknownKey (a CannotVerify) when fewer than ``threshold`` distinct
    signatures come from known keys, and SignatureInvalid when any known key's
    signature does not verify, even if enough others do.
    """
    # 1. Refuse a policy that cannot fail.
    _check_threshold(threshold)
    # 2. Select signatures by keys we know; the rest are ignored, not trusted.
    #    Keyids are distinct (Envelope enforces it), so each key counts once.
    _check_keyring(keyring, env.keyids())
    known = tuple(s for s in env.signatures if s.keyid in keyring)
    # 3. Not enough known keys: we could not verify, which is not "wrong".
    if len(known) < threshold:
        raise UnknownKey(
            expected_found(
                "signatures by known keys",
                f"at least {threshold}",
                f"{len(known)} (keyids in envelope: {', '.join(env.keyids())})",
            ),
            hint="register the signing keys, or check that the producer signs with its registered key",
        )
    # 4. Every known signature must verify over PAE of the received payload bytes.
    message = pae(env.payload_type, env.payload)
    for s in known:
        try:
            keyring[s.keyid].verify(s.sig, message)
        except SignatureInvalid as e:
            raise SignatureInvalid(f"signature by keyid {s.keyid} does not verify: {e.message}", hint=e.hint) from e
    # 5. All selected signatures verified and they meet the threshold.
    return tuple(s.keyid for s in known)
