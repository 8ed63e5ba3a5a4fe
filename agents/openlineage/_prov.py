"""An accepted OpenLineage event as a PROV-JSON document, pure: the mapping table of docs/openlineage.md."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from ledger.core.events import format_time
from ledger.core.fastjson import dumps as json_dumps
from ledger.core.vocab import (
    OPENLINEAGE_DATASET,
    OPENLINEAGE_JOB,
    git_id,
    ol_dataset_id,
    ol_dataset_version_id,
    ol_job_id,
    ol_run_id,
    person_id,
    service_id,
)

from ._spec import TERMINAL, Checked

_COMMIT = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_GROUP_OWNERS = ("team", "group", "service", "application", "system", "org", "organization")


def _qname(name: str) -> dict[str, str]:
    return {"$": name, "type": "prov:QUALIFIED_NAME"}


def _json(value: Any) -> str:
    return json_dumps(value, sort_keys=True).decode()


class _Doc:
    """A PROV-JSON document being written: elements merge by id, relations get blank-node ids."""

    def __init__(self) -> None:
        self.sections: dict[str, dict[str, Any]] = {}
        self._n = 0

    def element(self, section: str, node: str, **attrs: Any) -> str:
        slot = self.sections.setdefault(section, {}).setdefault(node, {})
        slot.update({k.replace("__", ":", 1): v for k, v in attrs.items() if v is not None and v != ""})
        return node

    def relation(self, section: str, **refs: Any) -> None:
        self._n += 1
        body = {k.replace("__", ":", 1): v for k, v in refs.items() if v is not None}
        self.sections.setdefault(section, {})[f"_:r{self._n}"] = body

    def prov(self) -> dict[str, Any]:
        return {k: v for k, v in self.sections.items() if v}


def to_prov(checked: Checked) -> dict[str, Any]:
    doc, d = checked.doc, _Doc()
    if checked.kind == OPENLINEAGE_DATASET:
        _dataset(d, doc["dataset"])
        return d.prov()
    job = doc["job"]
    plan = _job(d, job)
    if checked.kind == OPENLINEAGE_JOB:
        for item in doc.get("inputs", []):
            d.relation("wasInfluencedBy", prov__influencee=plan, prov__influencer=_dataset(d, item))
        for item in doc.get("outputs", []):
            d.relation("wasInfluencedBy", prov__influencee=_dataset(d, item), prov__influencer=plan)
        return d.prov()
    _run_event(d, checked, plan)
    return d.prov()


def _run_event(d: _Doc, checked: Checked, plan: str) -> None:
    doc = checked.doc
    run = doc["run"]
    run_uuid = run["runId"].lower()
    facets = run.get("facets") or {}
    job_facets = doc["job"].get("facets") or {}
    when = format_time(checked.event_time)
    state = doc.get("eventType")
    error = facets.get("errorMessage") or {}
    nominal = facets.get("nominalTime") or {}
    activity = d.element(
        "activity",
        ol_run_id(run_uuid),
        prov__type=_qname("provault:OpenLineageRun"),
        prov__label=doc["job"]["name"],
        prov__startTime=when if state == "START" else None,
        prov__endTime=when if state in TERMINAL else None,
        provault__state=state if state in TERMINAL else None,
        provault__error=error.get("message") if isinstance(error.get("message"), str) else None,
        provault__nominalStart=nominal.get("nominalStartTime") if isinstance(nominal, dict) else None,
    )
    software = d.element(
        "agent", service_id(doc["producer"]), prov__type=_qname("prov:SoftwareAgent"), prov__label=doc["producer"]
    )
    d.relation("wasAssociatedWith", prov__activity=activity, prov__agent=software, prov__plan=plan)
    for owner in _owners(job_facets.get("ownership")):
        d.relation("wasAssociatedWith", prov__activity=activity, prov__agent=d.element("agent", owner), prov__plan=plan)
    for code in _code(d, job_facets):
        d.relation("used", prov__activity=activity, prov__entity=code, prov__role=_qname("provault:code"))
    parent = facets.get("parent") or {}
    parent_run = parent.get("run") if isinstance(parent, dict) else None
    if isinstance(parent_run, dict) and isinstance(parent_run.get("runId"), str):
        informant = d.element("activity", ol_run_id(parent_run["runId"]), prov__type=_qname("provault:OpenLineageRun"))
        d.relation("wasInformedBy", prov__informed=activity, prov__informant=informant)
        parent_job = parent.get("job") if isinstance(parent.get("job"), dict) else {}
        name, ns = parent_job.get("name"), parent_job.get("namespace")
        if isinstance(name, str) and name:  # only its names: the parent facet's members are not checked
            parent_plan = _job(d, {"namespace": ns if isinstance(ns, str) and ns else "default", "name": name})
            d.relation("wasAssociatedWith", prov__activity=informant, prov__agent=software, prov__plan=parent_plan)
    reads = []
    for item in doc.get("inputs", []):
        node = _dataset(d, item, version=_version(item))
        reads.append(node)
        d.relation("used", prov__activity=activity, prov__entity=node)
    for item in doc.get("outputs", []):
        node = _dataset(d, item, version=_version(item) or "", run_uuid=run_uuid)
        d.relation("wasGeneratedBy", prov__entity=node, prov__activity=activity)
        for source in reads:
            if source != node:
                d.relation(
                    "wasDerivedFrom", prov__generatedEntity=node, prov__usedEntity=source, prov__activity=activity
                )


def _job(d: _Doc, job: Mapping[str, Any]) -> str:
    facets = job.get("facets") or {}
    job_type = facets.get("jobType") or {}
    sql = facets.get("sql") or {}
    docs = facets.get("documentation") or {}
    kind = "/".join(str(job_type[k]) for k in ("processingType", "integration", "jobType") if job_type.get(k))
    return d.element(
        "entity",
        ol_job_id(job["namespace"], job["name"]),
        prov__type=_qname("prov:Plan"),
        prov__label=job["name"],
        provault__namespace=job["namespace"],
        provault__name=job["name"],
        provault__jobType=kind or None,
        provault__sql=sql.get("query") if isinstance(sql.get("query"), str) else None,
        provault__documentation=docs.get("description") if isinstance(docs.get("description"), str) else None,
    )


def _dataset(d: _Doc, item: Mapping[str, Any], *, version: str | None = None, run_uuid: str | None = None) -> str:
    """The dataset's entity; with ``version`` (or ``run_uuid`` for an output), the entity of that version."""
    facets = item.get("facets") or {}
    ns, name = item["namespace"], item["name"]
    source = facets.get("dataSource") or {}
    dataset = d.element(
        "entity",
        ol_dataset_id(ns, name),
        prov__type=_qname("provault:Dataset"),
        prov__label=name,
        provault__namespace=ns,
        provault__name=name,
        provault__uri=source.get("uri") if isinstance(source.get("uri"), str) else None,
        provault__schema=_schema(facets.get("schema")) if run_uuid is None and version is None else None,
    )
    if version is None and run_uuid is None:
        return dataset
    node = ol_dataset_version_id(ns, name, version=version or None, run_uuid=run_uuid)
    out_facets = item.get("outputFacets") or {}
    stats = out_facets.get("outputStatistics") or {}
    d.element(
        "entity",
        node,
        prov__type=_qname("provault:Dataset"),
        prov__label=name,
        provault__version=version or run_uuid,
        provault__schema=_schema(facets.get("schema")),
        provault__columnLineage=_column_lineage(facets.get("columnLineage")),
        provault__rowCount=stats.get("rowCount") if isinstance(stats.get("rowCount"), int) else None,
        provault__bytes=stats.get("size") if isinstance(stats.get("size"), int) else None,
    )
    d.relation("hadMember", prov__collection=dataset, prov__entity=node)
    return node


