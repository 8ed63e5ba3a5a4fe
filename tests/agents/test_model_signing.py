"""``model register --signature``: OpenSSF model-signing signatures made with the real library, verified before recording.

Models are signed here with ``model_signing`` itself, in key mode (an EC P-256
key made with ``cryptography``) and in certificate mode (a CA and a leaf
certificate made with ``cryptography``). Refusals are checked through the
verification module and through the command, whose spool must stay empty; the
end-to-end test registers through the real CLI into a real ledger (embedded
PostgreSQL and NATS) and reads the projected node back with ``provault trace``.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import model_signing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from agents.assets import model_event
from agents.signatures import SignatureCheck, SignatureNotVerified, verify_model_signature
from ledger.cli import main
from ledger.core.errors import InvalidArgument
from ledger.core.provjson import validate_prov
from query.projector import migrate_prov
from tests.agents.test_cli_run import offline_env, spooled, stack_env
from tests.agents.test_runs import AUTHOR, ledger_events, relations, thaw
from tests.query.projected import sign_and_project
from tests.service.natskit import wait_for

TOOL = f"model-signing {version('model-signing')}"
SIGNATURE_KEYS = (
    "provault:signature",
    "provault:signatureMethod",
    "provault:signer",
    "provault:signatureVerified",
    "provault:signatureTool",
)
NOW = datetime.datetime.now(datetime.UTC)


# --- real keys, certificates and signatures -----------------------------------------------------


def write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path


def write_public(path: Path, key: Any) -> Path:
    path.write_bytes(key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return path


def fingerprint(key: ec.EllipticCurvePrivateKey) -> str:
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return "sha256:" + hashlib.sha256(der).hexdigest()


def key_usage(*, signing: bool, ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=signing,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=not signing and not ca,  # OpenSSL refuses a leaf whose key usage is empty
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def ca_certificate(name: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(key_usage(signing=False, ca=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def leaf_certificate(
    key: ec.EllipticCurvePrivateKey, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, *, signing: bool = True
) -> x509.Certificate:
    """The signing certificate: model-signing wants KeyUsage digitalSignature or ExtendedKeyUsage codeSigning.

    ``signing=False`` gives a certificate for key agreement and TLS servers only, which chains but may not sign.
    """
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                    x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
                ]
            )
        )
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(key_usage(signing=signing, ca=False), critical=True)
    )
    usage = ExtendedKeyUsageOID.CODE_SIGNING if signing else ExtendedKeyUsageOID.SERVER_AUTH
    return builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False).sign(ca_key, hashes.SHA256())


def write_cert(path: Path, cert: x509.Certificate) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def make_model(path: Path) -> Path:
    (path / "sub").mkdir(parents=True)
    (path / "weights.bin").write_bytes(bytes(range(256)) * 16)
    (path / "config.json").write_text('{"layers": 2}\n')
    (path / "sub" / "tokenizer.txt").write_text("hello world\n")
    return path


def sign_with_key(model: Path, private_key: Path, signature: Path) -> Path:
    model_signing.signing.Config().use_elliptic_key_signer(private_key=private_key).sign(model, signature)
    return signature


def sign_with_certificate(model: Path, private_key: Path, leaf: Path, chain: Path, signature: Path) -> Path:
    model_signing.signing.Config().use_certificate_signer(
        private_key=private_key, signing_certificate=leaf, certificate_chain=[chain]
    ).sign(model, signature)
    return signature


@dataclass(frozen=True)
class Material:
    """A signed model and everything around it, all files under ``root``."""

    root: Path
    model: Path
    key: ec.EllipticCurvePrivateKey
    public: Path
    other_public: Path
    key_signature: Path
    cert_signature: Path
    ca: Path
    other_ca: Path


@pytest.fixture
def material(tmp_path: Path) -> Material:
    root = tmp_path / "signing"
    root.mkdir()
    model = make_model(root / "model")
    key = ec.generate_private_key(ec.SECP256R1())
    private = write_key(root / "signer.key", key)
    ca_key, ca = ca_certificate("Example CA")
    leaf = write_cert(root / "leaf.pem", leaf_certificate(key, ca_key, ca))
    return Material(
        root=root,
        model=model,
        key=key,
        public=write_public(root / "signer.pub", key.public_key()),
        other_public=write_public(root / "other.pub", ec.generate_private_key(ec.SECP256R1()).public_key()),
        key_signature=sign_with_key(model, private, root / "model.sig"),
        cert_signature=sign_with_certificate(model, private, leaf, write_cert(root / "ca.pem", ca), root / "cert.sig"),
        ca=root / "ca.pem",
        other_ca=write_cert(root / "other-ca.pem", ca_certificate("Other CA")[1]),
    )


@pytest.fixture(autouse=True)
def _digest_cache_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setattr("agents._prov._default_cache", None)


def key_check(m: Material) -> SignatureCheck:
    return verify_model_signature(m.model, m.key_signature, public_key=m.public)


def digest(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


# --- what is recorded ---------------------------------------------------------------------------


def check_recorded(model: Path, check: SignatureCheck, expected: dict[str, Any]) -> None:
    """model_event with the check: exactly the five attributes and the signature entity added, nothing else."""
    plain = model_event(model, name="fraud", version="3", author=AUTHOR).prov
    prepared = model_event(model, name="fraud", version="3", author=AUTHOR, signature=check)
    doc = thaw(prepared.prov)
    validate_prov(doc)
    model_attrs = doc["entity"][prepared.id]
    assert {k: model_attrs[k] for k in SIGNATURE_KEYS} == expected
    assert {k: v for k, v in model_attrs.items() if k not in SIGNATURE_KEYS} == thaw(plain)["entity"][prepared.id]
    assert doc["entity"][check.digest] == {"prov:type": {"$": "provault:ModelSignature", "type": "prov:QUALIFIED_NAME"}}
    assert set(doc["entity"]) == {prepared.id, check.digest}
    assert relations(doc, "wasDerivedFrom") == [{"prov:generatedEntity": check.digest, "prov:usedEntity": prepared.id}]
    assert relations(doc, "wasAttributedTo") == relations(thaw(plain), "wasAttributedTo")


def test_key_mode_verifies_and_the_event_carries_the_signature(material: Material) -> None:
    check = key_check(material)
    assert check == SignatureCheck(
        digest=digest(material.key_signature), method="key", signer=fingerprint(material.key), tool=TOOL
    )
    check_recorded(
        material.model,
        check,
        {
            "provault:signature": digest(material.key_signature),
            "provault:signatureMethod": "key",
            "provault:signer": fingerprint(material.key),
            "provault:signatureVerified": True,
            "provault:signatureTool": TOOL,
        },
    )


def test_certificate_mode_verifies_and_names_subject_and_issuer(material: Material) -> None:
    check = verify_model_signature(material.model, material.cert_signature, certificate_chain=[material.ca])
    signer = "CN=alice,O=Example (issued by CN=Example CA)"
    assert check == SignatureCheck(
        digest=digest(material.cert_signature), method="certificate", signer=signer, tool=TOOL
    )
    check_recorded(
        material.model,
        check,
        {
            "provault:signature": digest(material.cert_signature),
            "provault:signatureMethod": "certificate",
            "provault:signer": signer,
            "provault:signatureVerified": True,
            "provault:signatureTool": TOOL,
        },
    )
    one_file = verify_model_signature(material.model, material.cert_signature, certificate_chain=str(material.ca))
    assert one_file == check, "a single path is one file, not a list of characters"


def test_what_model_signing_leaves_out_is_not_compared(material: Material) -> None:
    """The signature file inside the model directory and git metadata added after signing still verify."""
    inside = material.model / "model.sig"
    sign_with_key(material.model, write_key(material.root / "k2.key", material.key), inside)
    with pytest.raises(ValueError, match="Extra files found in model 'model': model.sig"):  # the library alone
        model_signing.verifying.Config().use_elliptic_key_verifier(public_key=material.public).verify(
            material.model, inside
        )
    (material.model / ".git").mkdir()
    (material.model / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (material.model / ".gitattributes").write_text("*.bin binary\n")
    check = verify_model_signature(material.model, inside, public_key=material.public)
    assert check.digest == digest(inside) and check.signer == fingerprint(material.key)
    (material.model / "notes.txt").write_text("not signed\n")
    with pytest.raises(SignatureNotVerified, match="files not in the signature: notes.txt"):
        verify_model_signature(material.model, inside, public_key=material.public)


def test_a_single_file_model_verifies(material: Material) -> None:
    weights = material.model / "weights.bin"
    sig = sign_with_key(weights, write_key(material.root / "k3.key", material.key), material.root / "file.sig")
    assert verify_model_signature(weights, sig, public_key=material.public).method == "key"
    weights.write_bytes(b"other")
    with pytest.raises(SignatureNotVerified, match="changed since signing: weights.bin"):
        verify_model_signature(weights, sig, public_key=material.public)


# --- every refusal: its class, its message, nothing emitted -------------------------------------


@dataclass(frozen=True)
class Inputs:
    model: Path | str
    signature: Path
    public_key: Path | None = None
    chain: tuple[Path, ...] = ()

    def kwargs(self) -> dict[str, Any]:
        return {"public_key": self.public_key, "certificate_chain": self.chain}

    def argv(self) -> list[str]:
        argv = ["model", "register", str(self.model), "--name", "fraud", "--signature", str(self.signature)]
        if self.public_key is not None:
            argv += ["--public-key", str(self.public_key)]
        for c in self.chain:
            argv += ["--certificate-chain", str(c)]
        return argv


def key_inputs(m: Material) -> Inputs:
    return Inputs(model=m.model, signature=m.key_signature, public_key=m.public)


def cert_inputs(m: Material) -> Inputs:
    return Inputs(model=m.model, signature=m.cert_signature, chain=(m.ca,))


def _write(path: Path, content: bytes | str) -> Path:
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _forged(m: Material) -> Inputs:
    """The signature bytes of another model (same key) put into this bundle: the key hint still matches."""
    other = make_model(m.root / "other-model")
    (other / "weights.bin").write_bytes(b"different weights")
    other_sig = sign_with_key(other, write_key(m.root / "k4.key", m.key), m.root / "other.sig")
    bundle = json.loads(m.key_signature.read_text())
    bundle["dsseEnvelope"]["signatures"] = json.loads(other_sig.read_text())["dsseEnvelope"]["signatures"]
    return replace(key_inputs(m), signature=_write(m.root / "forged.sig", json.dumps(bundle)))


def _no_signing_usage(m: Material) -> Inputs:
    key = ec.generate_private_key(ec.SECP256R1())
    ca_key, ca = ca_certificate("Example CA")
    leaf = write_cert(m.root / "no-usage-leaf.pem", leaf_certificate(key, ca_key, ca, signing=False))
    chain = write_cert(m.root / "no-usage-ca.pem", ca)
    sig = sign_with_certificate(m.model, write_key(m.root / "k5.key", key), leaf, chain, m.root / "no-usage.sig")
    return Inputs(model=m.model, signature=sig, chain=(chain,))


def _changed(m: Material, change: Callable[[Path], object]) -> Inputs:
    change(m.model)
    return key_inputs(m)


def _payload_replaced(m: Material) -> Inputs:
    bundle = json.loads(m.key_signature.read_text())
    bundle["dsseEnvelope"]["payload"] = "not base64!"
    return replace(key_inputs(m), signature=_write(m.root / "bad-payload.sig", json.dumps(bundle)))


def _keyless(m: Material) -> Inputs:
    bundle = json.loads(m.key_signature.read_text())
    bundle["verificationMaterial"] = {"certificate": {"rawBytes": "AAAA"}, "tlogEntries": [{"logIndex": "7"}]}
    return replace(key_inputs(m), signature=_write(m.root / "keyless.sig", json.dumps(bundle)))


ED25519_PEM = ed25519.Ed25519PrivateKey.generate().public_key()

REFUSALS: list[tuple[str, Callable[[Material], Inputs], type[Exception], str]] = [
    (
        "signature-missing",
        lambda m: replace(key_inputs(m), signature=m.root / "absent.sig"),
        InvalidArgument,
        "absent.sig does not exist",
    ),
    (
        "signature-unreadable",
        lambda m: replace(key_inputs(m), signature=m.root),
        InvalidArgument,
        "signature file: expected a file, found a directory at",
    ),
    (
        "signature-not-utf8",
        lambda m: replace(key_inputs(m), signature=_write(m.root / "bin.sig", b"\xff\xfe\x00")),
        InvalidArgument,
        "is not a model-signing signature (a Sigstore bundle with a DSSE envelope): it is not UTF-8 text",
    ),
    (
        "signature-malformed-json",
        lambda m: replace(key_inputs(m), signature=_write(m.root / "bad.sig", "{not json")),
        InvalidArgument,
        "is not a model-signing signature (a Sigstore bundle with a DSSE envelope): malformed JSON",
    ),
    (
        "signature-not-a-bundle",
        lambda m: replace(key_inputs(m), signature=_write(m.root / "other.json", '{"hello": 1}')),
        InvalidArgument,
        "no mediaType, verificationMaterial, dsseEnvelope",
    ),
    (
        "signature-payload-not-base64",
        _payload_replaced,
        InvalidArgument,
        "its DSSE envelope has no base64 JSON payload",
    ),
    (
        "signed-by-another-key",
        lambda m: replace(key_inputs(m), public_key=m.other_public),
        SignatureNotVerified,
        "was made with another key than",
    ),
    ("signature-bytes-forged", _forged, SignatureNotVerified, "does not verify with the public key"),
    (
        "model-file-changed",
        lambda m: _changed(m, lambda d: (d / "weights.bin").write_bytes(b"tampered")),
        SignatureNotVerified,
        "differs from the signed one: changed since signing: weights.bin",
    ),
    (
        "model-file-added",
        lambda m: _changed(m, lambda d: (d / "backdoor.py").write_text("import os\n")),
        SignatureNotVerified,
        "differs from the signed one: files not in the signature: backdoor.py",
    ),
    (
        "model-file-removed",
        lambda m: _changed(m, lambda d: (d / "sub" / "tokenizer.txt").unlink()),
        SignatureNotVerified,
        "differs from the signed one: signed files missing: sub/tokenizer.txt",
    ),
    (
        "public-key-not-pem",
        lambda m: replace(key_inputs(m), public_key=_write(m.root / "garbage.pub", "not a key\n")),
        InvalidArgument,
        "garbage.pub: expected a PEM elliptic-curve public key, found not one",
    ),
    (
        "public-key-not-ec",
        lambda m: replace(key_inputs(m), public_key=write_public(m.root / "ed.pub", ED25519_PEM)),
        InvalidArgument,
        "ed.pub: expected a PEM elliptic-curve public key, found a key of type Ed25519",
    ),
    (
        "public-key-missing",
        lambda m: replace(key_inputs(m), public_key=m.root / "absent.pub"),
        InvalidArgument,
        "public key " + "{root}/absent.pub does not exist",
    ),
    (
        "key-mode-on-a-certificate-signature",
        lambda m: replace(key_inputs(m), signature=m.cert_signature),
        InvalidArgument,
        "was made with a signing certificate: verify it with --certificate-chain; key mode (--public-key) cannot check it",
    ),
    (
        "sigstore-keyless-signature",
        _keyless,
        InvalidArgument,
        "was made by Sigstore keyless signing (Fulcio, Rekor), which provault does not verify",
    ),
    (
        "certificate-chain-not-pem",
        lambda m: replace(cert_inputs(m), chain=(m.public,)),
        InvalidArgument,
        "signer.pub: expected PEM X.509 certificates, found none",
    ),
    (
        "certificate-chain-not-matching",
        lambda m: replace(cert_inputs(m), chain=(m.other_ca,)),
        SignatureNotVerified,
        "does not chain to the certificate chain",
    ),
    (
        "certificate-not-for-signing",
        _no_signing_usage,
        SignatureNotVerified,
        "does not verify: Signing certificate cannot be used for signing",
    ),
    (
        "certificate-mode-on-a-key-signature",
        lambda m: replace(cert_inputs(m), signature=m.key_signature),
        InvalidArgument,
        "was made with a key: verify it with --public-key; certificate mode (--certificate-chain) cannot check it",
    ),
    (
        "model-missing",
        lambda m: replace(key_inputs(m), model=m.root / "no-model"),
        InvalidArgument,
        "model: expected a file or directory, found nothing at",
    ),
    (
        "model-given-as-content-id",
        lambda m: replace(key_inputs(m), model="sha256:" + "ab" * 32),
        InvalidArgument,
        "model: expected the model's local file or directory",
    ),
]


@pytest.mark.parametrize(("make", "error", "fragment"), [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_every_bad_input_is_refused_and_nothing_is_emitted(
    material: Material,
    make: Callable[[Material], Inputs],
    error: type[Exception],
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fragment = fragment.format(root=material.root)
    inputs = make(material)
    with pytest.raises(InvalidArgument) as info:
        verify_model_signature(inputs.model, inputs.signature, **inputs.kwargs())
    assert type(info.value) is error
    assert fragment in info.value.message

    for name, value in offline_env(tmp_path).items():
        monkeypatch.setenv(name, value)
    assert main(inputs.argv()) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.startswith(f"provault: error [{error.reason}]: ") and fragment in err  # type: ignore[attr-defined]
    assert spooled(tmp_path) == []
    # the control: the same command with good inputs is recorded (so the empty spool above means something)
    good = cert_inputs if inputs.chain else key_inputs
    fresh = make_model(tmp_path / "fresh" / "model")
    shutil.copy(material.key_signature if not inputs.chain else material.cert_signature, tmp_path / "fresh" / "s.sig")
    argv = replace(good(material), model=fresh, signature=tmp_path / "fresh" / "s.sig").argv()
    assert main(argv) == 0, capsys.readouterr().err
    assert [e.kind for e in spooled(tmp_path)] == ["model.registered"]


def test_the_command_line_needs_a_verifier_for_a_signature(
    material: Material, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["model", "register", str(material.model), "--name", "fraud"]
    cases = {
        "--signature needs --public-key PEM (key mode) or --certificate-chain PEM (certificate mode)": [
            "--signature",
            str(material.key_signature),
        ],
        "argument --certificate-chain: not allowed with argument --public-key": [
            "--signature",
            str(material.key_signature),
            "--public-key",
            str(material.public),
            "--certificate-chain",
            str(material.ca),
        ],
        "--public-key and --certificate-chain verify a --signature FILE, which is missing": [
            "--public-key",
            str(material.public),
        ],
    }
    for message, extra in cases.items():
        with pytest.raises(SystemExit) as info:
            main([*base, *extra])
        assert info.value.code == 2
        assert message in capsys.readouterr().err
    with pytest.raises(InvalidArgument, match="--public-key PEM .* or --certificate-chain PEM"):
        verify_model_signature(material.model, material.key_signature)
    with pytest.raises(InvalidArgument, match="not both"):
        verify_model_signature(
            material.model, material.key_signature, public_key=material.public, certificate_chain=[material.ca]
        )


def test_without_model_signing_the_error_says_what_to_install(
    material: Material, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "model_signing", None)  # as if not installed
    with pytest.raises(InvalidArgument) as info:
        key_check(material)
    assert "needs the OpenSSF model-signing package" in str(info.value)
    assert "pip install 'provault[supply]'" in str(info.value)

    for name in [n for n in sys.modules if n == "model_signing" or n.startswith("model_signing.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "OpenSSL", None)  # model-signing 1.1 imports pyOpenSSL without requiring it
    with pytest.raises(InvalidArgument) as info:
        key_check(material)
    assert "it needs the module 'OpenSSL', which is not installed" in str(info.value)
    assert "pip install pyOpenSSL" in str(info.value)


def test_model_event_takes_only_a_signature_check(material: Material) -> None:
    with pytest.raises(InvalidArgument, match="expected the SignatureCheck of verify_model_signature"):
        model_event(material.model, name="fraud", signature={"digest": "sha256:" + "00" * 32})  # type: ignore[arg-type]


# --- end to end: the real CLI, a real ledger, the projection ------------------------------------


@pytest.mark.postgres
@pytest.mark.nats
def test_a_signed_model_reaches_the_projection_and_a_tampered_one_nothing(
    tmp_path, monkeypatch, ledger, ingest, settings, nats_target, material: Material, capsys
) -> None:
    producer = "trainer@ci/signed"
    for name, value in stack_env(tmp_path, settings, nats_target, ledger, producer).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr("agents._prov._default_cache", None)
    argv = ["model", "register", str(material.model), "--name", "fraud", "--version", "3", "--json"]
    argv += ["--author", AUTHOR, "--signature", str(material.key_signature), "--public-key", str(material.public)]
    assert main(argv) == 0
    registered = json.loads(capsys.readouterr().out)
    assert registered["kind"] == "model.registered" and registered["delivered"] is True
    model_id, sig_id = registered["id"], digest(material.key_signature)
    wait_for(lambda: len(ledger_events(ledger, producer)) == 1, what="the model.registered event")

    (material.model / "weights.bin").write_bytes(b"tampered after signing")
    assert main(argv) == 1
    out, err = capsys.readouterr()
    assert out == "" and "[model_signature_not_verified]" in err and "changed since signing: weights.bin" in err
    # a later event from the same producer arrives after anything the refused command could have sent
    (tmp_path / "later.csv").write_text("a\n1\n")
    assert main(["dataset", "register", str(tmp_path / "later.csv"), "--name", "later"]) == 0
    capsys.readouterr()
    wait_for(lambda: len(ledger_events(ledger, producer)) == 2, what="the later event")
    events = ledger_events(ledger, producer)
    assert [e.kind for e in events] == ["model.registered", "dataset.registered"]
    assert [e.id for e in events][0] == registered["event"]
    assert ledger.rejections() == []

    migrate_prov(ledger.dsn)
    sign_and_project(ledger)
    monkeypatch.setenv("PROVAULT_POSTGRES_DSN", ledger.dsn)
    assert main(["trace", model_id, "--down", "--json"]) == 0
    trace = json.loads(capsys.readouterr().out)
    nodes = {n["id"]: n for n in trace["nodes"]}
    assert set(nodes) == {model_id, sig_id}
    attrs = nodes[model_id]["attributes"]
    assert {k: attrs[k] for k in SIGNATURE_KEYS} == {
        "provault:signature": sig_id,
        "provault:signatureMethod": "key",
        "provault:signer": fingerprint(material.key),
        "provault:signatureVerified": True,
        "provault:signatureTool": TOOL,
    }
    assert (nodes[sig_id]["type"], nodes[sig_id]["kind"]) == ("entity", "provault:ModelSignature")
    assert [(e["relation"], e["from"], e["to"]) for e in trace["edges"]] == [("wasDerivedFrom", sig_id, model_id)]
