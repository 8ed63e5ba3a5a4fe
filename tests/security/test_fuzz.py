"""Bounded fuzzing in the default suite: decoders and verifiers on mutated real inputs.

Every input starts from a real, valid artefact (a signed envelope, a signed
payload, a proof, a signed checkpoint note, an audit bundle, a page token;
see ``fuzz_targets.py``) and is mutated: bytes flipped, cut, inserted,
deleted or spliced, or JSON values replaced.  The properties are the ones
the targets state; the longer, coverage-guided campaigns run the same
targets from ``python -m bench.fuzz.harness``.

Every property must hold: the defects fuzzing found are fixed (docs/security.md)
and proven deterministically by ``test_fixed_defects.py``.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz.harness import TOKENS
from ledger.core import merkle
from ledger.core.checkpoint import parse_note
from ledger.core.envelope import parse_envelope
from ledger.core.errors import DecodeError, ProvaultError
from ledger.core.events import parse_event
from tests.security.fuzz_targets import corpus, encode_proof_case, run_target

FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
INTERESTING = list(TOKENS)  # the byte runs the coverage-guided harness splices in, too


@st.composite
def mutated(draw: st.DrawFn, seeds: list[bytes], *, max_ops: int = 4) -> bytes:
    """A seed with 1..max_ops byte-level mutations."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(st.sampled_from(("flip", "truncate", "insert", "delete", "splice", "token")))
        at = draw(st.integers(0, max(len(data), 1) - 1)) if data else 0
        if op == "flip" and data:
            data[at] ^= draw(st.integers(1, 255))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 16))]
        elif op == "splice" and data:
            end = min(len(data), at + draw(st.integers(1, 64)))
            data[draw(st.integers(0, len(data))) : 0] = data[at:end]
        elif op == "token":
            data[at : at + draw(st.integers(0, 2))] = draw(st.sampled_from(INTERESTING))
    return bytes(data)


_JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=16)
    | st.sampled_from(
        [
            "\x00",
            "a\x00b",
            "\ud800",
            "sha256:" + "0" * 64,
            "GENESIS",
            "_:b1",
            "provault:x",
            "xsd:dateTime",
            "2026-03-02T09:00:00Z",
            "key.registered",
        ]
    )
)
_JSON = st.recursive(
    _JSON_LEAF,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def json_mutated(draw: st.DrawFn, payloads: list[bytes]) -> bytes:
    """A seed payload with one JSON value replaced, removed or added (then signed by the target)."""
    raw = draw(st.sampled_from(payloads))
    admin, body = raw[:1] == b"A", raw[1:] if raw[:1] == b"A" else raw
    doc = json.loads(body)
    path = draw(st.sampled_from(_paths(doc)[1:]))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    op = draw(st.sampled_from(("replace", "remove", "add")))
    if op == "remove":
        del parent[path[-1]]
    elif op == "add" and isinstance(parent, dict):
        parent[draw(st.text(max_size=10))] = draw(_JSON)
    else:
        parent[path[-1]] = draw(_JSON)
    text = json.dumps(doc, ensure_ascii=draw(st.booleans()), sort_keys=draw(st.booleans()))
    return (b"A" if admin else b"") + text.encode("utf-8", errors="surrogatepass")


# --- envelopes and events ------------------------------------------------------------------------


@FUZZ
@given(mutated(corpus().seeds("envelope")))
def test_mutated_envelopes_are_checked_or_refused(data: bytes) -> None:
    for parse in (parse_envelope, parse_event):
        try:
            parse(data)
        except DecodeError:
            pass
    run_target("envelope", data)


@FUZZ
@given(mutated(corpus().seeds("payload")))
def test_mutated_signed_payloads_pass_both_stages_or_are_refused(data: bytes) -> None:
    run_target("payload", data)


@FUZZ
@given(json_mutated(corpus().seeds("payload")[:-1]))
def test_json_mutated_signed_events_pass_both_stages_or_are_refused(data: bytes) -> None:
    run_target("payload", data)


# --- Merkle proofs ---------------------------------------------------------------------------------

_ANY = (
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=40)
)


