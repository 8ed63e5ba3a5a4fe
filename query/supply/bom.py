"""A model's ML bill of materials: CycloneDX 1.6 JSON, built from its verified evidence (docs/supply-chain.md).

:func:`build_bom` reads a :class:`~query.supply.evidence.ModelEvidence` (a bundle that has already been
verified) and nothing else.  The BOM is built with ``cyclonedx-python-lib``'s model classes and serialised
with its 1.6 JSON outputter:

* ``metadata.component``: the model, type ``machine-learning-model``, ``bom-ref`` its node id, its SHA-256
  hash, ``name`` its label and ``version`` its ``provault:version``;
* ``components``: what the model was made from, upstream of it in the evidence -- datasets (``data``, with
  their hash and a CycloneDX ``data`` entry naming the URI), code commits (``application``: the commit in
  ``version`` and ``pedigree.commits``, the remote as a ``vcs`` reference), environments (``platform``),
  other models (a base model: ``machine-learning-model``) and any other artifact (``file``);
* ``dependencies``: from the PROV edges, each component depending on the components it was made from
  (through the runs that generated it: the model on its data, code and environment);
* the model card (``modelCard``, which the library cannot express yet, added to the serialised JSON
  following the 1.6 schema): the datasets, the generating run's metrics, its parameters, and the
  considerations the ledger records -- gate decisions, quarantines and revoked keys (see
  :func:`_considerations`).

Each component carries ``provault:seqs``, the seqs of the log entries that state it, and the BOM's
``metadata.properties`` name the checkpoint and the bundle those entries are proven in, so every claim can
be checked against the ledger (``provault bundle`` / ``verify-bundle``).  The JSON is validated against the
CycloneDX 1.6 schema before it is returned; a BOM that does not validate is a bug, raised as
:class:`BomInvalid` with the validator's message.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata as dist_metadata
from typing import Any

from cyclonedx.contrib.this.builders import this_component
from cyclonedx.model import (
    ExternalReference,
    ExternalReferenceType,
    HashAlgorithm,
    HashType,
    Property,
    XsUri,
)
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Commit, Component, ComponentType, Pedigree
from cyclonedx.model.contact import OrganizationalContact
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from jsonschema import Draft7Validator

from ledger.core.errors import ProvaultError
from ledger.core.events import format_time
from ledger.core.vocab import APPROVER_ROLE, GATE_DECIDED, QUARANTINE_PLACED
from provault.v1 import query_pb2
from query.report.facts import role, value

from .evidence import BUNDLE_MEDIA_TYPE, ModelEvidence, grants_explicitly, key_node_id

SPEC_VERSION = "1.6"
MODEL, DATASET, CODE, ENVIRONMENT = "provault:Model", "provault:Dataset", "provault:Code", "provault:Environment"
GIT_PREFIX = "provault:git/"
HOST_PREFIX = "provault:host/"
PERSON_PREFIX = "provault:person/"
KEY_PREFIX = key_node_id("")
AGENT_RELATIONS = frozenset({"wasAssociatedWith", "wasAttributedTo", "actedOnBehalfOf"})
"""Relations to agents: who made something, not what it was made from."""
_SHA256 = re.compile(r"sha256:([0-9a-f]{64})")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_SCP_REMOTE = re.compile(r"(?P<user>[A-Za-z0-9._-]+)@(?P<host>[A-Za-z0-9.-]+):(?P<path>[^/].*)")
_FORMATS = Draft7Validator.FORMAT_CHECKER


class BomInvalid(ProvaultError):
    """The BOM built does not validate against the CycloneDX schema: a bug in provault, never the ledger's data."""

    reason = "bom_invalid"


# --- reading the evidence ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    node: str
    type: ComponentType
    attributes: dict[str, Any]
    seqs: tuple[int, ...]
    depends_on: list[str] = field(default_factory=list)


def _entities(ev: ModelEvidence) -> set[str]:
    """The nodes the bundle's graph or its entries' rows say are entities (not activities, not agents)."""
    found = {n.id for n in ev.bundle.nodes if n.type == query_pb2.NODE_TYPE_ENTITY}
    return found | {n.id for e in ev.facts.entries.values() for n in e.rows.nodes if n.node_type == "entity"}


