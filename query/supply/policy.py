"""Gate policies: a TOML document of rules, parsed into a frozen :class:`Policy` (pure).

The rules (docs/supply-chain.md, "Policy")::

    version = 1
    [rules.provenance]   require = ["data", "code", "environment", "params", "author", "signature"]
    [rules.signers]
    [rules.approvals]    count = 2, role = "ml-lead"
    [rules.quarantine]
    [[rules.metric]]     name = "accuracy", min = 0.9, max = ...

Each rule table may carry ``description``. An optional ``[admission]`` table holds
``require_annotation`` (the Kubernetes admission endpoint's). Anything else is refused with a
:class:`PolicyError` whose message names the line and the rule: TOML syntax errors at the line
``tomllib`` reports, every other mistake at the line of the key or table that holds it.
"""

from __future__ import annotations

import hashlib
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.core.errors import InvalidArgument

VERSION = 1
PROVENANCE_PARTS = ("data", "code", "environment", "params", "author", "signature")
RULES = ("provenance", "signers", "approvals", "quarantine", "metric")
MAX_POLICY_BYTES = 64 * 1024
MAX_METRICS = 100
_ROLE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
_SYNTAX_AT = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_SYNTAX_END = re.compile(r"\s*\(at end of document\)\s*$")


class PolicyError(InvalidArgument):
    """A policy that cannot be used; the message names the line and the rule."""

    reason = "policy_invalid"

    def __init__(self, message: str, *, line: int, rule: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.line = line
        self.rule = rule


# --- the rules ----------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ProvenanceRule:
    require: tuple[str, ...]
    description: str | None = None
    name: str = "provenance"


@dataclass(frozen=True, slots=True, kw_only=True)
class SignersRule:
    description: str | None = None
    name: str = "signers"


@dataclass(frozen=True, slots=True, kw_only=True)
class ApprovalsRule:
    count: int
    role: str
    description: str | None = None
    name: str = "approvals"


@dataclass(frozen=True, slots=True, kw_only=True)
class QuarantineRule:
    description: str | None = None
    name: str = "quarantine"


@dataclass(frozen=True, slots=True, kw_only=True)
class MetricRule:
    metric: str
    min: float | None = None
    max: float | None = None
    description: str | None = None

    @property
    def name(self) -> str:
        return f"metric:{self.metric}"

    def bounds(self) -> str:
        parts = ([f">= {self.min:g}"] if self.min is not None else []) + (
            [f"<= {self.max:g}"] if self.max is not None else []
        )
        return " and ".join(parts)


Rule = ProvenanceRule | SignersRule | ApprovalsRule | QuarantineRule | MetricRule


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    version: int
    rules: tuple[Rule, ...]
    """In the policy's order (a ``[[rules.metric]]`` array where its first table is)."""
    digest: str
    """``sha256:<hex>`` of the policy's bytes, as :func:`policy_digest`."""
    source: str = "policy.toml"
    description: str | None = None
    require_annotation: bool = False
    """``[admission] require_annotation``: the admission endpoint refuses pods that name no model."""

    def rule_names(self) -> tuple[str, ...]:
        return tuple(r.name for r in self.rules)


def policy_digest(text: str | bytes) -> str:
    """``sha256:<hex>`` of the policy's bytes (UTF-8 for text): what a decision names its policy by."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- where things are in the text -----------------------------------------------------------------------

_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]#]+?)\s*(\]\]?)\s*(#.*)?$")
_KEY = re.compile(r"""^\s*("(?:[^"\\]|\\.)*"|'[^']*'|[A-Za-z0-9_.\s"'-]+?)\s*=""")


def _dotted(text: str) -> tuple[str, ...]:
    return tuple(part.strip().strip("\"'") for part in text.split("."))