def _schema(facet: object) -> str | None:
    """The schema facet's fields as compact JSON text, ``[[name, type], ...]``, nested fields as ``parent.child``.

    Descriptions and the facet's other members stay in the sealed event's received JSON only, so a wide
    table's schema is not stored twice at full size.
    """
    if not isinstance(facet, dict) or not isinstance(facet.get("fields"), list):
        return None
    out: list[list[str | None]] = []

    def walk(fields: list, prefix: str, depth: int) -> None:
        for f in fields:
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                continue
            kind = f.get("type")
            out.append([prefix + f["name"], kind if isinstance(kind, str) else None])
            if isinstance(f.get("fields"), list) and depth < 16:
                walk(f["fields"], f"{prefix}{f['name']}.", depth + 1)

    walk(facet["fields"], "", 0)
    return _json(out)


def _column_lineage(facet: object) -> str | None:
    """The column lineage facet as compact JSON text: ``{output field: [[namespace, name, input field], ...]}``."""
    fields = facet.get("fields") if isinstance(facet, dict) else None
    if not isinstance(fields, dict):
        return None
    out = {}
    for name, spec in fields.items():
        inputs = spec.get("inputFields") if isinstance(spec, dict) else None
        out[name] = [[i.get("namespace"), i.get("name"), i.get("field")] for i in inputs or [] if isinstance(i, dict)]
    return _json(out)


def _version(item: Mapping[str, Any]) -> str | None:
    facet = (item.get("facets") or {}).get("version") or {}
    value = facet.get("datasetVersion") if isinstance(facet, dict) else None
    return value if isinstance(value, str) and value else None


def _owners(facet: object) -> list[str]:
    owners = facet.get("owners") if isinstance(facet, dict) else None
    out = []
    for owner in owners if isinstance(owners, list) else []:
        name = owner.get("name") if isinstance(owner, dict) else None
        if not isinstance(name, str) or not name:
            continue
        kind = str(owner.get("type") or "").lower()
        who = name.split(":", 1)[1] if name.startswith(("user:", "team:")) and len(name) > 5 else name
        out.append(service_id(who) if kind in _GROUP_OWNERS or name.startswith("team:") else person_id(who))
    return out


def _code(d: _Doc, facets: Mapping[str, Any]) -> list[str]:
    found = []
    location = facets.get("sourceCodeLocation") or {}
    if isinstance(location, dict):
        version = str(location.get("version") or "").lower()
        where = location.get("repoUrl") or location.get("url")
        if _COMMIT.fullmatch(version):
            found.append(
                d.element(
                    "entity",
                    git_id(version),
                    prov__type=_qname("provault:Code"),
                    provault__remote=where if isinstance(where, str) else None,
                    provault__path=location.get("path") if isinstance(location.get("path"), str) else None,
                )
            )
        elif isinstance(where, str) and where:
            node = "provault:ol/code/" + quote(where, safe="") + (f"@{quote(version, safe='')}" if version else "")
            found.append(d.element("entity", node, prov__type=_qname("provault:Code"), provault__remote=where))
    source = facets.get("sourceCode") or {}
    if isinstance(source, dict) and isinstance(source.get("sourceCode"), str):
        digest = "sha256:" + hashlib.sha256(source["sourceCode"].encode("utf-8", "surrogatepass")).hexdigest()
        language = source.get("language")
        found.append(
            d.element(
                "entity",
                digest,
                prov__type=_qname("provault:Code"),
                provault__language=language if isinstance(language, str) else None,
            )
        )
    return found