def _component_type(ev: ModelEvidence, node: str) -> ComponentType:
    kind = ev.facts.kinds.get(node)
    if kind == MODEL:
        return ComponentType.MACHINE_LEARNING_MODEL
    if kind == DATASET:
        return ComponentType.DATA
    if kind == CODE or node.startswith(GIT_PREFIX):
        # The training code at a commit is the program that made the model; CycloneDX has no "source" type.
        return ComponentType.APPLICATION
    if kind == ENVIRONMENT:
        # The interpreter, libraries and image the run executed in: CycloneDX's runtime environment.
        return ComponentType.PLATFORM
    return ComponentType.FILE


def _parts(ev: ModelEvidence) -> dict[str, _Part]:
    """The model and every entity it was made from, each with the components it directly depends on."""
    entities = _entities(ev)
    nodes = sorted(n for n in ev.upstream if n == ev.model or (n in entities and not n.startswith(KEY_PREFIX)))
    parts = {
        n: _Part(node=n, type=_component_type(ev, n), attributes=ev.attributes(n), seqs=ev.seqs_about(n)) for n in nodes
    }
    parts[ev.model].type = ComponentType.MACHINE_LEARNING_MODEL
    up: dict[str, set[str]] = {}
    for _, rel, src, dst, _ in ev.facts.edges:
        if rel != "wasInvalidatedBy" and rel not in AGENT_RELATIONS and src in ev.upstream and dst in ev.upstream:
            up.setdefault(src, set()).add(dst)
    for part in parts.values():
        # Walk upstream through what is not a component (runs, pipeline steps) and stop at the first
        # components: those are what this one was made from.
        seen, todo, found = {part.node}, [part.node], set()
        while todo:
            for nxt in up.get(todo.pop(), ()):
                if nxt in seen:
                    continue
                seen.add(nxt)
                if nxt in parts:
                    found.add(nxt)
                else:
                    todo.append(nxt)
        part.depends_on = sorted(found - {part.node})
    return parts


def _generating_runs(ev: ModelEvidence) -> list[str]:
    runs = {dst for _, rel, src, dst, _ in ev.facts.edges if rel == "wasGeneratedBy" and src == ev.model}
    return sorted(runs & ev.upstream)


def _authors(ev: ModelEvidence, node: str) -> list[str]:
    """Agents a node is attributed to or whose activity generated it, approvers and machines left out."""
    makers = {node} | {dst for _, rel, src, dst, _ in ev.facts.edges if rel == "wasGeneratedBy" and src == node}
    found: dict[str, None] = {}
    for _, rel, src, dst, attrs in ev.facts.edges:
        if (
            rel in AGENT_RELATIONS
            and src in makers
            and role(attrs) != APPROVER_ROLE
            and not dst.startswith(HOST_PREFIX)
        ):
            found[dst] = None
    return list(found)


def _seqs(seqs: Iterable[int]) -> str:
    return ",".join(str(s) for s in sorted(set(seqs)))


def _iri(text: str | None) -> str | None:
    """``text`` as an IRI the schema accepts, an scp-style git remote (``git@host:path``) as ``ssh://``."""
    if not text:
        return None
    m = _SCP_REMOTE.fullmatch(text)
    if m and "://" not in text:
        text = f"ssh://{m['user']}@{m['host']}/{m['path']}"
    return text if _FORMATS.conforms(text, "iri-reference") and _FORMATS.conforms(text, "iri") else None


# --- components -------------------------------------------------------------------------------------


def _properties(part: _Part) -> list[Property]:
    """Every ``provault:`` attribute the entries state, as recorded, and the seqs of those entries."""
    props = [Property(name=k, value=value(v)) for k, v in sorted(part.attributes.items()) if k.startswith("provault:")]
    return [*props, Property(name="provault:seqs", value=_seqs(part.seqs))]


def _contact(ev: ModelEvidence, agent: str) -> OrganizationalContact:
    local = agent.split("/", 1)[1] if "/" in agent else agent
    email = local if agent.startswith(PERSON_PREFIX) and _EMAIL.fullmatch(local) else None
    return OrganizationalContact(name=ev.label(agent) or local, email=email)


