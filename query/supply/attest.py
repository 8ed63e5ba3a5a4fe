"""In-toto Statement v1 attestations with an SLSA Provenance v1 predicate, and their offline check.

docs/supply-chain.md, "Attestations", is the contract.  Three parts:

* :func:`statement` -- pure: the statement of a model computed from its **verified** evidence
  (:class:`~query.supply.evidence.ModelEvidence`) and nothing else, deterministically, so that whoever
  holds the same bundle computes the same statement;
* :func:`issue` -- gathers the evidence, adds the attestation key's own key history to the bundle (so the
  bundle proves who may sign the attestation), builds the statement, signs it in a DSSE envelope
  (payloadType ``application/vnd.in-toto+json``) with the attestation key, and records the issuing as an
  ``attestation.issued`` event;
* :func:`verify_attestation` -- offline, no database: the five checks of "Checks offline", in order,
  each failure an error naming its step (``.step``, ``.step_name``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn
from urllib.parse import quote

import psycopg
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import STATEMENT_TYPE_URI, Statement

from ledger.config import Settings
from ledger.core.envelope import Envelope, encode_envelope, parse_envelope, sign_envelope, verify_envelope
from ledger.core.errors import (
    CannotVerify,
    DecodeError,
    InvalidArgument,
    KeyMaterialError,
    ProvaultError,
    SignatureInvalid,
    VerificationError,
    VerificationFailed,
    expected_found,
)
from ledger.core.ids import is_content_id, new_event_id
from ledger.core.keyring import KeyRecord
from ledger.core.keys import Ed25519Verifier, Signer
from ledger.core.vocab import ATTESTATION_ISSUED, PREFIXES, attestation_activity_id, service_id
from ledger.db import translate_errors
from ledger.grpckit.status import NotCovered
from ledger.store import checkpoints as stored_checkpoints
from provault.v1 import query_pb2
from query.bundle_verify import BundleReport, decode_bundle, printable, verify_bundle
from query.report.facts import value

from . import signer as attestor
from .evidence import BUNDLE_MEDIA_TYPE, ModelEvidence, from_bundle, gather, grants_explicitly
from .signer import NotRecorded

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = STATEMENT_TYPE_URI
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://provault.dev/buildtypes/training-run/v1"
BUILDER_PREFIX = "https://provault.dev/builders/ledger/"
BUNDLE_NAME = "audit-bundle"
CHECKPOINT_NAME = "checkpoint"
MAX_ENVELOPE_BYTES = 64 << 20
"""An attestation's envelope may be larger than an event's (1 MiB): its annotations list the bundle's seqs."""

DATASET, CODE, ENVIRONMENT, MODEL = "provault:Dataset", "provault:Code", "provault:Environment", "provault:Model"
_GIT = "provault:git/"
_CATEGORIES = {DATASET: "dataset", CODE: "code", ENVIRONMENT: "environment", MODEL: "model"}
_ORDER = ("dataset", "code", "environment", "model")
_INPUT_RELATIONS = ("used", "wasDerivedFrom")

STEPS: Mapping[int, str] = {
    1: "envelope and statement",
    2: "bundle",
    3: "bundle digest",
    4: "attestation key",
    5: "recomputed statement",
}


# --- errors ---------------------------------------------------------------------------------------


class AttestationMalformed(DecodeError):
    """Step 1: the file is not a DSSE envelope."""

    reason = "attestation_malformed"


class AttestationPayloadType(AttestationMalformed):
    """Step 1: the envelope's payloadType is not in-toto's."""

    reason = "attestation_payload_type"


class StatementMalformed(AttestationMalformed):
    """Step 1: the payload is not JSON, or not an in-toto Statement v1."""

    reason = "statement_malformed"


class PredicateMalformed(AttestationMalformed):
    """Step 1: the statement does not carry an SLSA Provenance v1 predicate."""

    reason = "predicate_malformed"


class AttestationBundleInvalid(VerificationFailed):
    """Step 2: the bundle does not verify (``bundle_step`` is the bundle verifier's own step)."""

    reason = "attestation_bundle_invalid"