class _Lines:
    """Finds the line of a table or a key in the policy text (1-based; 1 when it cannot tell)."""

    def __init__(self, text: str) -> None:
        self.headers: list[tuple[int, tuple[str, ...], bool]] = []
        self.keys: list[tuple[int, tuple[str, ...], tuple[str, ...], int]] = []
        table: tuple[str, ...] = ()
        counts: dict[tuple[str, ...], int] = {}
        index = 0
        in_string = False
        for n, line in enumerate(text.splitlines(), start=1):
            if line.count('"""') % 2 or line.count("'''") % 2:
                in_string = not in_string
                if not in_string:
                    continue
            if in_string:
                continue
            m = _HEADER.match(line)
            if m and (m.group(1) == "[[") == (m.group(3) == "]]"):
                table = _dotted(m.group(2))
                array = m.group(1) == "[["
                index = counts.get(table, 0)
                counts[table] = index + 1
                self.headers.append((n, table, array))
                continue
            k = _KEY.match(line)
            if k:
                self.keys.append((n, table, _dotted(k.group(1)), index))

    def table(self, path: Sequence[str], index: int = 0) -> int:
        path = tuple(path)
        found = [n for n, t, _ in self.headers if t == path]
        if index < len(found):
            return found[index]
        return self.key(path[:-1], path[-1:]) if path else 1

    def key(self, table: Sequence[str], key: Sequence[str], index: int = 0) -> int:
        """The line of ``table``.``key`` written under its header, as a dotted key, or inline; else its table's."""
        table, key = tuple(table), tuple(key)
        full = table + key
        for n, t, k, i in self.keys:
            if t == table and k == key and i == index:
                return n
        for n, t, k, _ in self.keys:
            if t + k == full or (len(t + k) < len(full) and full[: len(t + k)] == t + k):
                return n
        if table:
            for n, t, _ in self.headers:
                if t == table:
                    return n
            return self.key(table[:-1], table[-1:])
        return 1

    def table_at(self, line: int) -> tuple[str, ...]:
        current: tuple[str, ...] = ()
        for n, t, _ in self.headers:
            if n > line:
                break
            current = t
        return current