def _component(ev: ModelEvidence, part: _Part) -> Component:
    attrs = part.attributes
    label = ev.label(part.node)
    hashes = []
    if (m := _SHA256.fullmatch(part.node)) and attrs.get("provault:contentAddressed") is not False:
        hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=m[1]))
    version = value(attrs["provault:version"]) if "provault:version" in attrs else None
    refs, pedigree, name = [], None, label or part.node
    if part.type is ComponentType.APPLICATION and part.node.startswith(GIT_PREFIX):
        commit = value(attrs.get("provault:commit", part.node[len(GIT_PREFIX) :]))
        remote = value(attrs["provault:remote"]) if "provault:remote" in attrs else None
        url = _iri(remote)
        version = commit
        name = label or remote or part.node
        pedigree = Pedigree(commits=[Commit(uid=commit, url=XsUri(url) if url else None)])
        if url:
            refs.append(ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(url)))
    return Component(
        type=part.type,
        name=name,
        version=version,
        bom_ref=part.node,
        hashes=hashes,
        authors=[_contact(ev, a) for a in _authors(ev, part.node)],
        external_references=refs,
        pedigree=pedigree,
        properties=_properties(part),
    )


def _data(ev: ModelEvidence, part: _Part) -> list[dict[str, Any]]:
    """The CycloneDX ``data`` of a dataset component (not in the library yet): what it is and where."""
    entry: dict[str, Any] = {"type": "dataset", "name": ev.label(part.node) or part.node}
    uri = part.attributes.get("provault:uri")
    if uri is not None and (url := _iri(value(uri))):
        entry["contents"] = {"url": url}
    return [entry]


# --- the model card ---------------------------------------------------------------------------------


def _metrics(text: Any) -> list[dict[str, str]]:
    try:
        recorded = json.loads(value(text))
    except (TypeError, ValueError, RecursionError):
        return []
    if not isinstance(recorded, Mapping):
        return []
    return [
        {"type": str(name), "value": v if isinstance(v, str) else json.dumps(v, sort_keys=True)}
        for name, v in recorded.items()
    ]


def _gate_entries(ev: ModelEvidence) -> list[tuple[int, Mapping[str, Any]]]:
    out = []
    for seq, e in sorted(ev.facts.entries.items()):
        if e.event.kind != GATE_DECIDED or not isinstance(e.event.data, Mapping):
            continue
        signer = ev.keys.get(e.keyid)
        if signer is None or signer.revoked or not grants_explicitly(signer, GATE_DECIDED):
            continue  # a decision counts only from an attestation key (query.supply.evidence.grants_explicitly)
        activities = set(e.event.prov.get("activity", {})) if isinstance(e.event.prov, Mapping) else set()
        if e.event.data.get("model") == ev.model or activities & ev.downstream:
            out.append((seq, e.event.data))
    return out


def _failed_rules(data: Mapping[str, Any]) -> list[str]:
    failed = []
    for rule in data.get("rules") or ():
        if isinstance(rule, Mapping):
            name = rule.get("rule") or rule.get("name")
            verdict = rule.get("verdict", rule.get("passed"))
            if name and verdict not in (True, "pass", "passed", "allow"):
                failed.append(str(name))
    return failed


