"""In-toto attestations of a model, issued from a real ledger and checked offline, by provault and by others.

The story (tests/query/provstory.py) plus the run's parameters, command and environment (seq 9), the
attestation key's registration (seq 10) and an unrelated second model (seq 11), checkpointed at size 12.
Every tampering is refused at its step with its own error; the statement and its envelope are also checked
with the in-toto-attestation library, in-toto's reference implementation, a JSON schema written here from
the specs, and ``cryptography`` with a PAE computed here.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import hashlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import jsonschema
import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from google.protobuf import json_format
from in_toto.models.metadata import Envelope as InTotoEnvelope
from in_toto.models.metadata import Metadata
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from ledger.config import AgentSettings, PostgresSettings, Settings, SupplySettings
from ledger.core.checkpoint import format_vkey
from ledger.core.envelope import encode_envelope, parse_envelope, sign_envelope
from ledger.core.events import parse_event
from ledger.core.keyring import KEY_REGISTERED
from ledger.core.keys import Ed25519Signer, load_or_create_key
from ledger.core.vocab import ATTESTATION_ISSUED, service_id
from ledger.db import connect
from ledger.grpckit.auth import LEDGER_METHOD_ROLES, AuthInterceptor, DevModeAuthenticator
from ledger.service.appender import Appender
from ledger.service.grpc_ledger import build_ledger_server
from ledger.store.entries import entries_at
from provault.v1 import query_pb2, query_pb2_grpc
from query import projector
from query.bundle_verify import decode_bundle, encode_bundle
from query.service import QUERY_METHOD_ROLES, build_query_server
from query.supply import signer as attestor
from query.supply.attest import (
    BUNDLE_NAME,
    PAYLOAD_TYPE,
    AttestationBundleInvalid,
    AttestationKeyNotPermitted,
    AttestationKeyRevoked,
    AttestationMalformed,
    AttestationPayloadType,
    AttestationSignatureInvalid,
    AttestationSignerRefused,
    BundleDigestMismatch,
    NoAttestationKey,
    PredicateMalformed,
    StatementMalformed,
    StatementMismatch,
    attestable_evidence,
    encode_statement,
    issue,
    sign_statement,
    statement,
    verify_attestation,
)
from query.supply.evidence import gather
from tests.ledgerkit import ORIGIN, Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story, at

pytestmark = pytest.mark.postgres

PID = "attestor/test-host"
ENVIRONMENT = "sha256:" + "e0" * 32
OTHER_MODEL = "sha256:" + "33" * 32
PARAMS = {"epochs": 3, "lr": 0.01}
COMMAND = "python train.py --epochs 3"
TIMEOUT = 10


# --- the story, with an attestation key ------------------------------------------------------------


def supply_settings(ledger: Ledger, tmp_path: Path, ledger_target: str | None = None) -> Settings:
    agent = AgentSettings(transport="grpc", ledger_target=ledger_target, publish_timeout_s=10.0)
    return Settings(
        data_dir=tmp_path / "data",
        postgres=PostgresSettings(dsn=ledger.dsn),
        agent=agent,
        supply=SupplySettings(producer_id=PID, key_file=str(tmp_path / "attestor.key")),
    )


@dataclasses.dataclass
class Attested:
    story: Story
    settings: Settings
    key: Ed25519Signer
    vkey: str
    admin: bytes

    def pins(self) -> dict[str, Any]:
        return {"vkey": self.vkey, "admin_keys": [self.admin]}


@pytest.fixture
def attested(ledger: Ledger, logged_story: Story, tmp_path: Path) -> Attested:
    s, i = logged_story, logged_story.ids
    settings = supply_settings(ledger, tmp_path)
    key, _ = load_or_create_key(tmp_path / "attestor.key")
    registration = attestor.registration(settings, key)
    configured = s.trainer.emit(
        "run.configured",
        {
            "activity": {i.run: {"provault:params": json.dumps(PARAMS), "provault:command": COMMAND}},
            "entity": {ENVIRONMENT: {"prov:type": "provault:Environment", "prov:label": "python 3.12, torch 2.4"}},
            "used": {"_:u1": {"prov:activity": i.run, "prov:entity": ENVIRONMENT}},
        },
        time=at(3),
    )
    registered = ledger.admin_chain.emit(KEY_REGISTERED, {"agent": {service_id(PID): {}}}, data=registration.to_data())
    other = s.trainer.emit(
        "model.registered",
        {"entity": {OTHER_MODEL: {"prov:type": "provault:Model", "prov:label": "sentiment-small"}}},
        time=at(32),
    )
    plan = ledger.append(configured, registered, other)
    assert [a.seq for a in plan.accepted] == [9, 10, 11], ledger.rejections()
    sign_and_project(ledger)
    vkey = format_vkey(ORIGIN, ledger.checkpoint_key.public_key)
    return Attested(story=s, settings=settings, key=key, vkey=vkey, admin=ledger.admin.public_key)


def issued(ledger: Ledger, a: Attested, model: str = "sentiment"):
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        return issue(conn, a.settings, model, record=False)


@contextlib.contextmanager
def ledger_service(ledger: Ledger) -> Iterator[str]:
    """LedgerService on a free loopback port, appending to the test's ledger: the attestation key's agent's target."""
    appender = Appender(ledger.dsn, limits=ledger.limits)
    server, port = build_ledger_server(
        dsn=ledger.dsn,
        appender=appender,
        listen="127.0.0.1:0",
        max_message_bytes=4 << 20,
        interceptors=(AuthInterceptor(DevModeAuthenticator(), LEDGER_METHOD_ROLES),),
    )
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        assert server.stop(None).wait(10)
        appender.close()


