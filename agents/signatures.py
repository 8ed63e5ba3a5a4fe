"""Verifying an OpenSSF ``model-signing`` signature over a model before it is registered.

``provault model register PATH --signature FILE --public-key PEM`` (or
``--certificate-chain PEM``) calls :func:`verify_model_signature` and passes
its :class:`SignatureCheck` to :func:`agents.assets.model_event`, which
records it in the ``model.registered`` event (docs/supply-chain.md, "Model
signatures"). In code::

    check = verify_model_signature("model/", "model.sig", public_key="signer.pub")
    register_model("model/", name="fraud", signature=check)

The verification is the ``model_signing`` library's own (its public
``model_signing.verifying.Config``): the signature (a Sigstore bundle holding
a DSSE envelope) must verify with the given key, or its signing certificate
must chain to the given certificates, and the files at the model's path must
be those of the signed manifest. As the library does, the signer's
``ignore_paths``, ``.git``, ``.gitattributes``, ``.github`` and ``.gitignore``
are not compared; neither is the signature file itself when it lies inside the
model directory (as the library's own command line leaves it out).

Every refusal is an :class:`~ledger.core.errors.InvalidArgument`: a plain one
when an input cannot be used (a missing file, a key that is not a PEM
elliptic-curve public key, a file that is not a model-signing signature), a
:class:`SignatureNotVerified` when the signature was checked and does not hold
(another key, a certificate outside the chain, changed model files). Sigstore
keyless signatures (Fulcio certificates, Rekor entries) are not verified here.
"""

from __future__ import annotations

import ast
import base64
import binascii
import contextlib
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ledger.core.errors import InvalidArgument, VerificationFailed, expected_found
from ledger.core.ids import content_id, is_content_id

log = logging.getLogger("provault.agent")

StrPath = str | os.PathLike[str]
INSTALL_HINT = "pip install 'provault[supply]'"
_BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
_EC_CURVES = ("secp256r1", "secp384r1", "secp521r1")


class SignatureNotVerified(InvalidArgument, VerificationFailed):
    """The model's signature was checked and does not hold: nothing may be recorded."""

    reason = "model_signature_not_verified"


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    """What a verified model signature is recorded as (the ``provault:signature*`` attributes)."""

    digest: str
    """``sha256:<hex>`` of the signature file's bytes."""
    method: Literal["key", "certificate"]
    signer: str
    """Key mode: ``sha256:<hex>`` of the public key's DER SubjectPublicKeyInfo; certificate mode: the
    signing certificate's subject and issuer (RFC 4514), ``CN=alice,O=Example (issued by CN=Example CA)``."""
    tool: str
    """``model-signing <version>``, the library that verified it."""


def verify_model_signature(
    model_path: StrPath,
    signature_path: StrPath,
    *,
    public_key: StrPath | None = None,
    certificate_chain: Iterable[StrPath] = (),
) -> SignatureCheck:
    """Verify ``signature_path`` over the model at ``model_path``; return what to record, or raise.

    ``public_key`` (key mode): the PEM elliptic-curve public key the signature
    was made with. ``certificate_chain`` (certificate mode): PEM files with the
    certificates the signing certificate must chain to, its root among them.
    Exactly one of the two is given.
    """
    chain = _chain_paths(certificate_chain)
    if public_key is not None and chain:
        raise InvalidArgument("a model signature is verified with a public key or a certificate chain, not both")
    if public_key is None and not chain:
        raise InvalidArgument(
            "a model signature needs --public-key PEM (key mode) or --certificate-chain PEM (certificate mode)",
            hint="Sigstore keyless signatures (Fulcio, Rekor) are not verified by provault (docs/supply-chain.md)",
        )
    model = _model_path(model_path)
    signature = Path(os.fspath(signature_path))
    raw = _read("signature file", signature)
    bundle, statement = _parse_bundle(raw, signature)
    material = bundle["verificationMaterial"]
    if public_key is not None:
        key_der = _public_key_der(Path(os.fspath(public_key)))
        if "publicKey" not in material:
            raise InvalidArgument(_mode_mismatch(signature, material, "key mode (--public-key)"))
    else:
        _check_certificates(chain)
        if "x509CertificateChain" not in material:
            raise InvalidArgument(_mode_mismatch(signature, material, "certificate mode (--certificate-chain)"))

    ms = _model_signing()
    try:
        config = ms.verifying.Config()
        if public_key is not None:
            config.use_elliptic_key_verifier(public_key=Path(os.fspath(public_key)))
        else:
            config.use_certificate_verifier(certificate_chain=chain)
        hashing = _hashing_config(ms, statement, model, signature)
        if hashing is not None:
            config.set_hashing_config(hashing)
        # the library reads the bytes digested above, not the file again; a signature in the pre-1.0
        # format (no key hint) makes it print a warning on stdout, which belongs to the command's output
        with (
            tempfile.TemporaryDirectory(prefix="provault-sig-") as tmp,
            contextlib.redirect_stdout(io.StringIO()) as printed,
        ):
            copy = Path(tmp) / "signature.json"
            copy.write_bytes(raw)
            config.verify(model, copy)
    except Exception as e:  # the library reports every failure as some exception; each one refuses the model
        raise _refusal(e, model, signature, public_key, chain) from e
    if text := printed.getvalue().strip():
        log.warning("model-signing: %s", text)

    if public_key is not None:
        method: Literal["key", "certificate"] = "key"
        signer = content_id(key_der)
    else:
        method, signer = "certificate", _certificate_signer(material)
    return SignatureCheck(digest=content_id(raw), method=method, signer=signer, tool=f"model-signing {_version(ms)}")