@FUZZ
@given(mutated(corpus().seeds("proof"), max_ops=3))
def test_mutated_proofs_fail_only_with_provault_errors(data: bytes) -> None:
    run_target("proof", data)


@FUZZ
@given(
    kind=st.integers(0, 255),
    a=st.integers(-(2**63), 2**63 - 1),
    b=st.integers(-(2**63), 2**63 - 1),
    hashes=st.lists(st.binary(min_size=32, max_size=32), max_size=70),
    roots=st.tuples(st.binary(min_size=32, max_size=32), st.binary(min_size=32, max_size=32)),
)
def test_random_proofs_fail_only_with_provault_errors(kind: int, a: int, b: int, hashes: list[bytes], roots) -> None:
    run_target("proof", encode_proof_case(kind, a, b, hashes, roots))


@FUZZ
@given(leaf=_ANY, index=_ANY, size=_ANY, proof=st.lists(_ANY, max_size=5) | _ANY, root=_ANY)
def test_verifiers_refuse_values_of_any_type_with_provault_errors(leaf, index, size, proof, root) -> None:
    for call in (
        lambda: merkle.verify_inclusion(leaf, index, size, proof, root),
        lambda: merkle.verify_consistency(index, size, leaf, root, proof),
    ):
        try:
            call()
        except ProvaultError:
            pass


# --- checkpoints, bundles, tokens ------------------------------------------------------------------


@FUZZ
@given(mutated(corpus().seeds("note")))
def test_mutated_checkpoint_notes_never_open_as_another_checkpoint(data: bytes) -> None:
    run_target("note", data)
    try:
        parse_note(data.decode("utf-8", errors="replace"))
    except ProvaultError:
        pass


@st.composite
def reshuffled_note(draw: st.DrawFn) -> bytes:
    """Line-level edits of the note: drop, duplicate, swap or rewrite one line."""
    lines = corpus().note.split("\n")
    i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
    op = draw(st.sampled_from(("drop", "dup", "swap", "rewrite")))
    if op == "drop":
        del lines[i]
    elif op == "dup":
        lines.insert(i, lines[j])
    elif op == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    else:
        lines[i] = draw(st.sampled_from(["0", "18446744073709551616", "-1", "4 ", "", "\u2014 x AAAA", lines[i] + "="]))
    return "\n".join(lines).encode()


@FUZZ
@given(reshuffled_note())
def test_rearranged_checkpoint_notes_never_open_as_another_checkpoint(data: bytes) -> None:
    run_target("note", data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(mutated([corpus().bundle], max_ops=2))
def test_mutated_bundles_fail_with_a_provault_error_or_are_the_original(data: bytes) -> None:
    run_target("bundle", data)


def test_the_binary_bundle_encoding_is_fuzzed_too() -> None:
    from query.bundle_verify import decode_bundle, encode_bundle  # noqa: PLC0415

    binary = encode_bundle(decode_bundle(corpus().bundle), binary=True)
    step = max(1, len(binary) // 400)
    for i in range(0, len(binary), step):  # every step-th byte, flipped
        flipped = bytearray(binary)
        flipped[i] ^= 0x01
        try:
            run_target("bundle", bytes(flipped))
        except AssertionError as e:
            pytest.fail(f"byte {i}: {e}")


@FUZZ
@given(st.binary(max_size=200) | mutated(corpus().seeds("token")) | st.text(max_size=80).map(str.encode))
def test_page_tokens_are_only_ever_invalid_argument(data: bytes) -> None:
    run_target("token", data)


def test_every_seed_satisfies_its_target() -> None:
    """The corpus is valid input: a target that refuses its own seeds fuzzes nothing."""
    c = corpus()
    for name in ("envelope", "payload", "proof", "note", "bundle", "token"):
        for seed in c.seeds(name):
            run_target(name, seed)
    assert parse_envelope(c.log[1].envelope).payload == c.log[1].payload
    assert base64.b64decode(json.loads(c.log[1].envelope)["payload"]) == c.log[1].payload