def _considerations(ev: ModelEvidence) -> tuple[dict[str, Any], list[Property], set[int]]:
    """The model card's ``considerations``, the properties that name them for machines, and their seqs.

    CycloneDX 1.6's model card has no field for governance decisions or for the state of the evidence, so
    they go where a reader deciding whether to use the model looks: ``considerations``.  A gate that
    allowed the model is an intended use (``useCases``: it may be deployed under that policy).  What
    speaks against using it -- a gate that denied it, a quarantine or other invalidation of the model or
    of an input, an entry behind it signed by a key since revoked or quarantined -- is a risk of applying
    the model, and ``ethicalConsiderations`` is the card's only list of risks with a mitigation (the
    ledger's own response: the gate refuses it, the key's later statements are not trusted).  Each is
    also a ``provault:`` property of the card with its seq, so a program need not parse the prose.
    """
    f = ev.facts
    uses: list[str] = []
    risks: list[dict[str, str]] = []
    props: list[Property] = []
    seqs: set[int] = set()
    for seq, data in _gate_entries(ev):
        verdict, policy = str(data.get("verdict", "?")), str(data.get("policy_digest", "?"))
        seqs.add(seq)
        props.append(Property(name="provault:gate", value=f"{verdict} policy {policy} seq {seq}"))
        if verdict == "allow":
            uses.append(f"deployment, allowed by the provault gate under policy {policy} (gate.decided, seq {seq})")
        else:
            failed = _failed_rules(data)
            why = f": rules {', '.join(failed)} failed" if failed else ""
            risks.append(
                {
                    "name": f"the provault gate denied deployment under policy {policy}{why}",
                    "mitigationStrategy": f"deployments through the gate are refused (gate.decided, seq {seq})",
                }
            )
    placed = {q.activity: q for q in ev.quarantines}
    for seq, rel, src, dst, _ in f.edges:
        if rel != "wasInvalidatedBy" or src not in ev.upstream:
            continue
        q = placed.get(dst)
        attrs = ev.attributes(dst)
        reason = q.reason if q else value(attrs.get("provault:reason") or attrs.get("prov:label") or "no reason stated")
        what = "the model" if src == ev.model else f"its input {f.name(src)}"
        kind = f.kinds.get(dst) or "an invalidation"
        by = f"seq {seq}, signed by {f.signer(seq)}"
        seqs.add(seq)
        props.append(Property(name="provault:invalidatedBy", value=f"{src} by {dst} seq {seq}"))
        risks.append(
            {
                "name": f"{what} was invalidated by {dst} ({kind}): {reason}",
                "mitigationStrategy": (
                    f"quarantined ({QUARANTINE_PLACED}, {by}): the provault gate refuses a model it reaches"
                    if q
                    else f"no longer valid: wasInvalidatedBy {dst} ({by})"
                ),
            }
        )
    statements = {pe.entry.seq for pe in ev.bundle.entries}
    signed: dict[str, list[int]] = {}
    for seq in sorted(statements & set(f.entries)):
        signed.setdefault(f.entries[seq].keyid, []).append(seq)
    for q in ev.quarantines:
        if q.target_key in signed:
            seqs.add(q.seq)
            props.append(Property(name="provault:quarantinedKey", value=f"{q.target_key} seq {q.seq}"))
            risks.append(
                {
                    "name": f"entries at seqs {_seqs(signed[q.target_key])} are signed by key {q.target_key}, "
                    f"quarantined: {q.reason}",
                    "mitigationStrategy": "the provault gate refuses a model whose evidence such a key signed "
                    f"(quarantine.placed, seq {q.seq})",
                }
            )
    for keyid, at in sorted(signed.items()):
        rec = ev.keys.get(keyid)
        if rec is None or rec.revoked_seq is None:
            continue
        seqs.add(rec.revoked_seq)
        since = format_time(rec.revoked_from) if rec.revoked_from else "its revocation"
        late = [s for s in at if rec.revoked_from is not None and f.entries[s].event.time >= rec.revoked_from]
        after = f"; seqs {_seqs(late)} were signed after that" if late else ""
        props.append(Property(name="provault:revokedKey", value=f"{keyid} seq {rec.revoked_seq}"))
        risks.append(
            {
                "name": f"entries at seqs {_seqs(at)} are signed by key {keyid} of {f.signers.get(keyid, 'a key')}, "
                f"revoked effective from {since}: {rec.revoked_reason or 'no reason stated'}{after}",
                "mitigationStrategy": "the ledger accepts nothing more the key signs, and the provault gate does not "
                f"count what it signed from {since} on (key.revoked, seq {rec.revoked_seq})",
            }
        )
    out: dict[str, Any] = {}
    if uses:
        out["useCases"] = uses
    if risks:
        out["ethicalConsiderations"] = risks
    return out, props, seqs