def payload_of(envelope: bytes) -> dict[str, Any]:
    return json.loads(base64.b64decode(json.loads(envelope)["payload"]))


# --- the statement --------------------------------------------------------------------------------


def test_the_statement_states_the_models_digest_inputs_parameters_and_evidence(
    ledger: Ledger, attested: Attested
) -> None:
    i = attested.story.ids
    out = issued(ledger, attested)
    stmt = out.statement
    assert payload_of(out.envelope_json) == stmt
    assert out.statement_digest == "sha256:" + hashlib.sha256(encode_statement(stmt)).hexdigest()
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert stmt["subject"] == [{"name": "sentiment", "digest": {"sha256": "22" * 32}}]
    assert stmt["predicateType"] == "https://slsa.dev/provenance/v1"
    build = stmt["predicate"]["buildDefinition"]
    assert build["buildType"] == "https://provault.dev/buildtypes/training-run/v1"
    assert build["externalParameters"] == {"runs": [{"run": i.run, "params": PARAMS, "command": COMMAND}]}
    assert build["internalParameters"] == {"runs": [i.run]}
    assert build["resolvedDependencies"] == [
        {
            "uri": "s3://data/reviews.csv",
            "digest": {"sha256": "11" * 32},
            "name": "reviews v1",
            "annotations": {"provault": {"node": i.dataset, "kind": "dataset", "seqs": [3, 4, 5]}},
        },
        {
            "uri": "git@example.com:ml/sentiment",
            "digest": {"gitCommit": "4f0c2a9e"},
            "annotations": {"provault": {"node": i.code, "kind": "code", "seqs": [4]}},
        },
        {
            "digest": {"sha256": "e0" * 32},
            "name": "python 3.12, torch 2.4",
            "annotations": {"provault": {"node": ENVIRONMENT, "kind": "environment", "seqs": [9]}},
        },
    ]
    run = stmt["predicate"]["runDetails"]
    assert run["builder"] == {
        "id": "https://provault.dev/builders/ledger/test.provault/log",
        "version": {"provault": "0.1.0"},
    }
    assert run["metadata"] == {
        "invocationId": i.run,
        "startedOn": "2025-03-02T09:02:00Z",
        "finishedOn": "2025-03-02T09:30:00Z",
    }
    ev = out.evidence
    cp = ev.bundle.checkpoint
    assert run["byproducts"] == [
        {
            "name": BUNDLE_NAME,
            "digest": {"sha256": hashlib.sha256(ev.bundle_json).hexdigest()},
            "mediaType": "application/vnd.provault.bundle+json",
            "annotations": {"provault": {"subject": i.model, "asOfSeq": 11}},
        },
        {
            "name": "checkpoint",
            "digest": {"sha256": hashlib.sha256(cp.signed_note.encode()).hexdigest()},
            "annotations": {
                # every entry of the bundle; not the serving key's registration (2) nor the prediction batch (8)
                "provault": {
                    "origin": ORIGIN,
                    "treeSize": 12,
                    "rootHash": cp.root_hash.hex(),
                    "seqs": [0, 1, 3, 4, 5, 6, 7, 9, 10],
                }
            },
        },
    ]
    # The attestation key's registration (seq 10) is in the bundle, though the key signed nothing behind the model.
    assert [pe.entry.seq for pe in ev.bundle.key_entries] == [0, 1, 10]
    assert ev.keys[attested.key.keyid].identity == {"type": "service", "name": PID}
    # Deterministic: computed again from the same bundle, byte for byte.
    assert encode_statement(statement(ev, builder_version="0.1.0")) == encode_statement(stmt)