class BundleDigestMismatch(VerificationFailed):
    """Step 3: the statement names another bundle than the one given."""

    reason = "bundle_digest_mismatch"


class AttestationSignerRefused(VerificationFailed):
    """Step 4: no signature is by a key the bundle registers for ``attestation.*``."""

    reason = "attestation_signer_refused"


class AttestationKeyRevoked(AttestationSignerRefused):
    reason = "attestation_key_revoked"


class AttestationKeyNotPermitted(AttestationSignerRefused):
    reason = "attestation_key_not_permitted"


class AttestationSignatureInvalid(AttestationSignerRefused):
    reason = "attestation_bad_signature"


class StatementMismatch(VerificationFailed):
    """Step 5: the statement is not the one its bundle gives (``field`` names the first difference)."""

    reason = "statement_mismatch"


class NoAttestationKey(CannotVerify):
    """Issuing: the attestation key is missing, or not registered (or revoked) so that a bundle can prove it."""

    reason = "no_attestation_key"


def _fail(step: int, cls: type[ProvaultError], message: str, hint: str | None = None, **attrs: Any) -> NoReturn:
    message = printable(message)
    err = cls(f"step {step} ({STEPS[step]}): {message}", hint=printable(hint) if hint else None)
    err.step, err.step_name, err.detail = step, STEPS[step], message  # type: ignore[attr-defined]
    for k, v in attrs.items():
        setattr(err, k, v)
    raise err


# --- the statement (pure) ---------------------------------------------------------------------------


def provault_version() -> str:
    try:
        return importlib.metadata.version("provault")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - running from a bare checkout
        return "unknown"


def _hex(content_id: str) -> str:
    return content_id.split(":", 1)[1]


def _text(v: Any) -> str | None:
    return None if v is None else value(v)


def _rfc3339(v: Any) -> str | None:
    """A recorded time as RFC 3339 UTC (``2025-03-02T09:02:00Z``, fraction kept when there is one)."""
    text = _text(v)
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    t = (t if t.tzinfo else t.replace(tzinfo=UTC)).astimezone(UTC)
    fraction = f".{t.microsecond:06d}".rstrip("0") if t.microsecond else ""
    return t.strftime("%Y-%m-%dT%H:%M:%S") + fraction + "Z"


def _true(v: Any) -> bool:
    return v is True or (v is not None and _text(v) in ("true", "True", "1"))


def generating_runs(ev: ModelEvidence) -> list[str]:
    """The runs the model ``wasGeneratedBy``, in the order the bundle first states them."""
    first: dict[str, int] = {}
    for seq, rel, src, dst, _ in ev.facts.edges:
        if rel == "wasGeneratedBy" and src == ev.model:
            first.setdefault(dst, seq)
    return sorted(first, key=lambda r: (first[r], r))


def _params(ev: ModelEvidence, run: str) -> dict[str, Any]:
    attrs = ev.attributes(run, behind_only=True)
    out: dict[str, Any] = {"run": run}
    raw = _text(attrs.get("provault:params"))
    if raw is not None:
        try:
            out["params"] = json.loads(raw)
        except (ValueError, RecursionError):
            out["params"] = raw  # not JSON: stated as it was recorded
    command = _text(attrs.get("provault:command"))
    if command is not None:
        out["command"] = command
    return out


def _category(ev: ModelEvidence, node: str) -> str | None:
    if node.startswith(_GIT):
        return "code"
    return _CATEGORIES.get(ev.facts.kinds.get(node) or "")


def _dependency(ev: ModelEvidence, node: str, category: str) -> dict[str, Any]:
    attrs = ev.attributes(node, behind_only=True)
    label = ev.label(node)
    rd: dict[str, Any] = {}
    annotation: dict[str, Any] = {"node": node, "kind": category}
    if category == "code":
        commit = _text(attrs.get("provault:commit")) or (node[len(_GIT) :] if node.startswith(_GIT) else None)
        remote = _text(attrs.get("provault:remote"))
        if remote:
            rd["uri"] = remote
        if commit:
            rd["digest"] = {"gitCommit": commit}
        if _true(attrs.get("provault:dirty")):
            annotation["dirty"] = True
            diff = _text(attrs.get("provault:diff"))
            if diff:
                annotation["diff"] = diff
    else:
        uri = _text(attrs.get("provault:uri"))
        if uri:
            rd["uri"] = uri
        if is_content_id(node):
            rd["digest"] = {"sha256": _hex(node)}
    if label:
        rd["name"] = label
    if not rd:
        rd["name"] = node
    annotation["seqs"] = list(ev.seqs_about(node))
    rd["annotations"] = {"provault": annotation}
    return rd


