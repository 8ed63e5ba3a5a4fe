"""One error hierarchy for provault.

Every error carries a stable machine-readable ``reason`` (used as the rejection
reason in the ledger and mapped to gRPC status codes at the edge) and a
message that says what was expected, what was found, and what to do.

Two families matter most for verification and must never be confused:

* :class:`VerificationFailed` -- the evidence was checked and it is wrong
  (bad signature, proof does not match the root).  This is a finding.
* :class:`CannotVerify` -- the evidence could not be checked (unknown key,
  unsupported algorithm).  This is a gap, not a verdict.
"""

from __future__ import annotations


class ProvaultError(Exception):
    """Base of every error provault raises on purpose."""

    reason: str = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def diagnostics(self) -> str:
        """The full text for a human: what happened and what to do."""
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def __str__(self) -> str:
        return self.diagnostics()


# --- configuration --------------------------------------------------------


class ConfigError(ProvaultError):
    """Configuration is invalid; ``problems`` lists every bad key at once."""

    reason = "config_invalid"

    def __init__(self, problems: list[str] | tuple[str, ...], *, hint: str | None = None) -> None:
        self.problems = tuple(problems)
        text = "invalid configuration:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text, hint=hint)


# --- decoding (the bytes are not what the contract says) -----------------


class DecodeError(ProvaultError):
    """Input does not follow a wire or file format."""

    reason = "malformed"


class MalformedEnvelope(DecodeError):
    reason = "malformed_envelope"


class UnsupportedPayloadType(MalformedEnvelope):
    reason = "unsupported_payload_type"


class InvalidEvent(DecodeError):
    """The signed payload violates the event contract (docs/events.md)."""

    reason = "invalid_event"

    def __init__(self, message: str, *, field: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.field = field


class InvalidProvDocument(InvalidEvent):
    reason = "invalid_prov"


class InvalidIdentifier(DecodeError):
    """A UUIDv7 event id or a ``sha256:<hex>`` content id is not well formed."""

    reason = "invalid_identifier"


class MalformedCheckpoint(DecodeError):
    reason = "malformed_checkpoint"


class MalformedProof(DecodeError):
    reason = "malformed_proof"


class InvalidArgument(ProvaultError, ValueError):
    """A caller asked for something that cannot exist (e.g. a proof for index >= size)."""

    reason = "invalid_argument"


# --- verification ---------------------------------------------------------


class VerificationError(ProvaultError):
    """Base of everything a verifier raises."""

    reason = "verification_error"


class VerificationFailed(VerificationError):
    """The evidence was checked and does not hold."""

    reason = "verification_failed"


class SignatureInvalid(VerificationFailed):
    reason = "bad_signature"


class ProofInvalid(VerificationFailed):
    reason = "bad_proof"


class CannotVerify(VerificationError):
    """The evidence could not be checked at all (not the same as wrong)."""

    reason = "cannot_verify"


class UnknownKey(CannotVerify):
    reason = "unknown_key"


class KeyNotPermitted(VerificationFailed):
    """A known key signed something it is not allowed to sign."""

    reason = "key_not_permitted"


class KeyRevoked(VerificationFailed):
    reason = "key_revoked"


# --- key material ---------------------------------------------------------


class KeyMaterialError(ProvaultError):
    """A key file is missing, unreadable, of the wrong type or too exposed."""

    reason = "key_material"


class InsecureKeyFile(KeyMaterialError):
    reason = "key_file_insecure"


# --- infrastructure (raised by adapters, never by the pure core) ----------


class StorageUnavailable(ProvaultError):
    reason = "storage_unavailable"


class LedgerCorrupted(ProvaultError):
    """Stored ledger data is missing or inconsistent: damage, not an outage."""

    reason = "ledger_corrupted"


class TransportUnavailable(ProvaultError):
    reason = "transport_unavailable"


class ServerStartError(ProvaultError):
    """An embedded or external server could not be started or reached."""

    reason = "server_start"


def expected_found(what: str, expected: object, found: object) -> str:
    """Uniform 'X: expected E, found F' phrasing used across messages."""
    return f"{what}: expected {expected}, found {found}"