# --- others' checks: in-toto-attestation, in-toto, a JSON schema, cryptography --------------------------


RESOURCE_DESCRIPTOR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "uri": {"type": "string"},
        "digest": {"type": "object", "additionalProperties": {"type": "string", "pattern": "^[0-9a-f]+$"}},
        "content": {"type": "string"},
        "downloadLocation": {"type": "string"},
        "mediaType": {"type": "string"},
        "annotations": {"type": "object"},
    },
    "anyOf": [{"required": ["name"]}, {"required": ["uri"]}, {"required": ["digest"]}],
    "additionalProperties": False,
}
TIMESTAMP = {"type": "string", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$"}
STATEMENT_V1_SCHEMA: dict[str, Any] = {
    # in-toto Statement v1 (github.com/in-toto/attestation spec/v1/statement.md) with the SLSA Provenance v1
    # predicate (slsa.dev/spec/v1.0/provenance): required fields, their types, nothing else at the top.
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "required": ["_type", "subject", "predicateType", "predicate"],
    "additionalProperties": False,
    "properties": {
        "_type": {"const": "https://in-toto.io/Statement/v1"},
        "subject": {
            "type": "array",
            "minItems": 1,
            "items": {
                **RESOURCE_DESCRIPTOR,
                "required": ["digest"],
                "properties": {
                    **RESOURCE_DESCRIPTOR["properties"],
                    "digest": {**RESOURCE_DESCRIPTOR["properties"]["digest"], "minProperties": 1},
                },
            },
        },
        "predicateType": {"type": "string", "pattern": "^https://"},
        "predicate": {
            "type": "object",
            "required": ["buildDefinition", "runDetails"],
            "additionalProperties": False,
            "properties": {
                "buildDefinition": {
                    "type": "object",
                    "required": ["buildType", "externalParameters"],
                    "additionalProperties": False,
                    "properties": {
                        "buildType": {"type": "string", "pattern": "^https://"},
                        "externalParameters": {"type": "object"},
                        "internalParameters": {"type": "object"},
                        "resolvedDependencies": {"type": "array", "items": RESOURCE_DESCRIPTOR},
                    },
                },
                "runDetails": {
                    "type": "object",
                    "required": ["builder"],
                    "additionalProperties": False,
                    "properties": {
                        "builder": {
                            "type": "object",
                            "required": ["id"],
                            "additionalProperties": False,
                            "properties": {
                                "id": {"type": "string", "pattern": "^https://"},
                                "version": {"type": "object", "additionalProperties": {"type": "string"}},
                                "builderDependencies": {"type": "array", "items": RESOURCE_DESCRIPTOR},
                            },
                        },
                        "metadata": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "invocationId": {"type": "string"},
                                "startedOn": TIMESTAMP,
                                "finishedOn": TIMESTAMP,
                            },
                        },
                        "byproducts": {"type": "array", "items": RESOURCE_DESCRIPTOR},
                    },
                },
            },
        },
    },
}


