"""ledger.core.checkpoint: C2SP tlog-checkpoint and signed-note."""

from __future__ import annotations

import ast
import base64
import hashlib
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core import checkpoint as ckpt
from ledger.core.checkpoint import (
    Checkpoint,
    Note,
    NoteSignature,
    NoteVerifier,
    format_checkpoint,
    format_note,
    format_signer_key,
    format_vkey,
    key_hash,
    open_checkpoint,
    parse_checkpoint,
    parse_note,
    parse_signer_key,
    parse_vkey,
    sign_checkpoint,
    sign_note,
    verify_note,
)
from ledger.core.errors import (
    CannotVerify,
    InvalidArgument,
    KeyMaterialError,
    MalformedCheckpoint,
    SignatureInvalid,
    UnknownKey,
)
from ledger.core.keys import Ed25519Signer

# --- published examples -----------------------------------------------------
# c2sp.org/signed-note ("Verifier keys" example and the opening example) and
# c2sp.org/tlog-checkpoint (the opening example), github.com/C2SP/C2SP.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n"
    "— example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)
C2SP_POEM = (
    "Ognuno sta solo sul cuor della terra\ntrafitto da un raggio di sole:\n\ned è subito sera.\n\n"
    "— quasimodo.example/salvatore NnugSzTjtVAewIS+Z/iJhUPeFDkO/5QQ2i5ddnGITLlC+EhfLW9oJKONrMouFSQU0xMcXxj99ihAQwaqP3ZekRwNtIc=\n"
)
C2SP_CHECKPOINT = (
    "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n\n"
    "— example.com/behind-the-sofa Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5/Zhcyv2q1gGzGku9nTo+zyWE+xeMcTOAYQ8=\n"
)
# golang.org/x/mod sumdb/note/note_test.go (the reference signed-note implementation).
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
PETER_TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "— PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"


def test_c2sp_signed_note_example_verifies() -> None:
    verifier = parse_vkey(C2SP_VKEY)
    assert verifier.name == "example.com/foo" and verifier.key_hash.hex() == "530d903a"
    assert verifier.vkey() == C2SP_VKEY
    note = parse_note(C2SP_NOTE)
    assert note.text == "This is an example message.\n"
    assert verify_note(note, [verifier]) == note.signatures
    assert format_note(note) == C2SP_NOTE


def test_c2sp_note_text_keeps_inner_blank_lines() -> None:
    note = parse_note(C2SP_POEM.encode("utf-8"))
    assert note.text.endswith("\n\ned è subito sera.\n")
    assert [s.name for s in note.signatures] == ["quasimodo.example/salvatore"]
    assert format_note(note) == C2SP_POEM


def test_c2sp_checkpoint_example_parses_and_needs_its_key() -> None:
    note = parse_note(C2SP_CHECKPOINT)
    cp = parse_checkpoint(note.text)
    assert (cp.origin, cp.size, cp.extensions) == ("example.com/behind-the-sofa", 20852163, ())
    assert base64.b64encode(cp.root_hash).decode() == "CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I="
    assert format_checkpoint(cp) == note.text
    assert note.signatures[0].key_hash.hex() == "033de0ae"
    with pytest.raises(UnknownKey, match="example.com/behind-the-sofa\\+033de0ae"):
        open_checkpoint(C2SP_CHECKPOINT, [parse_vkey(C2SP_VKEY)])


def test_go_signer_key_reproduces_published_signature() -> None:
    name, signer = parse_signer_key(PETER_SKEY)
    assert name == "PeterNeumann"
    assert format_note(sign_note(PETER_TEXT, name, signer)) == PETER_TEXT + "\n" + PETER_SIG
    assert format_vkey(name, signer.public_key) == PETER_VKEY
    assert format_signer_key(name, signer) == PETER_SKEY


