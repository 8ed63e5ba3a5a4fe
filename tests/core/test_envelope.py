"""DSSE v1 envelopes: PAE, strict parsing, the canonical form the ledger admits, threshold verification."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.core.admission import form_problem
from ledger.core.envelope import (
    PAYLOAD_TYPE,
    Envelope,
    Signature,
    decode_base64,
    encode_envelope,
    pae,
    parse_envelope,
    require_canonical,
    sign_envelope,
    verify_envelope,
)
from ledger.core.errors import (
    CannotVerify,
    ConfigError,
    DecodeError,
    MalformedEnvelope,
    SignatureInvalid,
    UnknownKey,
    VerificationFailed,
)
from ledger.core.keys import Ed25519Signer

ALICE = Ed25519Signer.from_seed(bytes(range(32)))
BOB = Ed25519Signer.from_seed(bytes(range(1, 33)))
KEYRING = {ALICE.keyid: ALICE.verifier(), BOB.keyid: BOB.verifier()}
PAYLOAD = b'{"hello":"world"}'


def _raw(**overrides: object) -> bytes:
    """A valid encoded envelope with some members replaced (None deletes)."""
    doc = json.loads(encode_envelope(sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE])))
    for k, v in overrides.items():
        if v is None:
            doc.pop(k)
        else:
            doc[k] = v
    return json.dumps(doc).encode()


def _sig_item(**overrides: object) -> dict[str, object]:
    item = json.loads(_raw())["signatures"][0]
    for k, v in overrides.items():
        if v is None:
            item.pop(k)
        else:
            item[k] = v
    return item


# --- PAE --------------------------------------------------------------------------


def test_pae_dsse_spec_vector() -> None:
    # secure-systems-lab/dsse protocol.md, "Test Vectors"
    assert (
        pae("http://example.com/HelloWorld", b"hello world")
        == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


def test_pae_counts_bytes_not_characters() -> None:
    assert pae("t\u00e9", "\u00e9".encode()) == b"DSSEv1 3 t\xc3\xa9 2 \xc3\xa9"
    assert pae("", b"") == b"DSSEv1 0  0 "


# --- sign / encode / parse ----------------------------------------------------------


def test_encode_is_compact_and_sorted() -> None:
    env = sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE])
    raw = encode_envelope(env)
    assert raw.startswith(b'{"payload":"' + base64.b64encode(PAYLOAD) + b'","payloadType":')
    assert b" " not in raw
    assert parse_envelope(raw) == env


@settings(max_examples=50, deadline=None)
@given(payload=st.binary(max_size=512), nsigners=st.integers(1, 2))
def test_round_trip_and_verify(payload: bytes, nsigners: int) -> None:
    signers = [ALICE, BOB][:nsigners]
    env = sign_envelope(PAYLOAD_TYPE, payload, signers)
    parsed = parse_envelope(encode_envelope(env))
    assert parsed == env
    assert verify_envelope(parsed, KEYRING, threshold=nsigners) == tuple(s.keyid for s in signers)


def test_sign_without_signers_is_refused() -> None:
    with pytest.raises(ConfigError, match="at least one Signer"):
        sign_envelope(PAYLOAD_TYPE, PAYLOAD, [])


def test_url_safe_and_unpadded_base64_parse_for_reading() -> None:
    env = sign_envelope(PAYLOAD_TYPE, b"\xfb\xff\xfe", [ALICE])
    doc = json.loads(encode_envelope(env))
    doc["payload"] = base64.urlsafe_b64encode(env.payload).decode().rstrip("=")
    doc["signatures"][0]["sig"] = base64.urlsafe_b64encode(env.signatures[0].sig).decode().rstrip("=")
    parsed = parse_envelope(json.dumps(doc).encode())
    assert parsed.payload == b"\xfb\xff\xfe"
    verify_envelope(parsed, KEYRING)


def test_unknown_members_are_ignored_when_reading_as_dsse_requires() -> None:
    doc = json.loads(_raw())
    doc["comment"] = "not signed, not read"
    doc["signatures"][0]["extension"] = {"kind": "x", "ext": {}}
    parsed = parse_envelope(json.dumps(doc).encode())
    assert verify_envelope(parsed, KEYRING) == (ALICE.keyid,)


def test_payload_type_may_be_opened_explicitly() -> None:
    raw = encode_envelope(sign_envelope("http://example.com/HelloWorld", b"hello world", [ALICE]))
    with pytest.raises(MalformedEnvelope, match="expected 'application/vnd.provault.event"):
        parse_envelope(raw)
    assert parse_envelope(raw, payload_type=None).payload == b"hello world"


# --- one test per parsing violation -------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\xff\xfe{}", "not valid UTF-8"),
        (b"{not json", "not JSON"),
        (b"[]", "expected a JSON object, found list"),
        (b'{"payload":"","payload":"","payloadType":"x","signatures":[]}', "'payload' appears more than once"),
        (b'{"payload":NaN}', "expected a finite number, found NaN"),
        (b"[" * 100_000 + b"]" * 100_000, "cannot be decoded: RecursionError"),
        (_raw(payload=None), "required member 'payload' is missing"),
        (_raw(payloadType=None), "required member 'payloadType' is missing"),
        (_raw(signatures=None), "required member 'signatures' is missing"),
        (_raw(payload=123), "envelope.payload: expected a JSON string, found number"),
        (_raw(payloadType=["x"]), "envelope.payloadType: expected a JSON string, found array"),
        (_raw(signatures={}), "envelope.signatures: expected a JSON array, found object"),
        (_raw(payloadType=""), "payloadType: expected a non-empty string"),
        (_raw(payload="aGVsbG8*"), "payload: expected base64"),
        (_raw(payload="aGVs+G8_"), "not mixed"),
        (_raw(payload="aGVsbG8=="), "base64 length"),
        (_raw(payload="a"), "base64 length"),
        (_raw(payload="eB=="), "non-zero trailing bits"),
        (_raw(payload="aGVs bG8="), "payload: expected base64"),
        (_raw(signatures=[]), "expected at least one signature, found an empty array"),
        (_raw(signatures=["x"]), "signatures[0]: expected a JSON object, found string"),
        (_raw(signatures=[_sig_item(keyid=None)]), "signatures[0]: required member 'keyid' is missing"),
        (_raw(signatures=[_sig_item(sig=None)]), "signatures[0]: required member 'sig' is missing"),
        (_raw(signatures=[_sig_item(keyid="ABCD")]), "keyid: expected 64 lowercase hex"),
        (_raw(signatures=[_sig_item(keyid="A" * 64)]), "keyid: expected 64 lowercase hex"),
        (_raw(signatures=[_sig_item(keyid=7)]), "keyid: expected a JSON string, found number"),
        (_raw(signatures=[_sig_item(sig="")]), "expected a non-empty signature"),
        (_raw(signatures=[_sig_item(sig="!!")]), "signatures[0].sig: expected base64"),
        (_raw(signatures=[_sig_item(), _sig_item()]), "appears more than once"),
    ],
)
def test_parse_rejects(raw: bytes, fragment: str) -> None:
    with pytest.raises(MalformedEnvelope) as e:
        parse_envelope(raw)
    assert fragment in str(e.value)


def test_parse_rejects_oversized_input_before_decoding() -> None:
    raw = _raw()
    with pytest.raises(MalformedEnvelope, match=f"expected at most 100 bytes, found {len(raw)} bytes"):
        parse_envelope(raw, max_size=100)
    assert parse_envelope(raw, max_size=len(raw)).payload == PAYLOAD


def test_parse_rejects_unpaired_surrogate_payload_type() -> None:
    with pytest.raises(MalformedEnvelope, match="surrogate"):
        parse_envelope(_raw(payloadType="\ud800"), payload_type=None)


@pytest.mark.parametrize(
    ("text", "data"), [("", b""), ("QQ", b"A"), ("QQ==", b"A"), ("-_8", b"\xfb\xff"), ("+/8=", b"\xfb\xff")]
)
def test_decode_base64_accepts(text: str, data: bytes) -> None:
    assert decode_base64(text, what="x") == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2048))
def test_parse_arbitrary_bytes_raises_only_decode_errors(raw: bytes) -> None:
    try:
        parse_envelope(raw, payload_type=None)
    except DecodeError:
        pass


@settings(max_examples=300, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(["payload", "payloadType", "signatures", "keyid", "sig", "x"]), inner, max_size=4
            )
        ),
        max_leaves=20,
    )
)
def test_parse_arbitrary_json_raises_only_decode_errors(doc: object) -> None:
    try:
        parse_envelope(json.dumps(doc).encode(), payload_type=None)
    except DecodeError:
        pass


# --- the canonical form: one encoding per signed event (docs/security.md D5) ------------------------

SIGNED = sign_envelope(PAYLOAD_TYPE, b'{"a":"\xfb\xff"}', [ALICE])  # base64 with '+' and '/', and '=' padding
CANONICAL = encode_envelope(SIGNED)


def _recoded(edit: object = None, **dumps: object) -> bytes:
    """CANONICAL parsed as JSON, edited, and written back (compact and sorted unless ``dumps`` says otherwise)."""
    doc = json.loads(CANONICAL)
    if callable(edit):
        edit(doc)
    options = {"separators": (",", ":"), "sort_keys": True, "ensure_ascii": False, **dumps}
    return json.dumps(doc, **options).encode()  # type: ignore[arg-type]


def _reorder(*names: str):
    def edit(doc: dict) -> None:
        items = {k: doc.pop(k) for k in names}
        doc.update(items)

    return edit


def _urlsafe(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


@settings(max_examples=50, deadline=None)
@given(payload=st.binary(max_size=512), nsigners=st.integers(1, 2))
def test_what_encode_envelope_writes_is_canonical(payload: bytes, nsigners: int) -> None:
    env = sign_envelope(PAYLOAD_TYPE, payload, [ALICE, BOB][:nsigners])
    raw = encode_envelope(env)
    assert require_canonical(raw) == env
    assert require_canonical(raw, parse_envelope(raw)) == env


def test_require_canonical_uses_the_parsed_envelope_or_parses_itself() -> None:
    assert _recoded() == CANONICAL
    with pytest.raises(MalformedEnvelope, match="not JSON"):
        require_canonical(b"{")
    other = encode_envelope(sign_envelope("text/plain", b"hi", [ALICE]))
    assert require_canonical(other).payload_type == "text/plain"  # the payload type is the caller's policy


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        pytest.param(
            _recoded(lambda d: d.update(note="hi")),
            "envelope: unknown member 'note'; the ledger admits only payload, payloadType and signatures",
            id="unknown-top-member",
        ),
        pytest.param(
            _recoded(lambda d: d.update(b=1, a=2, c=3, d=4)),
            "unknown members 'a', 'b', 'c' and 1 more",
            id="unknown-top-members",
        ),
        pytest.param(
            _recoded(lambda d: d["signatures"][0].update(extension={"kind": "x"})),
            "signatures[0]: unknown member 'extension'; the ledger admits only keyid and sig",
            id="unknown-signature-member",
        ),
        pytest.param(
            _recoded(lambda d: d.update(payload=_urlsafe(SIGNED.payload))),
            "payload: expected standard padded base64 (alphabet A-Z a-z 0-9 + /, '=' padding), found the URL-safe alphabet",
            id="url-safe-payload",
        ),
        pytest.param(
            _recoded(lambda d: d.update(payload=base64.b64encode(SIGNED.payload).decode().rstrip("="))),
            "payload: expected standard padded base64 (alphabet A-Z a-z 0-9 + /, '=' padding), found no '=' padding",
            id="unpadded-payload",
        ),
        pytest.param(
            _recoded(lambda d: d.update(payload=_urlsafe(SIGNED.payload).rstrip("="))),
            "found the URL-safe alphabet ('-', '_') and no '=' padding",
            id="url-safe-unpadded-payload",
        ),
        pytest.param(
            _recoded(lambda d: d["signatures"][0].update(sig=_urlsafe(SIGNED.signatures[0].sig).rstrip("="))),
            "signatures[0].sig: expected standard padded base64",
            id="unpadded-signature",
        ),
        pytest.param(
            _recoded(separators=(", ", ": ")),
            "envelope: not in canonical form: the first difference is at byte 11 (found b' \"",
            id="whitespace",
        ),
        pytest.param(
            CANONICAL + b"\n",
            "the first difference is at byte " + str(len(CANONICAL)) + " (found b'\\n', expected b'')",
            id="trailing-newline",
        ),
        pytest.param(
            _recoded(_reorder("signatures", "payload", "payloadType"), sort_keys=False),
            "the first difference is at byte 2 (found b'signatures",
            id="reordered-members",
        ),
        pytest.param(
            _recoded(
                lambda d: d.update(signatures=[{"sig": s["sig"], "keyid": s["keyid"]} for s in d["signatures"]]),
                sort_keys=False,
            ),
            "in the canonical order (payload, payloadType, signatures; keyid, sig in each signature)",
            id="reordered-signature-members",
        ),
        pytest.param(CANONICAL.replace(b"/", b"\\/", 1), "and no needless string escapes", id="escaped-slash"),
    ],
)
def test_require_canonical_names_what_is_not_canonical(raw: bytes, fragment: str) -> None:
    env = parse_envelope(raw)  # valid for reading: the same signed payload and signature
    assert env == SIGNED and raw != CANONICAL
    with pytest.raises(MalformedEnvelope) as e:
        require_canonical(raw, env)
    assert fragment in e.value.message
    assert "encode_envelope" in (e.value.hint or "")


def test_the_ledger_admits_the_canonical_encoding_with_one_signature() -> None:
    assert form_problem(CANONICAL, SIGNED) is None
    url_safe = _recoded(lambda d: d.update(payload=_urlsafe(SIGNED.payload)))
    assert "found the URL-safe alphabet" in (form_problem(url_safe, parse_envelope(url_safe)) or "")


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(encode_envelope(sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE, BOB])), id="two-signatures"),
        pytest.param(
            _recoded(lambda d: d["signatures"].append({"keyid": "0" * 64, "sig": "AAAA"})),
            id="added-unknown-key-signature",
        ),
    ],
)
def test_a_second_signature_is_not_admitted(raw: bytes) -> None:
    """Signatures are not bound to each other: any one could be dropped, reordered or added by a relay."""
    message = form_problem(raw, parse_envelope(raw))
    assert message is not None and message.startswith("signatures: expected exactly one signature, found 2 (keyids ")


# --- constructing envelopes directly ---------------------------------------------------------


def test_envelope_refuses_duplicate_keyids() -> None:
    sig = Signature(keyid=ALICE.keyid, sig=b"x" * 64)
    with pytest.raises(MalformedEnvelope, match="more than once"):
        Envelope(payload_type=PAYLOAD_TYPE, payload=b"", signatures=(sig, sig))


def test_envelope_refuses_no_signatures() -> None:
    with pytest.raises(MalformedEnvelope, match="non-empty tuple"):
        Envelope(payload_type=PAYLOAD_TYPE, payload=b"", signatures=())


# --- verification --------------------------------------------------------------------------------


def _tampered(raw: bytes, *, payload: bytes) -> bytes:
    doc = json.loads(raw)
    doc["payload"] = base64.b64encode(payload).decode()
    return json.dumps(doc).encode()


def test_altered_payload_byte_fails() -> None:
    raw = encode_envelope(sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE]))
    altered = bytes([PAYLOAD[0] ^ 1]) + PAYLOAD[1:]
    env = parse_envelope(_tampered(raw, payload=altered))
    with pytest.raises(SignatureInvalid, match=f"signature by keyid {ALICE.keyid} does not verify"):
        verify_envelope(env, KEYRING)


def test_altered_payload_type_fails() -> None:
    env = sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE])
    other = Envelope(payload_type=PAYLOAD_TYPE + "x", payload=env.payload, signatures=env.signatures)
    with pytest.raises(SignatureInvalid):
        verify_envelope(other, KEYRING)


def test_verifies_the_received_bytes_not_a_reserialization() -> None:
    # Same JSON value, different bytes: the signature covers the bytes.
    signed = b'{"a": 1}'
    raw = encode_envelope(sign_envelope(PAYLOAD_TYPE, signed, [ALICE]))
    assert verify_envelope(parse_envelope(raw), KEYRING) == (ALICE.keyid,)
    with pytest.raises(SignatureInvalid):
        verify_envelope(parse_envelope(_tampered(raw, payload=b'{"a":1}')), KEYRING)


def test_threshold_two_with_one_good_signature_fails_clearly() -> None:
    env = sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE])
    with pytest.raises(UnknownKey) as e:
        verify_envelope(env, KEYRING, threshold=2)
    assert isinstance(e.value, CannotVerify)
    assert "expected at least 2, found 1" in str(e.value)
    assert ALICE.keyid in str(e.value)


def test_threshold_two_with_two_good_signatures() -> None:
    env = sign_envelope(PAYLOAD_TYPE, PAYLOAD, [BOB, ALICE])
    assert verify_envelope(env, KEYRING, threshold=2) == (BOB.keyid, ALICE.keyid)


def test_unknown_keys_are_ignored_but_cannot_meet_threshold() -> None:
    stranger = Ed25519Signer.generate()
    env = sign_envelope(PAYLOAD_TYPE, PAYLOAD, [stranger, ALICE])
    assert verify_envelope(env, {ALICE.keyid: ALICE.verifier()}) == (ALICE.keyid,)
    with pytest.raises(UnknownKey, match=stranger.keyid):
        verify_envelope(sign_envelope(PAYLOAD_TYPE, PAYLOAD, [stranger]), KEYRING)


def test_empty_keyring_cannot_verify() -> None:
    with pytest.raises(UnknownKey, match="expected at least 1, found 0"):
        verify_envelope(sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE]), {})


def test_one_bad_known_signature_fails_even_when_threshold_is_met() -> None:
    good = sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE])
    bad = Signature(keyid=BOB.keyid, sig=BOB.sign(b"something else"))
    env = Envelope(payload_type=PAYLOAD_TYPE, payload=PAYLOAD, signatures=(good.signatures[0], bad))
    with pytest.raises(SignatureInvalid, match=BOB.keyid) as e:
        verify_envelope(env, KEYRING, threshold=1)
    assert isinstance(e.value, VerificationFailed)
    assert not isinstance(e.value, CannotVerify)


@pytest.mark.parametrize("threshold", [0, -1, True, 1.5])
def test_threshold_below_one_is_refused(threshold: object) -> None:
    env = sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE])
    with pytest.raises(ConfigError, match="expected an integer >= 1"):
        verify_envelope(env, KEYRING, threshold=threshold)  # type: ignore[arg-type]


def test_keyring_with_mismatched_verifier_cannot_verify() -> None:
    env = sign_envelope(PAYLOAD_TYPE, PAYLOAD, [ALICE])
    with pytest.raises(CannotVerify, match="maps keyid"):
        verify_envelope(env, {ALICE.keyid: BOB.verifier()})