# --- parsing ------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source
        self.lines = _Lines(text)

    def fail(self, line: int, rule: str, message: str, hint: str | None = None) -> PolicyError:
        return PolicyError(f"{self.source} line {line}, {rule}: {message}", line=line, rule=rule, hint=hint)

    def key_error(self, table: tuple[str, ...], key: str, message: str, index: int = 0) -> PolicyError:
        return self.fail(self.lines.key(table, (key,), index), ".".join((*table, key)), message)

    def table_error(self, table: tuple[str, ...], message: str, index: int = 0, hint: str | None = None) -> PolicyError:
        return self.fail(self.lines.table(table, index), ".".join(table), message, hint)

    # -- values --
    def table_of(self, value: Any, path: tuple[str, ...], index: int = 0) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.table_error(path, f"expected a table, found {_type(value)}", index)
        return value

    def only(self, table: Mapping[str, Any], path: tuple[str, ...], allowed: Sequence[str], index: int = 0) -> None:
        for key in table:
            if key not in allowed:
                raise self.key_error(path, key, f"unknown key {key!r}; expected one of {', '.join(allowed)}", index)

    def description(self, table: Mapping[str, Any], path: tuple[str, ...], index: int = 0) -> str | None:
        value = table.get("description")
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.key_error(path, "description", f"expected a string, found {_type(value)}", index)
        return value

    def number(self, table: Mapping[str, Any], path: tuple[str, ...], key: str, index: int) -> float | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.key_error(path, key, f"expected a finite number, found {_repr(value)}", index)
        return float(value)

    # -- the document --
    def parse(self) -> Policy:
        try:
            doc = tomllib.loads(self.text)
        except tomllib.TOMLDecodeError as e:
            raise self._syntax(e) from None
        self.only(doc, (), ("version", "description", "rules", "admission"))
        version = doc.get("version")
        if version is None:
            raise self.fail(1, "version", f"missing; expected `version = {VERSION}` at the top of the policy")
        if isinstance(version, bool) or not isinstance(version, int):
            raise self.key_error((), "version", f"expected the integer {VERSION}, found {_repr(version)}")
        if version != VERSION:
            raise self.key_error((), "version", f"unsupported version {version}; this provault reads version {VERSION}")
        description = self.description(doc, ())
        require_annotation = self._admission(doc.get("admission"))
        if "rules" not in doc:
            raise self.fail(
                1, "rules", "the policy has no rule; expected at least one [rules.<name>] table", _RULES_HINT
            )
        rules_table = self.table_of(doc["rules"], ("rules",))
        if not rules_table:
            raise self.table_error(
                ("rules",), "the policy has no rule; expected at least one [rules.<name>]", hint=_RULES_HINT
            )
        rules: list[Rule] = []
        for name, value in rules_table.items():
            if name not in RULES:
                raise self.table_error(
                    ("rules", name), f"unknown rule {name!r}; expected one of {', '.join(RULES)}", hint=_RULES_HINT
                )
            if name == "metric":
                rules.extend(self._metrics(value))
            else:
                rules.append(getattr(self, f"_{name}")(self.table_of(value, ("rules", name))))
        return Policy(
            version=version,
            rules=tuple(rules),
            digest=policy_digest(self.text),
            source=self.source,
            description=description,
            require_annotation=require_annotation,
        )

    def _syntax(self, e: tomllib.TOMLDecodeError) -> PolicyError:
        message = str(e)
        at = _SYNTAX_AT.search(message)
        if at:
            line, column = int(at.group(1)), int(at.group(2))
            detail = f"{message[: at.start()]} (column {column})"
        else:
            line = max(1, len(self.text.splitlines()))
            detail = _SYNTAX_END.sub(" (at the end of the document)", message)
        table = self.lines.table_at(line)
        return self.fail(line, ".".join(table) or "policy", f"not valid TOML: {detail}")

    def _admission(self, value: Any) -> bool:
        if value is None:
            return False
        path = ("admission",)
        table = self.table_of(value, path)
        self.only(table, path, ("require_annotation", "description"))
        self.description(table, path)
        flag = table.get("require_annotation", False)
        if not isinstance(flag, bool):
            raise self.key_error(path, "require_annotation", f"expected true or false, found {_repr(flag)}")
        return flag

    def _provenance(self, table: Mapping[str, Any]) -> ProvenanceRule:
        path = ("rules", "provenance")
        self.only(table, path, ("require", "description"))
        if "require" not in table:
            raise self.table_error(path, f"missing `require`; expected a list of {', '.join(PROVENANCE_PARTS)}")
        require = table["require"]
        if not isinstance(require, list) or not all(isinstance(r, str) for r in require):
            raise self.key_error(path, "require", f"expected a list of strings, found {_repr(require)}")
        if not require:
            raise self.key_error(path, "require", f"expected at least one of {', '.join(PROVENANCE_PARTS)}, found []")
        for item in require:
            if item not in PROVENANCE_PARTS:
                raise self.key_error(
                    path, "require", f"unknown part {item!r}; expected some of {', '.join(PROVENANCE_PARTS)}"
                )
        if len(set(require)) != len(require):
            twice = next(r for r in require if require.count(r) > 1)
            raise self.key_error(path, "require", f"{twice!r} is listed twice")
        return ProvenanceRule(require=tuple(require), description=self.description(table, path))

    def _signers(self, table: Mapping[str, Any]) -> SignersRule:
        path = ("rules", "signers")
        self.only(table, path, ("description",))
        return SignersRule(description=self.description(table, path))

    def _quarantine(self, table: Mapping[str, Any]) -> QuarantineRule:
        path = ("rules", "quarantine")
        self.only(table, path, ("description",))
        return QuarantineRule(description=self.description(table, path))

    def _approvals(self, table: Mapping[str, Any]) -> ApprovalsRule:
        path = ("rules", "approvals")
        self.only(table, path, ("count", "role", "description"))
        if "count" not in table:
            raise self.table_error(path, "missing `count`; expected the number of distinct approvers, e.g. count = 2")
        count = table["count"]
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise self.key_error(path, "count", f"expected an integer >= 1, found {_repr(count)}")
        if "role" not in table:
            raise self.table_error(
                path, 'missing `role`; expected the role approvers\' keys are registered with, e.g. role = "ml-lead"'
            )
        role = table["role"]
        if not isinstance(role, str) or not _ROLE.fullmatch(role):
            raise self.key_error(
                path,
                "role",
                f"expected a role name (lowercase letters, digits, '.', '_' or '-'), found {_repr(role)}",
            )
        return ApprovalsRule(count=count, role=role, description=self.description(table, path))

    def _metrics(self, value: Any) -> list[MetricRule]:
        path = ("rules", "metric")
        if isinstance(value, Mapping):
            raise self.table_error(path, "expected [[rules.metric]] tables (an array of tables), found a single table")
        if not isinstance(value, list) or not value:
            raise self.table_error(path, f"expected [[rules.metric]] tables, found {_repr(value)}")
        if len(value) > MAX_METRICS:
            raise self.table_error(path, f"expected at most {MAX_METRICS} metric rules, found {len(value)}")
        out: list[MetricRule] = []
        for i, item in enumerate(value):
            table = self.table_of(item, path, i)
            self.only(table, path, ("name", "min", "max", "description"), i)
            name = table.get("name")
            if name is None:
                raise self.table_error(path, 'missing `name`; expected the metric\'s name, e.g. name = "accuracy"', i)
            if not isinstance(name, str) or not name.strip():
                raise self.key_error(path, "name", f"expected a non-empty string, found {_repr(name)}", i)
            low, high = self.number(table, path, "min", i), self.number(table, path, "max", i)
            if low is None and high is None:
                raise self.table_error(path, f"metric {name!r} has neither `min` nor `max`; expected one or both", i)
            if low is not None and high is not None and low > high:
                raise self.key_error(path, "min", f"min {low:g} is above max {high:g} for metric {name!r}", i)
            if any(m.metric == name for m in out):
                raise self.key_error(path, "name", f"metric {name!r} has a rule already", i)
            out.append(MetricRule(metric=name, min=low, max=high, description=self.description(table, path, i)))
        return out