# --- the inputs ---------------------------------------------------------------------------------


def _chain_paths(certificate_chain: Iterable[StrPath] | StrPath | None) -> list[Path]:
    if certificate_chain is None:
        return []
    if isinstance(certificate_chain, str | os.PathLike):  # one file, not its characters
        certificate_chain = [certificate_chain]
    return [Path(os.fspath(p)) for p in certificate_chain]


def _model_path(model_path: StrPath) -> Path:
    text = os.fspath(model_path)
    if not isinstance(text, str) or is_content_id(text):
        raise InvalidArgument(
            expected_found(
                "model", "the model's local file or directory (the signature is checked over its files)", repr(text)
            ),
        )
    path = Path(text)
    if not path.exists():
        raise InvalidArgument(expected_found("model", "a file or directory", f"nothing at {text}"))
    return path


def _read(what: str, path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InvalidArgument(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise InvalidArgument(expected_found(what, "a file", f"a directory at {path}")) from None
    except OSError as e:
        raise InvalidArgument(f"{what} {path} cannot be read: {e.strerror or e}") from None


def _parse_bundle(raw: bytes, path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bundle and its (not yet verified) in-toto statement, or why this is not a model-signing signature."""

    def malformed(why: str) -> InvalidArgument:
        return InvalidArgument(
            f"signature file {path} is not a model-signing signature (a Sigstore bundle with a DSSE envelope): {why}"
        )

    try:
        bundle = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise malformed("it is not UTF-8 text") from None
    except json.JSONDecodeError as e:
        raise malformed(f"malformed JSON ({e})") from None
    if not isinstance(bundle, dict):
        raise malformed(f"expected a JSON object, found {type(bundle).__name__}")
    missing = [k for k in ("mediaType", "verificationMaterial", "dsseEnvelope") if k not in bundle]
    if missing:
        raise malformed(f"no {', '.join(missing)}")
    if bundle["mediaType"] != _BUNDLE_MEDIA_TYPE:
        raise malformed(expected_found("mediaType", _BUNDLE_MEDIA_TYPE, repr(bundle["mediaType"])))
    if not isinstance(bundle["verificationMaterial"], dict) or not isinstance(bundle["dsseEnvelope"], dict):
        raise malformed("verificationMaterial and dsseEnvelope must be objects")
    try:
        statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"], validate=True))
    except (KeyError, TypeError, ValueError, binascii.Error):
        raise malformed("its DSSE envelope has no base64 JSON payload") from None
    if not isinstance(statement, dict):
        raise malformed("its DSSE payload is not an in-toto statement")
    return bundle, statement


def _mode_mismatch(signature: Path, material: Mapping[str, Any], asked: str) -> str:
    if "publicKey" in material:
        made = "with a key: verify it with --public-key"
    elif "x509CertificateChain" in material:
        made = "with a signing certificate: verify it with --certificate-chain"
    elif "certificate" in material or material.get("tlogEntries"):
        made = "by Sigstore keyless signing (Fulcio, Rekor), which provault does not verify (docs/supply-chain.md)"
    else:
        made = f"with verification material provault does not know ({', '.join(sorted(material)) or 'none'})"
    return f"signature file {signature} was made {made}; {asked} cannot check it"


def _public_key_der(path: Path) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415 - keeps `provault --help` fast
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    pem = _read("public key", path)
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError) as e:
        first = str(e).split(". ", 1)[0]
        raise InvalidArgument(
            expected_found(f"public key {path}", "a PEM elliptic-curve public key", f"not one ({first})")
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        kind = type(key).__name__.removeprefix("_").replace("PublicKey", "")
        raise InvalidArgument(
            expected_found(f"public key {path}", "a PEM elliptic-curve public key", f"a key of type {kind}")
        )
    if key.curve.name not in _EC_CURVES:
        raise InvalidArgument(
            expected_found(f"public key {path}", f"a key on {', '.join(_EC_CURVES)}", f"curve {key.curve.name}")
        )
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _check_certificates(chain: list[Path]) -> None:
    from cryptography import x509  # noqa: PLC0415 - keeps `provault --help` fast

    for path in chain:
        pem = _read("certificate chain", path)
        try:
            x509.load_pem_x509_certificates(pem)
        except ValueError as e:
            first = str(e).split(". ", 1)[0]
            raise InvalidArgument(
                expected_found(f"certificate chain {path}", "PEM X.509 certificates", f"none ({first})")
            ) from None


# --- the library --------------------------------------------------------------------------------


def _model_signing() -> Any:
    try:
        import model_signing  # noqa: PLC0415 - an optional dependency, loaded when a signature is verified
    except ModuleNotFoundError as e:
        if e.name in ("model_signing", None):
            raise InvalidArgument(
                "verifying a model signature needs the OpenSSF model-signing package, which is not installed",
                hint=INSTALL_HINT,
            ) from None
        raise InvalidArgument(
            f"the model-signing package cannot be imported: it needs the module {e.name!r}, which is not installed",
            hint=f"{INSTALL_HINT} (model-signing 1.1 imports pyOpenSSL without requiring it: pip install pyOpenSSL)",
        ) from None
    return model_signing


def _version(ms: Any) -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("model-signing")
    except PackageNotFoundError:
        return str(getattr(ms, "__version__", "unknown"))


def _hashing_config(ms: Any, statement: Mapping[str, Any], model: Path, signature: Path) -> Any:
    """The hashing the signer used (as the library would guess it), leaving out the signature file.

    ``None`` lets the library guess on its own (older formats, or what it
    does not know and will refuse). The manifest's own ``ignore_paths`` are
    added by the library after the signature verifies.
    """
    predicate = statement.get("predicate")
    serialization = predicate.get("serialization") if isinstance(predicate, dict) else None
    if not isinstance(serialization, dict) or serialization.get("method") not in ("files", "shards"):
        return None
    ignored: list[Path] = []
    if model.is_dir():
        with contextlib.suppress(ValueError):
            ignored.append(signature.resolve().relative_to(model.resolve()))
    symlinks = serialization.get("allow_symlinks") is True
    config = ms.hashing.Config().set_ignored_paths(paths=ignored, ignore_git_paths=True)
    if serialization["method"] == "files":
        config.use_file_serialization(hashing_algorithm=serialization.get("hash_type"), allow_symlinks=symlinks)
    else:
        config.use_shard_serialization(
            hashing_algorithm=serialization.get("hash_type"),
            shard_size=serialization.get("shard_size"),
            allow_symlinks=symlinks,
        )
    return config.set_allow_symlinks(symlinks)


def _certificate_signer(material: Mapping[str, Any]) -> str:
    from cryptography import x509  # noqa: PLC0415 - keeps `provault --help` fast

    der = base64.b64decode(material["x509CertificateChain"]["certificates"][0]["rawBytes"])
    cert = x509.load_der_x509_certificate(der)
    return f"{cert.subject.rfc4514_string()} (issued by {cert.issuer.rfc4514_string()})"


_HASH_MISMATCH = re.compile(r"Hash mismatch for '(.*)': Expected ")
_FILES = re.compile(r"(Extra files found|Missing files) in model '.*?': (.*)", re.DOTALL)


def _refusal(
    e: Exception, model: Path, signature: Path, public_key: StrPath | None, chain: list[Path]
) -> InvalidArgument:
    """The library's exception as provault's refusal, saying what did not hold."""
    text = str(e)
    name = type(e).__name__
    if text.startswith("Key mismatch"):
        return SignatureNotVerified(
            f"signature file {signature} was made with another key than {public_key}",
            hint="the signature names the signer's key by its hash; pass that signer's public key",
        )
    if name == "InvalidSignature":
        return SignatureNotVerified(f"signature file {signature} does not verify with the public key {public_key}")
    if name == "X509StoreContextError":
        return SignatureNotVerified(
            f"the signing certificate in {signature} does not chain to the certificate chain "
            f"{', '.join(map(str, chain))}: {text}"
        )
    if text.startswith("Signature mismatch: "):
        return SignatureNotVerified(f"the model at {model} differs from the signed one: {_manifest_diff(text, model)}")
    if text.startswith("Cannot use '"):
        return InvalidArgument(f"the model at {model} cannot be hashed: {text}")
    if isinstance(e, ValueError):
        return SignatureNotVerified(f"signature file {signature} does not verify: {text}")
    return SignatureNotVerified(f"signature file {signature} could not be verified by model-signing: {name}: {text}")


def _manifest_diff(text: str, model: Path) -> str:
    """The library's ``Signature mismatch: [...]`` as ``changed since signing: weights.bin; ...``."""
    try:
        items = ast.literal_eval(text.removeprefix("Signature mismatch: "))
    except (ValueError, SyntaxError):
        return text
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        return text
    changed, other = [], []
    for item in items:
        if m := _HASH_MISMATCH.match(item):
            changed.append(model.name if m.group(1) == "." else m.group(1))  # "." is a one-file model
        elif m := _FILES.match(item):
            kind = "files not in the signature" if m.group(1).startswith("Extra") else "signed files missing"
            other.append(f"{kind}: {m.group(2)}")
        else:
            other.append(item)
    if changed:
        other.insert(0, f"changed since signing: {', '.join(changed)}")
    return "; ".join(other) or text


__all__ = ["SignatureCheck", "SignatureNotVerified", "verify_model_signature"]
