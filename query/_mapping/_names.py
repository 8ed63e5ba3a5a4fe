"""Node and attribute names in one canonical spelling, whatever prefixes an event bound."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.core.provjson import INTERNATIONALIZED_STRING, PREDEFINED_PREFIXES, prefixes
from ledger.core.vocab import PREFIXES

# Fixed prefixes, longest namespace first so the most specific one names an IRI.
_CANONICAL: tuple[tuple[str, str], ...] = tuple(
    sorted({**PREDEFINED_PREFIXES, **PREFIXES}.items(), key=lambda kv: (-len(kv[1]), kv[0]))
)
_CANONICAL_PREFIXES = frozenset(p for p, _ in _CANONICAL)


# --- names -----------------------------------------------------------------------


def canonical_id(iri: str) -> str:
    """The projection's spelling of the node (or attribute) named by ``iri``."""
    for prefix, ns in _CANONICAL:
        if iri.startswith(ns) and len(iri) > len(ns):
            return f"{prefix}:{iri[len(ns) :]}"
    if iri.partition(":")[0] in _CANONICAL_PREFIXES:
        return f"<{iri}>"
    return iri


def _thaw(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thaw(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_thaw(v) for v in value]
    return value


class _Names:
    """Expands one document's qualified names (already validated) to canonical ids."""

    def __init__(self, doc: Mapping[str, Any]) -> None:
        self.prefixes = dict(prefixes(doc))
        self.default = doc.get("prefix", {}).get("default")

    def iri(self, qname: str) -> str:
        prefix, colon, local = qname.partition(":")
        if not colon:
            return f"{self.default}{qname}"
        return self.prefixes[prefix] + local

    def id(self, qname: str) -> str:
        return qname if qname.startswith("_:") else canonical_id(self.iri(qname))

    def value(self, value: Any) -> Any:
        """An attribute value (already validated) in the projection's one spelling per literal form.

        A language-tagged string becomes ``{"$", "lang"}``, with or without
        its ``prov:InternationalizedString`` datatype, and a string written as
        a value object without a language tag (``{"$"}``, or typed
        ``prov:InternationalizedString``) a plain string.
        """
        if isinstance(value, (list, tuple)):
            return [self.value(v) for v in value]
        if not isinstance(value, Mapping):
            return value
        if "lang" in value:
            return {"$": value["$"], "lang": value["lang"]}
        if "type" not in value or self.iri(value["type"]) == INTERNATIONALIZED_STRING:
            return value["$"]
        return _thaw(value)