_RULES_HINT = (
    "the rules are [rules.provenance], [rules.signers], [rules.approvals], [rules.quarantine], [[rules.metric]]"
)


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, Mapping):
        return "a table"
    return type(value).__name__


def _repr(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a table"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def parse_policy(text: str | bytes, *, source: str = "policy.toml") -> Policy:
    """The policy ``text`` holds, or :class:`PolicyError` naming the line and the rule."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise PolicyError(f"{source} line 1, policy: not UTF-8 text ({e.reason})", line=1, rule="policy") from None
    if not isinstance(text, str):
        raise PolicyError(
            f"{source} line 1, policy: expected TOML text, found {type(text).__name__}", line=1, rule="policy"
        )
    if len(text.encode("utf-8")) > MAX_POLICY_BYTES:
        raise PolicyError(
            f"{source} line 1, policy: expected at most {MAX_POLICY_BYTES} bytes, found {len(text.encode('utf-8'))}",
            line=1,
            rule="policy",
        )
    return _Parser(text, source).parse()


__all__ = [
    "MAX_POLICY_BYTES",
    "PROVENANCE_PARTS",
    "RULES",
    "VERSION",
    "ApprovalsRule",
    "MetricRule",
    "Policy",
    "PolicyError",
    "ProvenanceRule",
    "QuarantineRule",
    "Rule",
    "SignersRule",
    "parse_policy",
    "policy_digest",
]