def dependencies(ev: ModelEvidence) -> list[dict[str, Any]]:
    """A resource descriptor per input reached upstream: datasets, code commits, environments, models."""
    up = ev.upstream
    inputs = {
        dst
        for _, rel, src, dst, _ in ev.facts.edges
        if rel in _INPUT_RELATIONS and src in up and dst in up and dst != ev.model
    }
    found = [(c, n) for n in inputs if (c := _category(ev, n)) is not None]
    found.sort(key=lambda cn: (_ORDER.index(cn[0]), cn[1]))
    return [_dependency(ev, n, c) for c, n in found]


def _byproducts(ev: ModelEvidence) -> list[dict[str, Any]]:
    b, cp = ev.bundle, ev.bundle.checkpoint
    seqs = sorted({pe.entry.seq for pe in [*b.entries, *b.key_entries]})
    return [
        {
            "name": BUNDLE_NAME,
            "digest": {"sha256": _hex(ev.bundle_digest)},
            "mediaType": BUNDLE_MEDIA_TYPE,
            "annotations": {"provault": {"subject": b.node_id, "asOfSeq": b.as_of_seq}},
        },
        {
            "name": CHECKPOINT_NAME,
            "digest": {"sha256": hashlib.sha256(cp.signed_note.encode("utf-8")).hexdigest()},
            "annotations": {
                "provault": {
                    "origin": cp.origin,
                    "treeSize": cp.tree_size,
                    "rootHash": cp.root_hash.hex(),
                    "seqs": seqs,
                }
            },
        },
    ]


def builder_id(origin: str) -> str:
    return BUILDER_PREFIX + quote(origin, safe="/")


def statement(ev: ModelEvidence, *, builder_version: str | None) -> dict[str, Any]:
    """The in-toto Statement v1 of the model, computed from its verified evidence alone (docs/supply-chain.md).

    ``builder_version`` is the provault version that issues it (``runDetails.builder.version.provault``);
    None leaves the version out.
    """
    if not is_content_id(ev.model):
        raise InvalidArgument(
            expected_found("the model's id", "a content digest sha256:<hex> (an attestation's subject)", ev.model),
            hint="attest the model by its artifact's digest",
        )
    runs = generating_runs(ev)
    metadata: dict[str, Any] = {}
    if runs:
        attrs = ev.attributes(runs[0], behind_only=True)
        metadata["invocationId"] = runs[0]
        for key, attr in (("startedOn", "prov:startTime"), ("finishedOn", "prov:endTime")):
            when = _rfc3339(attrs.get(attr))
            if when:
                metadata[key] = when
    builder: dict[str, Any] = {"id": builder_id(ev.bundle.checkpoint.origin)}
    if builder_version is not None:
        builder["version"] = {"provault": builder_version}
    run_details: dict[str, Any] = {"builder": builder}
    if metadata:
        run_details["metadata"] = metadata
    run_details["byproducts"] = _byproducts(ev)
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": ev.label() or ev.model, "digest": {"sha256": _hex(ev.model)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": BUILD_TYPE,
                "externalParameters": {"runs": [_params(ev, r) for r in runs]},
                "internalParameters": {"runs": runs},
                "resolvedDependencies": dependencies(ev),
            },
            "runDetails": run_details,
        },
    }