def pae(payload_type: bytes, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding, written here from the DSSE spec (not provault's)."""
    return b" ".join([b"DSSEv1", str(len(payload_type)).encode(), payload_type, str(len(payload)).encode(), payload])


def test_others_read_it_the_in_toto_libraries_a_schema_and_cryptography(ledger: Ledger, attested: Attested) -> None:
    out = issued(ledger, attested)
    doc = json.loads(out.envelope_json)
    payload = base64.b64decode(doc["payload"])
    stmt = json.loads(payload)
    # in-toto-attestation: the statement, and the SLSA v1 predicate, parse strictly (unknown fields refused).
    pb = json_format.ParseDict(stmt, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    prov = json_format.ParseDict(stmt["predicate"], provenance_pb2.Provenance())
    assert prov.build_definition.resolved_dependencies[1].digest["gitCommit"] == "4f0c2a9e"
    assert prov.run_details.metadata.started_on.ToJsonString() == "2025-03-02T09:02:00Z"
    # in-toto's reference implementation reads the DSSE envelope and verifies its signature.
    envelope = Metadata.from_dict(json.loads(out.envelope_json))
    assert isinstance(envelope, InTotoEnvelope) and envelope.payload_type == PAYLOAD_TYPE
    key = {
        "keyid": attested.key.keyid,
        "keytype": "ed25519",
        "scheme": "ed25519",
        "keyval": {"public": attested.key.public_key.hex()},
    }
    envelope.verify_signature(key)
    # A JSON schema of Statement v1 and Provenance v1, from the specs.
    jsonschema.Draft202012Validator.check_schema(STATEMENT_V1_SCHEMA)
    jsonschema.Draft202012Validator(STATEMENT_V1_SCHEMA).validate(stmt)
    # DSSE with cryptography directly: the keyid is the SHA-256 of the raw key; the signature covers PAE.
    assert doc["payloadType"] == "application/vnd.in-toto+json"
    [sig] = doc["signatures"]
    assert sig["keyid"] == hashlib.sha256(attested.key.public_key).hexdigest()
    public = Ed25519PublicKey.from_public_bytes(attested.key.public_key)
    public.verify(base64.b64decode(sig["sig"]), pae(doc["payloadType"].encode(), payload))


# --- verifying offline -----------------------------------------------------------------------------


def test_it_verifies_offline_on_pinned_keys(ledger: Ledger, attested: Attested) -> None:
    out = issued(ledger, attested)
    check = verify_attestation(out.envelope_json, out.evidence.bundle_json, **attested.pins())
    assert check.bundle.fully_pinned and check.bundle.unchecked_seqs == ()
    assert (check.model, check.subject_name) == (attested.story.ids.model, "sentiment")
    assert (check.signer_keyid, check.signer_registered_seq) == (attested.key.keyid, 10)
    assert check.statement_digest == out.statement_digest and check.bundle_digest == out.evidence.bundle_digest
    assert [s.split(" ", 2)[:2] for s in check.steps] == [
        ["1", "envelope:"],
        ["2", "bundle:"],
        ["3", "bundle"],
        ["4", "attestation"],
        ["5", "statement:"],
    ]
    assert check.to_json()["key_source"] == "given"
    # The bundle message verifies the same as its file.
    assert verify_attestation(out.envelope_json, out.evidence.bundle, **attested.pins()).statement_digest


def _resign(stmt: dict[str, Any], key: Ed25519Signer) -> bytes:
    return sign_statement(stmt, key)


def _signed(payload_type: str, payload: bytes, key: Ed25519Signer) -> bytes:
    return encode_envelope(sign_envelope(payload_type, payload, [key]))


def _changed_byte(out: Any, a: Attested) -> tuple[bytes, bytes]:
    env = parse_envelope(out.envelope_json, payload_type=None)
    payload = env.payload.replace(b'"reviews v1"', b'"reviews v2"', 1)
    assert payload != env.payload
    forged = dataclasses.replace(env, payload=payload)
    return encode_envelope(forged), out.evidence.bundle_json


def _unregistered(out: Any, a: Attested) -> tuple[bytes, bytes]:
    return _resign(out.statement, Ed25519Signer.generate()), out.evidence.bundle_json


def _signed_by_a_producer_key(out: Any, a: Attested) -> tuple[bytes, bytes]:
    """Alice's key, registered for every kind (`*`) and behind the model's own entries, signs the statement."""
    return _resign(out.statement, a.story.trainer.signer), out.evidence.bundle_json


def _edited_dependency(out: Any, a: Attested) -> tuple[bytes, bytes]:
    stmt = json.loads(json.dumps(out.statement))
    stmt["predicate"]["buildDefinition"]["resolvedDependencies"][0]["digest"]["sha256"] = "ab" * 32
    return _resign(stmt, a.key), out.evidence.bundle_json


def _other_models_bundle(out: Any, a: Attested, ledger: Ledger) -> tuple[bytes, bytes]:
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        other = attestable_evidence(conn, OTHER_MODEL, keyid=a.key.keyid)
    return out.envelope_json, other.bundle_json


def _tampered_entry(out: Any, a: Attested) -> tuple[bytes, bytes]:
    bundle = decode_bundle(out.evidence.bundle_json)
    raw = bundle.entries[0].entry.envelope_json
    bundle.entries[0].entry.envelope_json = raw.replace(b'"payload":"', b'"payload": "', 1)
    return out.envelope_json, encode_bundle(bundle)


def _wrong_payload_type(out: Any, a: Attested) -> tuple[bytes, bytes]:
    return _signed("application/json", encode_statement(out.statement), a.key), out.evidence.bundle_json


def _not_json(out: Any, a: Attested) -> tuple[bytes, bytes]:
    return _signed(PAYLOAD_TYPE, b"subject: sentiment\n", a.key), out.evidence.bundle_json


def _old_statement_type(out: Any, a: Attested) -> tuple[bytes, bytes]:
    stmt = {**out.statement, "_type": "https://in-toto.io/Statement/v0.1"}
    return _resign(stmt, a.key), out.evidence.bundle_json


def _no_subject_digest(out: Any, a: Attested) -> tuple[bytes, bytes]:
    stmt = {**out.statement, "subject": [{"name": "sentiment"}]}
    return _resign(stmt, a.key), out.evidence.bundle_json


def _other_predicate(out: Any, a: Attested) -> tuple[bytes, bytes]:
    stmt = {**out.statement, "predicateType": "https://slsa.dev/provenance/v0.2"}
    return _resign(stmt, a.key), out.evidence.bundle_json


def _not_slsa(out: Any, a: Attested) -> tuple[bytes, bytes]:
    stmt = {**out.statement, "predicate": {**out.statement["predicate"], "materials": []}}
    return _resign(stmt, a.key), out.evidence.bundle_json


def _not_dsse(out: Any, a: Attested) -> tuple[bytes, bytes]:
    return b'{"payloadType":"application/vnd.in-toto+json"}', out.evidence.bundle_json


TAMPERINGS = [
    pytest.param(_not_dsse, AttestationMalformed, 1, "required member 'payload' is missing", id="not-dsse"),
    pytest.param(_wrong_payload_type, AttestationPayloadType, 1, "payloadType: expected", id="wrong-payload-type"),
    pytest.param(_not_json, StatementMalformed, 1, "the payload is not JSON", id="non-json-payload"),
    pytest.param(_old_statement_type, StatementMalformed, 1, "Wrong statement type", id="not-statement-v1"),
    pytest.param(
        _no_subject_digest, StatementMalformed, 1, "At least one digest required", id="subject-without-digest"
    ),
    pytest.param(_other_predicate, PredicateMalformed, 1, "predicateType: expected", id="not-slsa-v1"),
    pytest.param(_not_slsa, PredicateMalformed, 1, "materials", id="unknown-predicate-field"),
    pytest.param(
        _tampered_entry, AttestationBundleInvalid, 2, "step 2 (inclusion proofs), entries[0]", id="bundle-entry"
    ),
    pytest.param(
        _other_models_bundle, BundleDigestMismatch, 3, "the bundle given is sha256:", id="other-models-bundle"
    ),
    pytest.param(_changed_byte, AttestationSignatureInvalid, 4, "does not verify", id="changed-statement-byte"),
    pytest.param(
        _unregistered, AttestationSignerRefused, 4, "which the bundle does not register", id="unregistered-key"
    ),
    pytest.param(
        _signed_by_a_producer_key,
        AttestationKeyNotPermitted,
        4,
        "of person:alice, registered as producer for *: not an attestation key",
        id="producer-key-that-may-sign-anything",
    ),
    pytest.param(
        _edited_dependency,
        StatementMismatch,
        5,
        'predicate.buildDefinition.resolvedDependencies[0].digest.sha256: the bundle gives "1111',
        id="edited-dependency-re-signed",
    ),
]


@pytest.mark.parametrize(("tamper", "error", "step", "words"), TAMPERINGS)
def test_every_tampering_is_refused_at_its_step(
    ledger: Ledger, attested: Attested, tamper: Any, error: type, step: int, words: str
) -> None:
    out = issued(ledger, attested)
    args = (out, attested, ledger) if tamper is _other_models_bundle else (out, attested)
    envelope, bundle = tamper(*args)
    with pytest.raises(error) as info:
        verify_attestation(envelope, bundle, **attested.pins())
    e = info.value
    assert type(e) is error
    assert (e.step, e.step_name) == (
        step,
        {1: "envelope and statement", 2: "bundle", 3: "bundle digest", 4: "attestation key", 5: "recomputed statement"}[
            step
        ],
    )
    assert words in e.message and e.message.startswith(f"step {step} (")
    if error is StatementMismatch:
        assert e.field == "predicate.buildDefinition.resolvedDependencies[0].digest.sha256"
    if error is AttestationBundleInvalid:
        assert (e.bundle_step, e.bundle_step_name) == (2, "inclusion proofs")


def test_a_key_revoked_before_the_checkpoint_signs_nothing_that_verifies(ledger: Ledger, attested: Attested) -> None:
    plan = ledger.append(ledger.revocation(attested.key))
    assert [a.seq for a in plan.accepted] == [12], ledger.rejections()
    sign_and_project(ledger)
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        with pytest.raises(NoAttestationKey, match="was revoked at seq 12"):
            issue(conn, attested.settings, "sentiment", record=False)
        ev = attestable_evidence(conn, "sentiment", keyid=attested.key.keyid)
    assert [pe.entry.seq for pe in ev.bundle.key_entries] == [0, 1, 10, 12]
    envelope = sign_statement(statement(ev, builder_version="0.1.0"), attested.key)
    with pytest.raises(AttestationKeyRevoked) as info:
        verify_attestation(envelope, ev.bundle_json, **attested.pins())
    assert info.value.step == 4
    assert f"signed by key {attested.key.keyid}, revoked at seq 12" in info.value.message
    assert "before the bundle's checkpoint (tree size 13): leaked" in info.value.message


def test_issuing_without_a_registered_key_is_refused_before_signing(
    ledger: Ledger, story: Story, tmp_path: Path
) -> None:
    settings = supply_settings(ledger, tmp_path)
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        with pytest.raises(NoAttestationKey, match="attestor.key does not exist") as info:
            issue(conn, settings, "sentiment", record=False)
        assert "provault keys register" in (info.value.hint or "")
        load_or_create_key(tmp_path / "attestor.key")
        with pytest.raises(NoAttestationKey, match="is not registered in this ledger"):
            issue(conn, settings, "sentiment", record=False)


# --- recording -------------------------------------------------------------------------------------


def test_the_issuing_is_recorded_and_the_next_bundle_carries_it(
    ledger: Ledger, attested: Attested, tmp_path: Path
) -> None:
    i = attested.story.ids
    with ledger_service(ledger) as target, psycopg.connect(ledger.dsn, autocommit=True) as conn:
        settings = supply_settings(ledger, tmp_path, target)
        out = issue(conn, settings, i.model)
    assert out.delivered and out.event_id
    [row] = entries_at(ledger.conn, [12]).values()
    event = parse_event(parse_envelope(row.envelope).payload)
    assert (row.event_id, row.keyid, event.kind, event.producer.id) == (
        out.event_id,
        attested.key.keyid,
        ATTESTATION_ISSUED,
        PID,
    )
    assert event.data == {
        "model": i.model,
        "statement_digest": out.statement_digest,
        "predicate_type": "https://slsa.dev/provenance/v1",
        "as_of_seq": 11,
    }
    envelope_id = "sha256:" + hashlib.sha256(out.envelope_json).hexdigest()
    assert event.prov["entity"][envelope_id]["prov:type"] == {
        "$": "provault:Attestation",
        "type": "prov:QUALIFIED_NAME",
    }
    [activity] = event.prov["activity"]
    assert re.fullmatch(r"provault:attestation/[0-9a-f-]{36}", activity)
    sign_and_project(ledger)
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        edges = set(conn.execute("SELECT relation, src, dst FROM prov.edges WHERE seq = 12"))
    assert edges == {
        ("used", activity, i.model),
        ("wasGeneratedBy", envelope_id, activity),
        ("wasAssociatedWith", activity, service_id(PID)),
    }
    with psycopg.connect(ledger.dsn, autocommit=True) as conn:
        ev = gather(conn, i.model)
    assert envelope_id in ev.downstream and 12 in {pe.entry.seq for pe in ev.bundle.entries}
    assert attested.key.keyid in ev.keys  # signed an entry of the bundle: its registration comes with it


# --- the command line -------------------------------------------------------------------------------


@pytest.fixture
def attest_env(
    ledger: Ledger, attested: Attested, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[dict[str, Path]]:
    with ledger_service(ledger) as target:
        for name, value in {
            "PROVAULT_DATA_DIR": str(tmp_path / "data"),
            "PROVAULT_SUPPLY_KEY_FILE": str(tmp_path / "attestor.key"),
            "PROVAULT_SUPPLY_PRODUCER_ID": PID,
            "PROVAULT_AGENT_TRANSPORT": "grpc",
            "PROVAULT_AGENT_LEDGER_TARGET": target,
        }.items():
            monkeypatch.setenv(name, value)
        yield {}


def test_cli_attest_then_verify(cli, keys, attest_env, tmp_path: Path) -> None:
    vkey, admin = keys
    out = tmp_path / "sentiment.intoto.json"
    code, text, err = cli("attest", "sentiment", "-o", out)
    assert code == 0, err
    bundle = tmp_path / "sentiment.intoto.bundle.json"
    assert f"wrote {out} (" in text and f"wrote {bundle} (" in text
    digest = re.search(r"statement digest (sha256:[0-9a-f]{64})", text)
    assert (
        digest
        and "sha256:" + hashlib.sha256(base64.b64decode(json.loads(out.read_bytes())["payload"])).hexdigest()
        == digest[1]
    )
    assert re.search(r"recorded as attestation\.issued event [0-9a-f-]{36}\n", text)
    code, text, err = cli("verify-attestation", out, "--bundle", bundle, "--vkey", vkey, "--admin-key", admin)
    assert code == 0, err
    assert text.startswith(f"provault verify-attestation: OK: {out}\n")
    assert "  checkpoint key  pinned with --vkey" in text and "  admin keys      pinned with --admin-key" in text
    assert f"({PID}, service), registered at seq 10" in text
    code, text, _ = cli("verify-attestation", out, "--bundle", bundle, "--vkey", vkey, "--admin-key", admin, "--json")
    doc = json.loads(text)
    assert code == 0 and doc["ok"] and doc["statement_digest"] == digest[1] and doc["admin_keys_pinned"]
    # A changed byte of the statement: the signature no longer verifies (step 4).
    env = json.loads(out.read_bytes())
    payload = base64.b64decode(env["payload"]).replace(b"reviews v1", b"reviews v0")
    env["payload"] = base64.b64encode(payload).decode()
    tampered = tmp_path / "tampered.intoto.json"
    tampered.write_text(json.dumps(env))
    code, text, _ = cli("verify-attestation", tampered, "--bundle", bundle, "--vkey", vkey, "--admin-key", admin)
    assert code == 1
    assert text.startswith("provault verify-attestation: FAILED at step 4 (attestation key)")
    assert "[attestation_bad_signature]" in text
    code, text, _ = cli("verify-attestation", tampered, "--bundle", bundle, "--json")
    doc = json.loads(text)
    assert (code, doc["ok"], doc["step"], doc["reason"]) == (1, False, 4, "attestation_bad_signature")


def test_cli_defaults_no_record_and_bad_arguments(cli, attest_env, ledger: Ledger, monkeypatch, tmp_path: Path) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    code, text, err = cli("attest", "sentiment", "--no-record", "--as-of", "10")
    assert code == 0, err
    assert (work / "sentiment.intoto.json").exists() and (work / "sentiment.intoto.bundle.json").exists()
    assert "not recorded in the ledger (--no-record)" in text and "as of seq 10" in text
    assert ledger.conn.execute("SELECT count(*) FROM ledger.entries").fetchone()[0] == 12
    code, _, err = cli("attest", "no-such-model", "--no-record")
    assert code == 1 and "no model labelled 'no-such-model'" in err
    for argv in (
        ("verify-attestation", "sentiment.intoto.json"),  # --bundle is required
        ("attest", "sentiment", "--as-of", "latest"),
        ("attest",),
    ):
        with pytest.raises(SystemExit) as info:
            cli(*argv)
        assert info.value.code == 2


# --- gRPC ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def query_service(ledger: Ledger, settings: Settings | None) -> Iterator[query_pb2_grpc.QueryServiceStub]:
    server, port = build_query_server(
        dsn=ledger.dsn,
        listen="127.0.0.1:0",
        max_message_bytes=4 << 20,
        interceptors=(AuthInterceptor(DevModeAuthenticator(), QUERY_METHOD_ROLES),),
        settings=settings,
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield query_pb2_grpc.QueryServiceStub(channel)
    finally:
        channel.close()
        assert server.stop(None).wait(10)


def _code(call, request) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value.code(), info.value.details()


def test_grpc_attest(ledger: Ledger, attested: Attested, tmp_path: Path) -> None:
    with ledger_service(ledger) as target, query_service(ledger, supply_settings(ledger, tmp_path, target)) as stub:
        dry = stub.Attest(query_pb2.AttestRequest(model="sentiment", dry_run=True), timeout=TIMEOUT)
        assert (dry.model_id, dry.event_id) == (attested.story.ids.model, "")
        check = verify_attestation(dry.envelope_json, encode_bundle(dry.bundle), **attested.pins())
        assert check.statement_digest == dry.statement_digest
        at_seq = stub.Attest(
            query_pb2.AttestRequest(model="sentiment", as_of=query_pb2.AsOf(seq=10), dry_run=True), timeout=TIMEOUT
        )
        assert payload_of(at_seq.envelope_json)["predicate"]["runDetails"]["byproducts"][0]["annotations"] == {
            "provault": {"subject": attested.story.ids.model, "asOfSeq": 10}
        }
        recorded = stub.Attest(query_pb2.AttestRequest(model=attested.story.ids.model), timeout=TIMEOUT)
        assert re.fullmatch(r"[0-9a-f-]{36}", recorded.event_id)
        [row] = entries_at(ledger.conn, [12]).values()
        assert row.event_id == recorded.event_id and row.keyid == attested.key.keyid
        assert _code(stub.Attest, query_pb2.AttestRequest(model="no-such-model"))[0] == grpc.StatusCode.NOT_FOUND
        assert _code(stub.Attest, query_pb2.AttestRequest(model=""))[0] == grpc.StatusCode.INVALID_ARGUMENT
        beyond = query_pb2.AttestRequest(model="sentiment", as_of=query_pb2.AsOf(seq=99))
        assert _code(stub.Attest, beyond)[0] == grpc.StatusCode.FAILED_PRECONDITION
        # A model the projection knows but no checkpoint covers yet: not provable yet, as for Gate.
        later = attested.story.trainer.emit(
            "model.registered", {"entity": {"sha256:" + "44" * 32: {"prov:type": "provault:Model"}}}, time=at(33)
        )
        assert [a.seq for a in ledger.append(later).accepted] == [13]
        with connect(ledger.dsn, autocommit=True, role=projector.PROJECTOR_ROLE) as c:
            projector.project(c)
        code, details = _code(stub.Attest, query_pb2.AttestRequest(model="sha256:" + "44" * 32))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "no checkpoint covers it yet" in details


def test_grpc_attest_without_a_key_is_a_failed_precondition(ledger: Ledger, story: Story, tmp_path: Path) -> None:
    with query_service(ledger, supply_settings(ledger, tmp_path)) as stub:
        code, details = _code(stub.Attest, query_pb2.AttestRequest(model="sentiment"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "no usable attestation key" in details and str(tmp_path) not in details
        load_or_create_key(tmp_path / "attestor.key")  # present now, but not registered
        code, details = _code(stub.Attest, query_pb2.AttestRequest(model="sentiment"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "is not registered in this ledger" in details
    with query_service(ledger, None) as stub:
        code, details = _code(stub.Attest, query_pb2.AttestRequest(model="sentiment"))
        assert code == grpc.StatusCode.FAILED_PRECONDITION and "started without the stack's settings" in details