def test_go_note_unknown_signatures_are_ignored() -> None:
    peter, enoch = parse_vkey(PETER_VKEY), parse_vkey(ENOCH_VKEY)
    note = parse_note(PETER_TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    assert [s.name for s in verify_note(note, [peter])] == ["PeterNeumann"]
    assert [s.name for s in verify_note(note, [peter, enoch, enoch])] == ["PeterNeumann", "EnochRoot"]
    doubled = parse_note(PETER_TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG)
    assert [s.name for s in verify_note(doubled, [peter])] == ["PeterNeumann"]


def test_go_note_with_no_trusted_signature_cannot_be_verified() -> None:
    note = parse_note(PETER_TEXT + "\n" + PETER_SIG + ENOCH_SIG)
    with pytest.raises(
        UnknownKey,
        match=r"expected \['example.com/foo\+530d903a'\], found \['PeterNeumann\+c74f20a3', 'EnochRoot\+af0cfe78'\]",
    ):
        verify_note(note, [parse_vkey(C2SP_VKEY)])
    with pytest.raises(CannotVerify, match="no trusted note keys"):
        verify_note(note, [])


def test_go_note_corrupted_known_signature_rejects_whole_note() -> None:
    corrupted = PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    note = parse_note(PETER_TEXT + "\n" + ENOCH_SIG + corrupted)
    with pytest.raises(SignatureInvalid, match=r"trusted key PeterNeumann\+c74f20a3 does not verify"):
        verify_note(note, [parse_vkey(PETER_VKEY), parse_vkey(ENOCH_VKEY)])


def test_unknown_signature_with_bad_bytes_is_ignored() -> None:
    corrupted = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    note = parse_note(PETER_TEXT + "\n" + corrupted + PETER_SIG)
    assert [s.name for s in verify_note(note, [parse_vkey(PETER_VKEY)])] == ["PeterNeumann"]


# --- vkeys and signer keys ---------------------------------------------------


def _vkey_with_hash(name: str, typed_key: bytes) -> str:
    """A vkey whose hash matches its (unsupported) content, as in Go's tests."""
    digest = hashlib.sha256(name.encode() + b"\n" + typed_key).digest()[:4]
    return f"{name}+{digest.hex()}+{base64.b64encode(typed_key).decode()}"


def test_every_mangled_vkey_is_rejected() -> None:
    parse_vkey(PETER_VKEY)
    for i in range(len(PETER_VKEY) + 1):
        for j in range(i + 1, len(PETER_VKEY) + 1):
            if (i, j) != (0, len(PETER_VKEY)):
                with pytest.raises(KeyMaterialError):
                    parse_vkey(PETER_VKEY[i:j])
    for i in range(len(PETER_VKEY)):
        with pytest.raises(KeyMaterialError):
            parse_vkey(PETER_VKEY[:i] + chr(ord(PETER_VKEY[i]) + 1) + PETER_VKEY[i + 1 :])


@pytest.mark.parametrize(
    ("vkey", "fragment"),
    [
        ("PeterNeumann+c74f20a3", "<name>+<hex key hash>+<base64 key>"),
        ("PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "8 lowercase hex digits"),
        ("Peter Neumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "no spaces, '+' or control"),
        ("+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "non-empty"),
        (_vkey_with_hash("PeterNeumann", b"\x01" + bytes(31)), "33 bytes (type + 32-byte key), found 32 bytes"),
        (_vkey_with_hash("PeterNeumann", b"\x02" + bytes(32)), "0x01 (Ed25519), found 0x02"),
        ("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "0x01 (Ed25519), found 0x65"),
        ("PeterNeumann+c74f20a4+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW", "expected c74f20a3, found c74f20a4"),
        ("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq_LDE4izWy10TW", "standard base64"),
    ],
)
def test_vkey_errors_name_the_problem(vkey: str, fragment: str) -> None:
    with pytest.raises(KeyMaterialError) as info:
        parse_vkey(vkey)
    assert fragment in str(info.value)


def test_mangled_signer_keys_are_rejected_without_echoing_the_seed() -> None:
    secret = PETER_SKEY.rsplit("+", 1)[1]
    for bad in (PETER_SKEY[:-4], PETER_SKEY.replace("c74f20a3", "c74f20a4"), PETER_SKEY[8:], PETER_SKEY + "=="):
        with pytest.raises(KeyMaterialError) as info:
            parse_signer_key(bad)
        assert secret[:12] not in info.value.diagnostics()


def test_key_hash_follows_the_spec_formula() -> None:
    verifier = parse_vkey(C2SP_VKEY)
    assert key_hash("example.com/foo", verifier.verifier.public_key) == bytes.fromhex("530d903a")
    assert key_hash("example.com/fo0", verifier.verifier.public_key) != bytes.fromhex("530d903a")


# --- checkpoints: round trips --------------------------------------------------

LOG = "provault.example/log"
ROOT = bytes(range(32))
SIGNER = Ed25519Signer.from_seed(bytes(range(100, 132)))
LOG_KEY = NoteVerifier(name=LOG, verifier=SIGNER.verifier())
WITNESS = Ed25519Signer.from_seed(bytes(range(200, 232)))
WITNESS_KEY = NoteVerifier(name="witness.example/w1", verifier=WITNESS.verifier())
CP = Checkpoint(origin=LOG, size=12345, root_hash=ROOT, extensions=("ext one",))

LINE = st.text(st.characters(blacklist_categories=("Cs",), min_codepoint=0x20), min_size=1, max_size=30)
NAME = st.text(
    st.characters(blacklist_categories=("Cs", "Zs", "Zl", "Zp", "Cc"), blacklist_characters="+"),
    min_size=1,
    max_size=20,
)
NAME = NAME.filter(lambda s: not any(c.isspace() for c in s))


@settings(max_examples=150)
@given(LINE, st.integers(0, 2**64 - 1), st.binary(min_size=32, max_size=32), st.lists(LINE, max_size=3))
def test_checkpoint_round_trip(origin: str, size: int, root: bytes, extensions: list[str]) -> None:
    cp = Checkpoint(origin=origin, size=size, root_hash=root, extensions=tuple(extensions))
    assert parse_checkpoint(format_checkpoint(cp)) == cp


@settings(max_examples=100)
@given(
    st.lists(LINE | st.just(""), min_size=1, max_size=5),
    st.lists(
        st.tuples(NAME, st.binary(min_size=4, max_size=4), st.binary(min_size=1, max_size=80)), min_size=1, max_size=4
    ),
)
def test_note_round_trip(lines: list[str], sigs: list[tuple[str, bytes, bytes]]) -> None:
    signatures = tuple(NoteSignature(name=n, key_hash=h, signature=s) for n, h, s in sigs)
    note = Note(text="\n".join(lines) + "\n", signatures=signatures)
    assert parse_note(format_note(note)) == note


def test_sign_and_open_checkpoint_round_trip() -> None:
    signed = sign_checkpoint(CP, LOG, SIGNER)
    assert signed.startswith(format_checkpoint(CP) + "\n— provault.example/log ")
    assert open_checkpoint(signed, [LOG_KEY]) == CP
    assert open_checkpoint(signed.encode(), [parse_vkey(LOG_KEY.vkey())]) == CP


def test_witness_cosignature_is_kept_but_not_enough() -> None:
    log_note = parse_note(sign_checkpoint(CP, LOG, SIGNER))
    cosigned = replace(
        log_note, signatures=log_note.signatures + sign_note(log_note.text, WITNESS_KEY.name, WITNESS).signatures
    )
    text = format_note(cosigned)
    assert open_checkpoint(text, [LOG_KEY, WITNESS_KEY]) == CP
    assert [s.name for s in verify_note(cosigned, [WITNESS_KEY])] == ["witness.example/w1"]
    with pytest.raises(UnknownKey, match="by the log key named after the origin: expected 'provault.example/log'"):
        open_checkpoint(text, [WITNESS_KEY])


# --- checkpoints: verification failures -----------------------------------------


def test_tampered_body_fails_verification() -> None:
    signed = sign_checkpoint(CP, LOG, SIGNER)
    for tampered in (signed.replace("12345", "12346"), signed.replace("ext one", "ext two")):
        with pytest.raises(SignatureInvalid, match="does not verify over the note text"):
            open_checkpoint(tampered, [LOG_KEY])


def test_tampered_signature_fails_verification() -> None:
    note = parse_note(sign_checkpoint(CP, LOG, SIGNER))
    sig = note.signatures[0]
    for bad in (bytes([sig.signature[0] ^ 1]) + sig.signature[1:], sig.signature[:-1]):
        forged = replace(note, signatures=(replace(sig, signature=bad),))
        with pytest.raises(SignatureInvalid):
            open_checkpoint(format_note(forged), [LOG_KEY])


def test_wrong_key_hash_or_name_is_an_unknown_key() -> None:
    note = parse_note(sign_checkpoint(CP, LOG, SIGNER))
    sig = note.signatures[0]
    for other in (replace(sig, key_hash=b"\0\0\0\0"), replace(sig, name="provault.example/other")):
        with pytest.raises(UnknownKey, match="a signature from a trusted key"):
            open_checkpoint(format_note(replace(note, signatures=(other,))), [LOG_KEY])


def test_signed_but_not_a_checkpoint_is_malformed() -> None:
    signed = format_note(sign_note(f"{LOG}\n012\n{base64.b64encode(ROOT).decode()}\n", LOG, SIGNER))
    with pytest.raises(MalformedCheckpoint, match="without leading zeros"):
        open_checkpoint(signed, [LOG_KEY])


def test_sign_checkpoint_requires_the_origin_as_key_name() -> None:
    with pytest.raises(InvalidArgument, match="expected the origin 'provault.example/log', found 'other'"):
        sign_checkpoint(CP, "other", SIGNER)


# --- malformed input: every case its own reason ---------------------------------

R = base64.b64encode(ROOT).decode()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "a final newline"),
        (f"o\n1\n{R}", "a final newline"),
        ("o\n1\n", "expected at least 3 (origin, size, root hash), found 2"),
        (f"\n1\n{R}\n", "line 1 (origin): expected a non-empty log name"),
        (f"o\n01\n{R}\n", "line 2 (tree size): expected a decimal in [0, 2^64-1] without leading zeros, found '01'"),
        (f"o\n-1\n{R}\n", "found '-1'"),
        (f"o\n+1\n{R}\n", "found '+1'"),
        (f"o\n 1\n{R}\n", "found ' 1'"),
        (f"o\n\u0661\n{R}\n", "tree size"),
        (f"o\n\n{R}\n", "found ''"),
        (f"o\n18446744073709551616\n{R}\n", "found '18446744073709551616'"),
        ("o\n1\n!!!\n", "line 3 (root hash): expected standard base64 with padding"),
        (f"o\n1\n{R.rstrip('=')}\n", "expected standard base64 with padding"),
        (f"o\n1\n{R[:-2]}B=\n", "expected canonical standard base64"),
        (f"o\n1\n{base64.b64encode(ROOT[:31]).decode()}\n", "root hash length: expected 32 bytes, found 31 bytes"),
        ("o\n1\n" + base64.urlsafe_b64encode(bytes([0xFB] * 32)).decode() + "\n", "standard base64"),
        (f"o\n1\n{R}\n\next\n", "checkpoint line 4 (extension): expected a non-empty line, found an empty line"),
        (f"o\x01\n1\n{R}\n", "no control characters but newline, found '\\x01' at 1"),
        (f"o\r\n1\n{R}\n", "found '\\r' at 1"),
    ],
)
def test_malformed_checkpoint_bodies(text: str, fragment: str) -> None:
    with pytest.raises(MalformedCheckpoint) as info:
        parse_checkpoint(text)
    assert fragment in str(info.value)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (PETER_TEXT, "no blank line"),
        (PETER_TEXT + "\n", "signed note: expected signature lines after the blank line, found none"),
        (PETER_TEXT + "\n" + PETER_SIG[:-1], "a final newline"),
        ("\x01" + PETER_TEXT + "\n" + PETER_SIG, "no control characters but newline"),
        (b"\xff" + (PETER_TEXT + "\n" + PETER_SIG).encode(), "not valid UTF-8 (byte 0)"),
        ("\udc80" + PETER_TEXT + "\n" + PETER_SIG, "not encodable as UTF-8"),
        (PETER_TEXT + "\n" + PETER_SIG + "Unexpected line.\n", "signature line 2: expected to start with '— '"),
        (PETER_TEXT + "\n" + PETER_SIG.replace("—", "-"), "signature line 1: expected to start with '— '"),
        (PETER_TEXT + "\n— PeterNeumann\n", "expected '— <key name> <base64 signature>'"),
        (PETER_TEXT + "\n—  PeterNeumann x08g\n", "expected '— <key name> <base64 signature>'"),
        (PETER_TEXT + "\n— Peter+Neumann x08go/ZJ\n", "note key name: expected no spaces, '+' or control characters"),
        (PETER_TEXT + "\n— Bad Name x08go/ZJ\n", "(signature by Bad): expected standard base64"),
        (PETER_TEXT + "\n" + PETER_SIG[:-1] + " \n", "expected standard base64"),
        (PETER_TEXT + "\n— PeterNeumann x08gow==\n", "decoded length: expected more than 4 bytes"),
        (PETER_TEXT + "\n" + PETER_SIG * 101, "number of note signatures: expected at most 100, found 101"),
    ],
)
def test_malformed_notes(message: str | bytes, fragment: str) -> None:
    with pytest.raises(MalformedCheckpoint) as info:
        parse_note(message)
    assert fragment in str(info.value)