def _model_card(ev: ModelEvidence, parts: Mapping[str, _Part]) -> dict[str, Any]:
    runs = _generating_runs(ev)
    model = parts[ev.model]
    params: dict[str, Any] = {}
    task = next(
        (ev.attributes(n)["provault:task"] for n in [ev.model, *runs] if "provault:task" in ev.attributes(n)), None
    )
    if task is not None:
        params["task"] = value(task)
    datasets = [d for d in model.depends_on if parts[d].type is ComponentType.DATA]
    if datasets:
        params["datasets"] = [{"ref": d} for d in datasets]
    # inputs / outputs: no producer records a model's input or output formats yet, so none are claimed.
    card: dict[str, Any] = {}
    if params:
        card["modelParameters"] = params
    metrics: list[dict[str, str]] = []
    props: list[Property] = []
    seqs: set[int] = set()
    for run in runs:
        attrs = ev.attributes(run, behind_only=True)
        props.append(Property(name="provault:run", value=run))
        seqs |= set(ev.seqs_about(run))
        for name in ("provault:params", "provault:command"):
            if name in attrs:
                props.append(Property(name=name, value=value(attrs[name])))
        if "provault:metrics" in attrs:
            metrics += _metrics(attrs["provault:metrics"])
    if metrics:
        card["quantitativeAnalysis"] = {"performanceMetrics": metrics}
    considerations, more, also = _considerations(ev)
    if considerations:
        card["considerations"] = considerations
    props += more
    seqs |= also
    # The library serialises properties sorted; do the same here, so the card reads like the rest.
    card["properties"] = [
        {"name": p.name, "value": p.value}
        for p in sorted([*props, Property(name="provault:seqs", value=_seqs(seqs))], key=lambda p: (p.name, p.value))
    ]
    return card


# --- the BOM ----------------------------------------------------------------------------------------


def _provault_version() -> str:
    try:
        return dist_metadata.version("provault")
    except dist_metadata.PackageNotFoundError:
        return "unknown"


def _metadata_properties(ev: ModelEvidence) -> list[Property]:
    cp = ev.bundle.checkpoint
    return [
        Property(name="provault:checkpoint:origin", value=cp.origin),
        Property(name="provault:checkpoint:treeSize", value=str(cp.tree_size)),
        Property(name="provault:checkpoint:rootHash", value=cp.root_hash.hex()),
        Property(name="provault:checkpoint:signedNote", value=cp.signed_note),
        Property(name="provault:asOfSeq", value=str(ev.as_of_seq)),
        Property(name="provault:bundle:digest", value=ev.bundle_digest),
        Property(name="provault:bundle:mediaType", value=BUNDLE_MEDIA_TYPE),
        Property(name="provault:model:query", value=ev.query),
    ]


def build_bom(ev: ModelEvidence) -> dict[str, Any]:
    """The CycloneDX 1.6 ML-BOM of the model ``ev`` is about, as a JSON object, validated (module docstring)."""
    parts = _parts(ev)
    components = {n: _component(ev, p) for n, p in parts.items()}
    tool = Component(type=ComponentType.APPLICATION, name="provault", version=_provault_version())
    meta = BomMetaData(component=components[ev.model], properties=_metadata_properties(ev))
    meta.tools.components.add(tool)
    meta.tools.components.add(this_component())
    bom = Bom(metadata=meta)
    for n, c in components.items():
        if n != ev.model:
            bom.components.add(c)
    for n, part in parts.items():
        bom.register_dependency(components[n], [components[d] for d in part.depends_on])
    doc = json.loads(JsonV1Dot6(bom).output_as_string())
    doc["metadata"]["component"]["modelCard"] = _model_card(ev, parts)
    for c in doc.get("components", ()):
        part = parts.get(c.get("bom-ref"))
        if part is not None and part.type is ComponentType.DATA:
            c["data"] = _data(ev, part)
    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(json.dumps(doc))
    if error is not None:
        raise BomInvalid(
            f"the BOM of {ev.model} does not validate against the CycloneDX {SPEC_VERSION} schema: {error}",
            hint="this is a bug in provault; please report it with the model's audit bundle (`provault bundle`)",
        )
    return doc


__all__ = ["SPEC_VERSION", "BomInvalid", "build_bom"]
