"""Building an agent's PROV documents: names and values, inputs and outputs with their digests, and the code,
environment and person captured when a run starts."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.events import format_time
from ledger.core.ids import is_content_id
from ledger.core.vocab import PREFIXES

from . import capture

log = logging.getLogger("provault.agent")

ENTITY_TYPES = {
    "data": "provault:Dataset",
    "model": "provault:Model",
    "code": "provault:Code",
    "environment": "provault:Environment",
}
"""``prov:type`` of an input or output by its role or kind; anything else is ``provault:Artifact``."""

_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


# --- names and values ------------------------------------------------------------------


def uri_id(uri: str) -> str:
    """``provault:uri/<hex>``: SHA-256 of the URI text with credentials removed (not content-addressed)."""
    text = capture.strip_credentials(uri)
    return "provault:uri/" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def qname(name: str) -> dict[str, str]:
    """A PROV-JSON qualified-name value (for ``prov:type``)."""
    return {"$": name, "type": "prov:QUALIFIED_NAME"}


def now_text() -> str:
    return format_time(datetime.now(UTC))


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON: non-finite floats as strings, numpy scalars as numbers, the rest as text."""
    if value is None or isinstance(value, (bool, str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((jsonable(v) for v in value), key=repr)
    if hasattr(value, "item") and callable(value.item):  # numpy / torch scalars
        try:
            return jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def json_text(value: Any) -> str:
    """Compact JSON text with sorted keys: the form of ``provault:params`` and ``provault:metrics``."""
    return json.dumps(jsonable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


class ProvDoc:
    """A PROV-JSON document under construction; relation ids are numbered blank nodes."""

    _ABBREV = {
        "used": "u",
        "wasGeneratedBy": "g",
        "wasDerivedFrom": "d",
        "wasAssociatedWith": "w",
        "wasAttributedTo": "a",
        "wasInformedBy": "i",
    }

    def __init__(self) -> None:
        self.doc: dict[str, Any] = {"prefix": dict(PREFIXES)}
        self._count = 0

    def element(self, section: str, sid: str, attrs: Mapping[str, Any] | None = None) -> str:
        body = self.doc.setdefault(section, {}).setdefault(sid, {})
        body.update({k: v for k, v in (attrs or {}).items() if v is not None})
        return sid

    def relation(self, section: str, **formals: Any) -> None:
        self._count += 1
        attrs = {(k if ":" in k else f"prov:{k}"): v for k, v in formals.items() if v is not None}
        self.doc.setdefault(section, {})[f"_:{self._ABBREV.get(section, 'r')}{self._count}"] = attrs

    def build(self) -> dict[str, Any]:
        return self.doc


# --- inputs and outputs -----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Artifact:
    """One input or output of a run, as recorded."""

    id: str
    """``sha256:<hex>`` for content, ``provault:uri/<hex>`` for a URI without local bytes."""
    role: str
    """The input's role (``data``, ``code``, ...) or the output's kind (``model``, ``data``, ...)."""
    name: str | None = None
    uri: str | None = None
    """Where it was: a ``file://`` URI for local paths, the URI as given (credentials removed) otherwise."""
    size: int | None = None
    files: int | None = None
    content_addressed: bool = True

    def attributes(self) -> dict[str, Any]:
        """The entity's PROV attributes."""
        attrs: dict[str, Any] = {
            "prov:type": qname(ENTITY_TYPES.get(self.role, "provault:Artifact")),
            "prov:label": self.name,
            "provault:uri": self.uri,
            "provault:bytes": self.size,
        }
        if self.files is not None and self.files != 1:
            attrs["provault:files"] = self.files
        if not self.content_addressed:
            attrs["provault:contentAddressed"] = False
        return {k: v for k, v in attrs.items() if v is not None}


_default_cache: capture.DigestCache | None = None
_cache_lock = threading.Lock()


def default_cache() -> capture.DigestCache:
    """The per-user digest cache, opened once per process."""
    global _default_cache
    with _cache_lock:
        if _default_cache is None:
            _default_cache = capture.DigestCache.default()
        return _default_cache


def _check_role(value: Any, what: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", value):
        raise InvalidArgument(expected_found(what, "a short word such as data, code or model", repr(value)))
    return value


def resolve_artifact(
    target: str | os.PathLike[str], role: str, name: str | None = None, *, cache: capture.DigestCache | None = None
) -> Artifact:
    """An :class:`Artifact` for a local path, a ``file://`` URI, a ``sha256:`` id or another URI."""
    role = _check_role(role, "role")
    text = os.fspath(target)
    if not isinstance(text, str):
        raise InvalidArgument(expected_found("path or URI", "a str or os.PathLike[str]", type(text).__name__))
    if is_content_id(text):
        return Artifact(id=text, role=role, name=name)
    if text.startswith("file://"):
        text = unquote(urlsplit(text).path)
    elif _URI.match(text):
        clean = capture.strip_credentials(text)
        return Artifact(
            id=uri_id(text),
            role=role,
            name=name or clean.rstrip("/").rsplit("/", 1)[-1] or clean,
            uri=clean,
            content_addressed=False,
        )
    digest = capture.digest_path(text, cache=cache if cache is not None else default_cache())
    return Artifact(
        id=digest.id,
        role=role,
        name=name or Path(digest.path).name,
        uri=Path(digest.path).as_uri(),
        size=digest.size,
        files=digest.files,
    )


# --- what is captured at the start ------------------------------------------------------


@lru_cache(maxsize=1)
def process_environment() -> capture.Environment:
    """The environment of this process, captured once (listing distributions costs tens of ms)."""
    return capture.environment()


@dataclass(frozen=True, slots=True, kw_only=True)
class Context:
    """Code, environment and people of a run, captured when it starts."""

    code: capture.GitState | capture.GitUnknown
    environment: capture.Environment
    author: capture.Author

    @classmethod
    def capture(
        cls,
        *,
        repo: str | os.PathLike[str] | None = None,
        author: str | None = None,
        cache: capture.DigestCache | None = None,
    ) -> Context:
        where = repo if repo is not None else "."
        code = capture.inspect_git(where, cache=cache)
        if isinstance(code, capture.GitUnknown):
            log.info("run: no code commit recorded: %s", code.reason)
        return cls(code=code, environment=process_environment(), author=capture.author(author, path=where))


def add_code(doc: ProvDoc, activity: str, code: capture.GitState | capture.GitUnknown) -> None:
    if isinstance(code, capture.GitUnknown):
        doc.element("activity", activity, {"provault:codeUnknown": code.reason})
        return
    doc.element(
        "entity",
        code.id,
        {
            "prov:type": qname("provault:Code"),
            "provault:commit": code.commit,
            "provault:remote": code.remote,
            "provault:branch": code.branch,
            "provault:dirty": code.dirty,
            "provault:diff": code.diff_digest,
            "provault:diffUnknown": code.diff_unknown,
            "provault:untracked": code.untracked or None,
        },
    )
    doc.relation("used", activity=activity, entity=code.id, role="provault:code")


def environment_attributes(env: capture.Environment) -> dict[str, Any]:
    return {
        "prov:type": qname("provault:Environment"),
        "provault:python": f"{env.python_implementation} {env.python_version}",
        "provault:system": env.system,
        "provault:machine": env.machine,
        "provault:libc": env.libc,
        "provault:distributions": env.distributions_digest,
        "provault:image": env.image_digest,
        "provault:container": env.container,
    }


def add_person(doc: ProvDoc, who: capture.Author) -> str:
    return doc.element("agent", who.id, {"prov:type": qname("prov:Person"), "prov:label": who.name})
