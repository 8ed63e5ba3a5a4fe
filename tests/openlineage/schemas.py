"""The published OpenLineage schemas (tests/openlineage/spec/) as jsonschema validators."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry, Resource

SPEC = Path(__file__).parent / "spec"
CORE = "https://openlineage.io/spec/2-0-2/OpenLineage.json"


@cache
def registry() -> Registry:
    resources = []
    for path in sorted(SPEC.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        resources.append((doc["$id"], Resource.from_contents(doc)))
    return Registry().with_resources(resources)


def errors(event: dict[str, Any], definition: str = "RunEvent") -> list[str]:
    """What the published schema finds wrong with ``event`` as a ``definition`` (RunEvent, JobEvent, DatasetEvent)."""
    validator = Draft202012Validator(
        {"$ref": f"{CORE}#/$defs/{definition}"},
        registry=registry(),
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    return sorted(f"{'/'.join(map(str, e.absolute_path)) or '$'}: {e.message}" for e in validator.iter_errors(event))
