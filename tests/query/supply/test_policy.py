"""Gate policies: the rules of docs/supply-chain.md parsed, and every malformed policy refused by line and rule."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest

from ledger.core.errors import InvalidArgument
from query.supply.policy import (
    ApprovalsRule,
    MetricRule,
    PolicyError,
    ProvenanceRule,
    QuarantineRule,
    SignersRule,
    parse_policy,
    policy_digest,
)

FULL = """\
# policy.toml
version = 1
description = "production models"

[rules.provenance]          # complete provenance
require = ["data", "code", "environment", "params", "author", "signature"]

[rules.signers]

[rules.approvals]
count = 2
role = "ml-lead"
description = "two ML leads"

[rules.quarantine]

[[rules.metric]]
name = "accuracy"
min = 0.9

[[rules.metric]]
name = "latency_ms"
max = 50

[admission]
require_annotation = true
"""


def test_a_full_policy_parses_into_its_rules_in_order() -> None:
    p = parse_policy(FULL)
    assert p.version == 1 and p.description == "production models" and p.require_annotation is True
    assert p.rules == (
        ProvenanceRule(require=("data", "code", "environment", "params", "author", "signature")),
        SignersRule(),
        ApprovalsRule(count=2, role="ml-lead", description="two ML leads"),
        QuarantineRule(),
        MetricRule(metric="accuracy", min=0.9),
        MetricRule(metric="latency_ms", max=50.0),
    )
    assert p.rule_names() == (
        "provenance",
        "signers",
        "approvals",
        "quarantine",
        "metric:accuracy",
        "metric:latency_ms",
    )
    assert p.digest == "sha256:" + hashlib.sha256(FULL.encode()).hexdigest() == policy_digest(FULL.encode())
    with pytest.raises(AttributeError):
        p.version = 2  # type: ignore[misc]


def test_one_rule_is_a_policy_and_bytes_are_read_as_utf8() -> None:
    p = parse_policy(b'version = 1\n[rules.signers]\ndescription = "sign\xc3\xa9"\n', source="ci/gate.toml")
    assert p.rules == (SignersRule(description="signé"),) and p.source == "ci/gate.toml"
    assert p.require_annotation is False


GOOD = FULL.replace("[admission]\nrequire_annotation = true\n", "")


def _edit(old: str, new: str) -> str:
    assert old in GOOD, old
    return GOOD.replace(old, new, 1)


CASES = [
    # (id, policy text, line, rule, message fragment)
    ("toml-syntax", _edit("count = 2", "count = "), 11, "rules.approvals", "not valid TOML: Invalid value (column 9)"),
    ("toml-unterminated", 'version = 1\nname = "abc', 2, "policy", "Unterminated string"),
    ("no-version", _edit("version = 1\n", ""), 1, "version", "missing; expected `version = 1`"),
    ("version-2", _edit("version = 1", "version = 2"), 2, "version", "unsupported version 2"),
    ("version-text", _edit("version = 1", 'version = "1"'), 2, "version", "expected the integer 1, found '1'"),
    ("unknown-top-key", _edit("version = 1\n", "version = 1\nowner = 'ml'\n"), 3, "owner", "unknown key 'owner'"),
    ("no-rules", "version = 1\n", 1, "rules", "the policy has no rule"),
    ("empty-rules", "version = 1\n[rules]\n", 2, "rules", "the policy has no rule"),
    ("unknown-rule", GOOD + "\n[rules.sbom]\n", 26, "rules.sbom", "unknown rule 'sbom'; expected one of provenance"),
    ("rule-not-table", "version = 1\nrules = 3\n", 2, "rules", "expected a table, found a number"),
    ("unknown-key", _edit('role = "ml-lead"', 'roles = "ml-lead"'), 12, "rules.approvals.roles", "unknown key 'roles'"),
    (
        "signers-key",
        _edit("[rules.signers]\n", "[rules.signers]\nstrict = true\n"),
        9,
        "rules.signers.strict",
        "unknown key",
    ),
    (
        "require-missing",
        _edit('require = ["data", "code", "environment", "params", "author", "signature"]\n', ""),
        5,
        "rules.provenance",
        "missing `require`",
    ),
    (
        "require-empty",
        _edit('["data", "code", "environment", "params", "author", "signature"]', "[]"),
        6,
        "rules.provenance.require",
        "expected at least one of data, code",
    ),
    ("require-unknown", _edit('"signature"]', '"sbom"]'), 6, "rules.provenance.require", "unknown part 'sbom'"),
    (
        "require-type",
        _edit('["data", "code", "environment", "params", "author", "signature"]', '"data"'),
        6,
        "rules.provenance.require",
        "expected a list of strings, found 'data'",
    ),
    ("require-twice", _edit('"signature"]', '"data"]'), 6, "rules.provenance.require", "'data' is listed twice"),
    ("count-zero", _edit("count = 2", "count = 0"), 11, "rules.approvals.count", "expected an integer >= 1, found 0"),
    (
        "count-float",
        _edit("count = 2", "count = 1.5"),
        11,
        "rules.approvals.count",
        "expected an integer >= 1, found 1.5",
    ),
    ("count-bool", _edit("count = 2", "count = true"), 11, "rules.approvals.count", "found true"),
    ("count-missing", _edit("count = 2\n", ""), 10, "rules.approvals", "missing `count`"),
    ("role-missing", _edit('role = "ml-lead"\n', ""), 10, "rules.approvals", "missing `role`"),
    ("role-bad", _edit('role = "ml-lead"', 'role = "ML Lead"'), 12, "rules.approvals.role", "expected a role name"),
    (
        "description-type",
        _edit('description = "two ML leads"', "description = 2"),
        13,
        "rules.approvals.description",
        "expected a string, found a number",
    ),
    ("metric-bounds", _edit("min = 0.9\n", ""), 17, "rules.metric", "metric 'accuracy' has neither `min` nor `max`"),
    (
        "metric-min-above-max",
        _edit("min = 0.9\n", "min = 0.9\nmax = 0.5\n"),
        19,
        "rules.metric.min",
        "min 0.9 is above max 0.5",
    ),
    ("metric-name-missing", _edit('name = "latency_ms"\n', ""), 21, "rules.metric", "missing `name`"),
    (
        "metric-name-empty",
        _edit('name = "latency_ms"', 'name = ""'),
        22,
        "rules.metric.name",
        "expected a non-empty string",
    ),
    ("metric-number", _edit("max = 50", 'max = "50"'), 23, "rules.metric.max", "expected a finite number, found '50'"),
    ("metric-nan", _edit("max = 50", "max = nan"), 23, "rules.metric.max", "expected a finite number, found nan"),
    (
        "metric-twice",
        _edit('name = "latency_ms"', 'name = "accuracy"'),
        22,
        "rules.metric.name",
        "metric 'accuracy' has a rule already",
    ),
    (
        "metric-table",
        "version = 1\n[rules.metric]\nname = 'x'\nmin = 1\n",
        2,
        "rules.metric",
        "expected [[rules.metric]] tables (an array of tables), found a single table",
    ),
    ("metric-unknown-key", _edit("max = 50", "max = 50\nunit = 'ms'"), 24, "rules.metric.unit", "unknown key 'unit'"),
    (
        "admission-type",
        "version = 1\n[rules.signers]\n[admission]\nrequire_annotation = 'yes'\n",
        4,
        "admission.require_annotation",
        "expected true or false",
    ),
    ("not-utf8", b"version = 1\n\xff\n", 1, "policy", "not UTF-8 text"),
    ("too-big", "version = 1\n" + "#" * 70_000, 1, "policy", "expected at most 65536 bytes"),
]


@pytest.mark.parametrize(("text", "line", "rule", "fragment"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_a_malformed_policy_is_refused_naming_its_line_and_rule(
    text: str | bytes, line: int, rule: str, fragment: str
) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(text)
    e = info.value
    assert type(e) is PolicyError and isinstance(e, InvalidArgument)
    assert (e.line, e.rule) == (line, rule), e.message
    assert e.message.startswith(f"policy.toml line {line}, {rule}: "), e.message
    assert fragment in e.message


def test_the_line_of_a_dotted_key_is_found() -> None:
    with pytest.raises(PolicyError, match=r"^gate\.toml line 3, rules\.approvals\.count: expected an integer >= 1"):
        parse_policy('version = 1\nrules.approvals.role = "x"\nrules.approvals.count = -1\n', source="gate.toml")


def test_the_digest_names_the_bytes() -> None:
    assert policy_digest("a") == "sha256:ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb"
    assert parse_policy(GOOD).digest != parse_policy(GOOD + "\n").digest


def test_the_policy_in_the_docs_parses_and_its_error_example_is_what_the_parser_says() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "supply-chain.md").read_text(encoding="utf-8")
    text = re.search(r"```toml\n(# policy\.toml\n.*?)```", doc, re.S)
    assert text, "docs/supply-chain.md shows a policy.toml"
    p = parse_policy(text.group(1))
    assert p.rule_names() == ("provenance", "signers", "approvals", "quarantine", "metric:accuracy")
    with pytest.raises(PolicyError) as info:
        parse_policy(text.group(1).replace("count = 2", "count = 0"))
    assert f"`{info.value.message}`" in doc.replace("\n", " ")
