"""What an OpenLineage event must be to be sealed: the checks of docs/openlineage.md, pure.

:func:`check_body` takes the exact received bytes and returns a
:class:`Checked` -- the parsed document, which event it is, the lenient cases
it was accepted with (flags) and its content digest -- or raises
:class:`BadOpenLineage` naming the member (a dotted path such as
``outputs[2].facets.schema``) and the rule it breaks.  Facets are kept as
received; only their shape (an object of objects) is checked.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ledger.core.errors import ProvaultError
from ledger.core.fastjson import dumps as json_dumps
from ledger.core.fastjson import loads as json_loads
from ledger.core.vocab import OPENLINEAGE_DATASET, OPENLINEAGE_JOB, OPENLINEAGE_RUN

EVENT_TYPES = ("START", "RUNNING", "COMPLETE", "ABORT", "FAIL", "OTHER")
TERMINAL = ("COMPLETE", "ABORT", "FAIL")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S*")
_SPEC_1 = re.compile(r"/spec/1-\d+-\d+/")

FLAG_NO_SCHEMA_URL = "schemaURL-missing"
FLAG_SPEC_1 = "spec-1"
FLAG_NO_ZONE = "eventTime-without-zone"
FLAG_FACET_BASE = "facet-without-producer"


class BadOpenLineage(ProvaultError):
    """An OpenLineage event that is not accepted: ``member`` breaks ``rule``; ``status`` is the HTTP answer."""

    reason = "bad_openlineage"

    def __init__(self, member: str, rule: str, message: str, *, status: int = 422) -> None:
        super().__init__(f"{member}: {message}")
        self.member = member
        self.rule = rule
        self.status = status


@dataclass(frozen=True, slots=True)
class Checked:
    doc: dict[str, Any]
    kind: str
    """``openlineage.run`` / ``.job`` / ``.dataset``."""
    event_time: datetime
    flags: tuple[str, ...]
    digest: str
    """``sha256:`` of the content written canonically: the same event in any JSON layout has one digest."""
    text: str
    """The received bytes as text, exactly."""
    raw_sha256: str
    """``sha256:`` of the received bytes."""


def check_body(body: bytes) -> Checked:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise BadOpenLineage("$", "utf-8", f"the body is not UTF-8 (byte {e.start})", status=400) from None
    try:
        doc = json_loads(body)
    except ValueError as e:
        raise BadOpenLineage("$", "json", f"the body is not JSON: {e}", status=400) from None
    if not isinstance(doc, dict):
        raise BadOpenLineage("$", "object", f"expected a JSON object, found {_type(doc)}", status=400)
    return check_event(doc, text)


def check_event(doc: dict[str, Any], text: str) -> Checked:
    flags: list[str] = []
    schema_url = doc.get("schemaURL")
    if schema_url is None:
        flags.append(FLAG_NO_SCHEMA_URL)
    else:
        _uri(schema_url, "schemaURL")
        if _SPEC_1.search(schema_url):
            flags.append(FLAG_SPEC_1)
    _uri(doc.get("producer"), "producer")
    when = _event_time(doc.get("eventTime"), flags)
    kind = _kind(doc, schema_url)
    if kind == OPENLINEAGE_RUN:
        _run(doc, flags)
    if kind in (OPENLINEAGE_RUN, OPENLINEAGE_JOB):
        _named(doc.get("job"), "job", flags, "facets")
        for side, extra in (("inputs", "inputFacets"), ("outputs", "outputFacets")):
            items = doc.get(side, [])
            if not isinstance(items, list):
                raise BadOpenLineage(side, "array", f"expected an array of datasets, found {_type(items)}")
            for i, item in enumerate(items):
                _named(item, f"{side}[{i}]", flags, "facets", extra)
    else:
        _named(doc.get("dataset"), "dataset", flags, "facets")
    digest = "sha256:" + hashlib.sha256(json_dumps(doc, sort_keys=True)).hexdigest()
    raw = "sha256:" + hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return Checked(
        doc=doc, kind=kind, event_time=when, flags=tuple(dict.fromkeys(flags)), digest=digest, text=text, raw_sha256=raw
    )


def _kind(doc: Mapping[str, Any], schema_url: object) -> str:
    if "run" in doc:
        if "job" not in doc:
            raise BadOpenLineage("job", "required", "a run event names its job (namespace and name)")
        return OPENLINEAGE_RUN
    if "job" in doc:
        if "dataset" in doc:
            raise BadOpenLineage("dataset", "not-allowed", "a job event carries no dataset member")
        return OPENLINEAGE_JOB
    if "dataset" in doc:
        return OPENLINEAGE_DATASET
    if isinstance(schema_url, str) and schema_url.endswith("/RunEvent"):
        raise BadOpenLineage("run", "required", "a run event has a run with its runId")
    raise BadOpenLineage("$", "event", "expected a run event (run and job), a job event (job) or a dataset event")


def _run(doc: Mapping[str, Any], flags: list[str]) -> None:
    run = doc["run"]
    if not isinstance(run, dict):
        raise BadOpenLineage("run", "object", f"expected an object, found {_type(run)}")
    run_id = run.get("runId")
    if run_id is None:
        raise BadOpenLineage("run.runId", "required", "a run has a runId (a UUID)")
    if not isinstance(run_id, str) or not _UUID.fullmatch(run_id):
        raise BadOpenLineage("run.runId", "uuid", f"expected a UUID, found {_short(run_id)}")
    _facets(run, "run", "facets", flags)
    event_type = doc.get("eventType")
    if event_type is not None and event_type not in EVENT_TYPES:
        raise BadOpenLineage(
            "eventType", "enum", f"expected one of {', '.join(EVENT_TYPES)}, found {_short(event_type)}"
        )


def _named(obj: object, where: str, flags: list[str], *facet_members: str) -> None:
    if obj is None:
        raise BadOpenLineage(where, "required", "required (an object with namespace and name)")
    if not isinstance(obj, dict):
        raise BadOpenLineage(where, "object", f"expected an object with namespace and name, found {_type(obj)}")
    for member in ("namespace", "name"):
        value = obj.get(member)
        if value is None:
            raise BadOpenLineage(f"{where}.{member}", "required", "required (a non-empty string)")
        if not isinstance(value, str) or not value:
            raise BadOpenLineage(f"{where}.{member}", "string", f"expected a non-empty string, found {_short(value)}")
    for member in facet_members:
        _facets(obj, where, member, flags)


def _facets(obj: Mapping[str, Any], where: str, member: str, flags: list[str]) -> None:
    facets = obj.get(member)
    if facets is None:
        return
    if not isinstance(facets, dict):
        raise BadOpenLineage(f"{where}.{member}", "object", f"expected an object of facets, found {_type(facets)}")
    for name, facet in facets.items():
        if not isinstance(facet, dict):
            raise BadOpenLineage(f"{where}.{member}.{name}", "object", f"a facet is an object, found {_type(facet)}")
        if "_producer" not in facet or "_schemaURL" not in facet:
            flags.append(FLAG_FACET_BASE)


def _uri(value: object, where: str) -> None:
    if value is None:
        raise BadOpenLineage(where, "required", "required (a URI)")
    if not isinstance(value, str) or not _URI.fullmatch(value):
        raise BadOpenLineage(where, "uri", f"expected a URI (scheme:...), found {_short(value)}")


def _event_time(value: object, flags: list[str]) -> datetime:
    if value is None:
        raise BadOpenLineage("eventTime", "required", "required (an ISO 8601 date-time)")
    if not isinstance(value, str) or len(value) < 16 or value[10] not in "Tt ":
        raise BadOpenLineage("eventTime", "date-time", f"expected an ISO 8601 date-time, found {_short(value)}")
    try:
        when = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1] in "Zz" else value)
    except ValueError:
        raise BadOpenLineage(
            "eventTime", "date-time", f"expected an ISO 8601 date-time, found {_short(value)}"
        ) from None
    if when.tzinfo is None:
        flags.append(FLAG_NO_ZONE)
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _type(value: object) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _short(value: object) -> str:
    text = repr(value) if not isinstance(value, dict | list) else _type(value)
    return text if len(text) <= 80 else text[:77] + "..."