def encode_statement(stmt: Mapping[str, Any]) -> bytes:
    """The payload bytes: compact JSON, keys sorted, UTF-8."""
    return json.dumps(stmt, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sign_statement(stmt: Mapping[str, Any], signer: Signer) -> bytes:
    """The DSSE envelope (JSON bytes) of ``stmt``, signed by ``signer`` over PAE(in-toto's payloadType, payload)."""
    return encode_envelope(sign_envelope(PAYLOAD_TYPE, encode_statement(stmt), [signer]))


# --- issuing ----------------------------------------------------------------------------------------------


@translate_errors
def _key_rows(conn: psycopg.Connection) -> tuple[set[str], dict[str, tuple[int, int | None]]]:
    roots = {r[0] for r in conn.execute("SELECT keyid FROM ledger.trust_root WHERE purpose = 'admin'")}
    keys = {r[0]: (int(r[1]), r[2]) for r in conn.execute("SELECT keyid, registered_seq, revoked_seq FROM ledger.keys")}
    return roots, keys


def check_signer_registered(conn: psycopg.Connection, keyid: str) -> None:
    """NoAttestationKey unless ``keyid`` is registered; NotCovered while no checkpoint covers its registration."""
    _, keys = _key_rows(conn)
    if keyid not in keys:
        raise NoAttestationKey(
            f"the attestation key {keyid} is not registered in this ledger, so no bundle can prove it may sign",
            hint="register it: `provault keys register <attestor.key>.pub --role producer --kinds 'attestation.*,gate.*' ...`",
        )
    cp = stored_checkpoints.latest(conn)
    size = 0 if cp is None else cp.tree_size
    if keys[keyid][0] >= size:
        raise NotCovered(
            f"the attestation key's registration (seq {keys[keyid][0]}) is newer than the checkpoint (tree size {size})",
            hint="retry after the next checkpoint, about a second later",
        )


def attestable_evidence(
    conn: psycopg.Connection, name: str, *, keyid: str, as_of_seq: int | None = None
) -> ModelEvidence:
    """The model's verified evidence (:func:`~query.supply.evidence.gather`), its bundle also holding the key history
    of ``keyid``, the attestation key, so that a verifier can tell whether it may sign."""
    check_signer_registered(conn, keyid)
    return gather(conn, name, as_of_seq=as_of_seq, extra_keys=(keyid,))


def check_attestor(record: KeyRecord | None, keyid: str) -> KeyRecord:
    """The attestation key as the bundle registers it, or NoAttestationKey saying why it cannot attest."""
    if record is None:
        raise NoAttestationKey(f"the bundle does not register the attestation key {keyid}")
    if record.revoked:
        raise NoAttestationKey(
            f"the attestation key {keyid} was revoked at seq {record.revoked_seq}: what it signs no longer verifies",
            hint="create a new attestation key and register it (docs/supply-chain.md, 'The signer')",
        )
    if not grants_explicitly(record, ATTESTATION_ISSUED):
        raise NoAttestationKey(
            f"the attestation key {keyid} is registered as {record.role} for {', '.join(record.kinds)} "
            f"({record.identity.get('type', '?')}), not as a service's producer key for attestation.* by name",
            hint="register it with `provault keys register ... --role producer --kinds 'attestation.*,gate.*'`",
        )
    return record


@dataclass(frozen=True, slots=True, kw_only=True)
class Issued:
    envelope_json: bytes
    """The DSSE envelope, exactly as signed."""
    evidence: ModelEvidence
    """The evidence the statement was computed from; ``evidence.bundle_json`` is the bundle file."""
    statement: dict[str, Any]
    statement_digest: str
    """``sha256:`` of the statement (the DSSE payload)."""
    envelope_digest: str
    """``sha256:`` of the envelope: the entity the ``attestation.issued`` event generated."""
    event_id: str
    """The ``attestation.issued`` event's id; empty when not recorded."""
    delivered: bool
    """Whether the event reached the ledger before ``issue`` returned (otherwise it waits in the spool)."""


def issued_prov(
    *, activity: str, model: str, envelope_digest: str, statement_digest: str, service: str
) -> dict[str, Any]:
    """The PROV document of ``attestation.issued`` (docs/supply-chain.md, "New event kinds")."""
    return {
        "prefix": dict(PREFIXES),
        "activity": {activity: {"prov:type": {"$": "provault:Attest", "type": "prov:QUALIFIED_NAME"}}},
        "entity": {
            model: {},
            envelope_digest: {
                "prov:type": {"$": "provault:Attestation", "type": "prov:QUALIFIED_NAME"},
                "provault:statement": statement_digest,
                "provault:predicateType": PREDICATE_TYPE,
            },
        },
        "agent": {service: {"prov:type": {"$": "prov:SoftwareAgent", "type": "prov:QUALIFIED_NAME"}}},
        "used": {"_:u1": {"prov:activity": activity, "prov:entity": model}},
        "wasGeneratedBy": {"_:g1": {"prov:entity": envelope_digest, "prov:activity": activity}},
        "wasAssociatedWith": {"_:w1": {"prov:activity": activity, "prov:agent": service}},
    }


def load_attestor(settings: Settings) -> Signer:
    """The attestation key, or NoAttestationKey (a precondition, not an internal fault) saying how to make it."""
    try:
        return attestor.load_key(settings)
    except KeyMaterialError as e:
        raise NoAttestationKey(e.message, hint=e.hint) from e


def record_issuing(settings: Settings, signer: Signer, issued: Issued) -> Issued:
    """Sign ``attestation.issued`` with the attestation key, spool it and wait up to ``agent.publish_timeout_s``
    for the ledger to take it; ``issued`` with the event id and whether it was delivered.

    The key's agent is made and closed here: its spool admits one writer at a time, so a server that records
    from several threads serialises the calls (``QueryServicer``)."""
    ev = issued.evidence
    prov = issued_prov(
        activity=attestation_activity_id(new_event_id()),
        model=ev.model,
        envelope_digest=issued.envelope_digest,
        statement_digest=issued.statement_digest,
        service=service_id(attestor.producer_id(settings)),
    )
    data = {
        "model": ev.model,
        "statement_digest": issued.statement_digest,
        "predicate_type": PREDICATE_TYPE,
        "as_of_seq": ev.as_of_seq,
    }
    event = attestor.record(settings, signer, ATTESTATION_ISSUED, prov, data, what="the attestation")
    return dataclasses.replace(issued, event_id=str(event), delivered=event.delivered)


def issue(
    conn: psycopg.Connection,
    settings: Settings,
    model: str,
    *,
    as_of_seq: int | None = None,
    record: bool = True,
    signer: Signer | None = None,
    builder_version: str | None = None,
) -> Issued:
    """Attest ``model`` (its digest or exact label): gather, build, sign and, when ``record``, record the issuing.

    ``signer`` defaults to the attestation key of ``settings``.  Raises NoAttestationKey when the key is
    missing, unregistered or revoked, ``gather``'s errors (``ModelNotFound``, ``ReportLimit``, ...), and
    NotRecorded when the event cannot be spooled.
    """
    key = signer or load_attestor(settings)
    ev = attestable_evidence(conn, model, keyid=key.keyid, as_of_seq=as_of_seq)
    check_attestor(ev.keys.get(key.keyid), key.keyid)
    stmt = statement(ev, builder_version=builder_version or provault_version())
    raw = sign_statement(stmt, key)
    issued = Issued(
        envelope_json=raw,
        evidence=ev,
        statement=stmt,
        statement_digest=digest(encode_statement(stmt)),
        envelope_digest=digest(raw),
        event_id="",
        delivered=False,
    )
    return record_issuing(settings, key, issued) if record else issued


# --- verifying (offline) ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class AttestationCheck:
    """What an attestation that verified proves, and on whose keys."""

    model: str
    subject_name: str
    statement_digest: str
    bundle_digest: str
    signer_keyid: str
    signer_identity: Mapping[str, str]
    signer_registered_seq: int | None
    dependencies: int
    runs: tuple[str, ...]
    bundle: BundleReport
    steps: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        b = self.bundle
        return {
            "ok": True,
            "model": self.model,
            "subject_name": self.subject_name,
            "statement_digest": self.statement_digest,
            "bundle_digest": self.bundle_digest,
            "signer": {
                "keyid": self.signer_keyid,
                "identity": dict(self.signer_identity),
                "registered_seq": self.signer_registered_seq,
            },
            "dependencies": self.dependencies,
            "runs": list(self.runs),
            "as_of_seq": b.as_of_seq,
            "checkpoint": {"origin": b.origin, "tree_size": b.tree_size, "root_hash": b.root_hash.hex()},
            "checkpoint_key": b.checkpoint_key,
            "key_source": b.key_source,
            "admin_keys_pinned": b.admin_keys_pinned,
            "steps": list(self.steps),
            "notes": list(b.notes),
        }


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        names = [k for k, _ in pairs]
        raise ValueError(f"member name {next(k for k in names if names.count(k) > 1)!r} appears more than once")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _envelope(raw: bytes) -> Envelope:
    try:
        env = parse_envelope(raw, max_size=MAX_ENVELOPE_BYTES, payload_type=None)
    except DecodeError as e:
        _fail(1, AttestationMalformed, f"the file is not a DSSE envelope: {e.message}", e.hint)
    if env.payload_type != PAYLOAD_TYPE:
        _fail(
            1,
            AttestationPayloadType,
            expected_found("payloadType", repr(PAYLOAD_TYPE), repr(env.payload_type[:120])),
            hint="provault attestations carry an in-toto statement; provault's own events use another payloadType",
        )
    return env


def parse_statement(payload: bytes) -> dict[str, Any]:
    """The DSSE payload as an in-toto Statement v1 with an SLSA Provenance v1 predicate, or step 1's error."""
    try:
        doc = json.loads(payload.decode("utf-8"), object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant)
    except UnicodeDecodeError as e:
        _fail(1, StatementMalformed, f"the payload is not UTF-8 (byte {e.start})")
    except (ValueError, RecursionError) as e:
        _fail(1, StatementMalformed, f"the payload is not JSON: {str(e)[:200]}")
    if not isinstance(doc, dict):
        _fail(1, StatementMalformed, expected_found("the statement", "a JSON object", type(doc).__name__))
    try:
        pb = json_format.ParseDict(doc, statement_pb2.Statement())
        Statement.copy_from_pb(pb).validate()
    except (json_format.ParseError, ValueError, TypeError) as e:
        _fail(
            1,
            StatementMalformed,
            f"not an in-toto Statement v1 (in-toto-attestation says: {str(e)[:300]})",
            hint=f"a statement has _type {STATEMENT_TYPE}, a subject with digests, a predicateType and a predicate",
        )
    if doc["predicateType"] != PREDICATE_TYPE:
        _fail(1, PredicateMalformed, expected_found("predicateType", PREDICATE_TYPE, repr(doc["predicateType"][:120])))
    try:
        prov = json_format.ParseDict(doc["predicate"], provenance_pb2.Provenance())
    except (json_format.ParseError, ValueError, TypeError) as e:
        _fail(1, PredicateMalformed, f"the predicate is not SLSA Provenance v1: {str(e)[:300]}")
    if not prov.build_definition.build_type or not prov.run_details.builder.id:
        _fail(
            1,
            PredicateMalformed,
            "SLSA Provenance v1 requires buildDefinition.buildType and runDetails.builder.id; one is missing",
        )
    return doc


def _bundle(bundle: bytes | query_pb2.AuditBundle, vkey: str | None, admin_keys: Sequence[bytes] | None):
    try:
        b = bundle if isinstance(bundle, query_pb2.AuditBundle) else decode_bundle(bundle)
        report = verify_bundle(b, vkey=vkey, admin_keys=admin_keys)
    except KeyMaterialError:
        raise  # the verifier's own pinned key files, not the bundle
    except (VerificationError, DecodeError) as e:
        _fail(
            2,
            AttestationBundleInvalid,
            f"the bundle does not verify: {e.message}",
            e.hint,
            bundle_step=getattr(e, "step", None),
            bundle_step_name=getattr(e, "step_name", None),
        )
    return b, report


def _claimed_digest(doc: Mapping[str, Any]) -> str | None:
    for rd in doc["predicate"].get("runDetails", {}).get("byproducts", []) or []:
        if isinstance(rd, Mapping) and rd.get("name") == BUNDLE_NAME and rd.get("mediaType") == BUNDLE_MEDIA_TYPE:
            sha = (rd.get("digest") or {}).get("sha256")
            return f"sha256:{sha}" if isinstance(sha, str) else None
    return None


def _signer(env: Envelope, ev: ModelEvidence) -> KeyRecord:
    """Step 4: a signature by a key the bundle registers as a producer of attestation.*, not revoked; verified."""
    registered = [s for s in env.signatures if s.keyid in ev.keys]
    attestors = sorted(k.keyid for k in ev.keys.values() if grants_explicitly(k, ATTESTATION_ISSUED))
    if not registered:
        _fail(
            4,
            AttestationSignerRefused,
            f"signed by key {', '.join(env.keyids())}, which the bundle does not register "
            f"(keys it registers for attestation.*: {', '.join(attestors) or 'none'})",
            hint="the attestation was signed by a key this ledger never registered, or the bundle is another ledger's",
        )
    for s in registered:
        rec = ev.keys[s.keyid]
        if rec.revoked:
            when = f"effective from {rec.revoked_from.isoformat()}" if rec.revoked_from else ""
            _fail(
                4,
                AttestationKeyRevoked,
                f"signed by key {s.keyid}, revoked at seq {rec.revoked_seq} ({when}), before the bundle's checkpoint "
                f"(tree size {ev.bundle.checkpoint.tree_size}): {rec.revoked_reason or ''}".rstrip(": "),
            )
        if not grants_explicitly(rec, ATTESTATION_ISSUED):
            who = f"{rec.identity.get('type', '?')}:{rec.identity.get('name', '?')}"
            _fail(
                4,
                AttestationKeyNotPermitted,
                f"signed by key {s.keyid} of {who}, registered as {rec.role} for {', '.join(rec.kinds)}: not an "
                "attestation key (a service's producer key registered for attestation.* by name)",
            )
        try:
            verify_envelope(
                Envelope(payload_type=env.payload_type, payload=env.payload, signatures=(s,)),
                {s.keyid: Ed25519Verifier(rec.public_key)},
            )
        except (SignatureInvalid, CannotVerify) as e:
            _fail(4, AttestationSignatureInvalid, f"the signature by key {s.keyid} does not verify: {e.message}")
    return ev.keys[registered[0].keyid]


def _short(v: Any) -> str:
    text = json.dumps(v, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 120 else text[:117] + "..."


def first_difference(expected: Any, found: Any, path: str = "") -> tuple[str, Any, Any] | None:
    """The first place (a dotted path, ``[i]`` for list items) where ``found`` differs from ``expected``."""
    if isinstance(expected, dict) and isinstance(found, dict):
        for k in [*expected, *(k for k in sorted(found) if k not in expected)]:
            sub = f"{path}.{k}" if path else k
            if k not in found:
                return sub, expected[k], "(absent)"
            if k not in expected:
                return sub, "(absent)", found[k]
            d = first_difference(expected[k], found[k], sub)
            if d:
                return d
        return None
    if isinstance(expected, list) and isinstance(found, list):
        for i, (a, b) in enumerate(zip(expected, found, strict=False)):
            d = first_difference(a, b, f"{path}[{i}]")
            if d:
                return d
        if len(expected) != len(found):
            return f"{path} (length)", len(expected), len(found)
        return None
    if type(expected) is not type(found) or expected != found:
        return path or "(the statement)", expected, found
    return None


def verify_attestation(
    envelope_bytes: bytes,
    bundle: bytes | query_pb2.AuditBundle,
    *,
    vkey: str | None = None,
    admin_keys: Sequence[bytes] | None = None,
) -> AttestationCheck:
    """Check an attestation offline against the bundle behind it (docs/supply-chain.md, "Checks offline").

    ``bundle`` is the bundle file's bytes (or the message); ``vkey`` and ``admin_keys`` are the keys the
    verifier pinned, as for ``verify_bundle``.  Raises at the first failing step; returns what was checked.
    """
    # 1. A DSSE envelope of in-toto's payloadType, holding an in-toto Statement v1 with an SLSA v1 predicate.
    env = _envelope(envelope_bytes)
    doc = parse_statement(env.payload)
    # 2. The bundle verifies.
    b, report = _bundle(bundle, vkey, admin_keys)
    ev = from_bundle(b, report)
    # 3. The statement names this bundle.
    claimed = _claimed_digest(doc)
    if claimed != ev.bundle_digest:
        _fail(
            3,
            BundleDigestMismatch,
            f"the statement names the bundle {claimed or '(none)'}, the bundle given is {ev.bundle_digest}",
            hint="give the bundle file written next to the attestation (`provault attest` writes both)",
        )
    # 4. Signed by a key the bundle registers for attestation.*, not revoked at its checkpoint.
    rec = _signer(env, ev)
    # 5. The statement is the one the bundle's verified entries give.
    version = doc["predicate"].get("runDetails", {}).get("builder", {}).get("version")
    claimed_version = version.get("provault") if isinstance(version, Mapping) else None
    try:
        expected = statement(ev, builder_version=claimed_version if isinstance(claimed_version, str) else None)
    except InvalidArgument as e:
        _fail(5, StatementMismatch, f"no statement can be computed from this bundle: {e.message}", field="subject")
    diff = first_difference(expected, doc)
    if diff:
        where, want, got = diff
        _fail(
            5,
            StatementMismatch,
            f"{where}: the bundle gives {_short(want)}, the statement says {_short(got)}",
            hint="the statement was altered after it was issued, or computed from other evidence",
            field=where,
        )
    cp = report
    runs = tuple(expected["predicate"]["buildDefinition"]["internalParameters"]["runs"])
    deps = expected["predicate"]["buildDefinition"]["resolvedDependencies"]
    who = rec.identity
    held = "pinned by you" if report.key_source == "given" else "named by the bundle itself (pin it with --vkey)"
    admins = "pinned by you" if report.admin_keys_pinned else "NOT pinned (pin them with --admin-key)"
    steps = (
        f"1 envelope: DSSE, payloadType {PAYLOAD_TYPE}; an in-toto Statement v1 (in-toto-attestation "
        f"{_package_version('in-toto-attestation')}) with an SLSA Provenance v1 predicate",
        f"2 bundle: {report.entries} entries and {report.key_entries} key entries proven against checkpoint "
        f"{cp.origin} size {cp.tree_size} root {cp.root_hash.hex()}, under the checkpoint key {held}; admin keys {admins}",
        f"3 bundle digest: {ev.bundle_digest} is the statement's byproduct {BUNDLE_NAME}",
        f"4 attestation key: {rec.keyid} ({who.get('name', '?')}, {who.get('type', '?')}), registered at seq "
        f"{rec.registered_seq} for {', '.join(rec.kinds)}, not revoked at tree size {cp.tree_size}; signature verifies",
        f"5 statement: equal to the one recomputed from the bundle: subject, {len(deps)} dependencies, "
        f"the parameters of {len(runs)} run(s), run details",
    )
    return AttestationCheck(
        model=ev.model,
        subject_name=expected["subject"][0]["name"],
        statement_digest=digest(env.payload),
        bundle_digest=ev.bundle_digest,
        signer_keyid=rec.keyid,
        signer_identity=dict(rec.identity),
        signer_registered_seq=rec.registered_seq,
        dependencies=len(deps),
        runs=runs,
        bundle=report,
        steps=steps,
    )


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover
        return "?"


__all__ = [
    "BUILD_TYPE",
    "BUNDLE_NAME",
    "PAYLOAD_TYPE",
    "PREDICATE_TYPE",
    "STATEMENT_TYPE",
    "STEPS",
    "AttestationBundleInvalid",
    "AttestationCheck",
    "AttestationKeyNotPermitted",
    "AttestationKeyRevoked",
    "AttestationMalformed",
    "AttestationPayloadType",
    "AttestationSignatureInvalid",
    "AttestationSignerRefused",
    "BundleDigestMismatch",
    "Issued",
    "NoAttestationKey",
    "NotRecorded",
    "PredicateMalformed",
    "StatementMalformed",
    "StatementMismatch",
    "attestable_evidence",
    "builder_id",
    "check_attestor",
    "dependencies",
    "digest",
    "encode_statement",
    "first_difference",
    "generating_runs",
    "issue",
    "issued_prov",
    "load_attestor",
    "parse_statement",
    "provault_version",
    "record_issuing",
    "sign_statement",
    "statement",
    "verify_attestation",
]