def test_one_hundred_signatures_are_accepted() -> None:
    note = parse_note(PETER_TEXT + "\n" + PETER_SIG * 100)
    assert len(note.signatures) == 100
    assert len(verify_note(note, [parse_vkey(PETER_VKEY)])) == 1


@pytest.mark.parametrize(
    ("build", "fragment"),
    [
        (lambda: Checkpoint(origin="", size=1, root_hash=ROOT), "checkpoint origin: expected a non-empty line"),
        (lambda: Checkpoint(origin="a\nb", size=1, root_hash=ROOT), "expected one line without control characters"),
        (
            lambda: Checkpoint(origin="o", size=-1, root_hash=ROOT),
            "tree size: expected an integer in [0, 2^64-1], found -1",
        ),
        (lambda: Checkpoint(origin="o", size=True, root_hash=ROOT), "found True"),
        (
            lambda: Checkpoint(origin="o", size=1, root_hash=ROOT.hex()),
            "root hash: expected 32 bytes, found str of length 64",
        ),
        (
            lambda: Checkpoint(origin="o", size=1, root_hash=ROOT, extensions=["x"]),
            "extensions: expected a tuple of lines, found list",
        ),
        (
            lambda: Checkpoint(origin="o", size=1, root_hash=ROOT, extensions=("",)),
            "extension line 1: expected a non-empty line",
        ),
        (lambda: Note(text="no newline", signatures=()), "signed note text ending: expected a final newline"),
        (
            lambda: NoteSignature(name="n", key_hash=b"abc", signature=b"s"),
            "key hash of signature by n: expected 4 bytes",
        ),
        (lambda: NoteSignature(name="n", key_hash=b"abcd", signature=b""), "signature by n: expected non-empty bytes"),
        (lambda: format_note(Note(text="t\n")), "signatures on a note to format: expected at least one, found none"),
        (lambda: sign_note("t", LOG, SIGNER), "text to sign ending: expected a final newline"),
        (lambda: sign_note("t\n", "a b", SIGNER), "note key name"),
    ],
)
def test_invalid_values_are_refused_at_construction(build, fragment: str) -> None:
    with pytest.raises(MalformedCheckpoint) as info:
        build()
    assert fragment in str(info.value)


def test_core_module_imports_only_stdlib_cryptography_and_core() -> None:
    tree = ast.parse(Path(ckpt.__file__).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            assert top in sys.stdlib_module_names or top in {"cryptography", "__future__"}, name
