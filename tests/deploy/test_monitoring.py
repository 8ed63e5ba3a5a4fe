"""deploy/monitoring/: the alert rules, the dashboard and the scrape jobs use only what the code exports.

Every ``provault_*`` series an expression names must be a sample of a metric the code defines (a counter's
``_total``, a histogram's ``_bucket`` / ``_count`` / ``_sum``), every label it filters on one that metric has, and
every rejection reason or anomaly kind it matches one the ledger can record.  ``promtool check rules`` runs
where promtool is installed.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

import agents.metrics
import agents.mlflow.recorder
import agents.mlflow.webhook
import agents.openlineage.server
import ledger.metrics
import query.projector
from ledger.service.rejections import REJECTION_REASONS
from ledger.transport import WRONG_SUBJECT

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "deploy" / "monitoring"
OPERATIONS = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")

_SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}


def _exported() -> tuple[dict[str, set[str]], set[str]]:
    """(series name -> label names, the names as docs/operations.md lists them) of every provault metric."""
    series: dict[str, set[str]] = {}
    listed: set[str] = set()
    for module in (ledger.metrics, query.projector, agents.openlineage.server, agents.mlflow.webhook):
        for value in vars(module).values():
            if isinstance(value, MetricWrapperBase) and value._name.startswith("provault_"):
                extra = {"le"} if value._type == "histogram" else set()
                for suffix in _SUFFIXES[value._type]:
                    series[value._name + suffix] = set(value._labelnames) | extra
                listed.add(value._name + ("_total" if value._type == "counter" else ""))
    for family in agents.metrics.AgentCollector().collect():
        name = family.name + ("_total" if family.type == "counter" else "")
        series[name] = {"producer", "outcome"} if family.type == "counter" else {"producer"}
        listed.add(name)
    for family in agents.mlflow.recorder.RecorderCollector().collect():
        series[family.name + "_total"] = {"outcome"}
        listed.add(family.name + "_total")
    return series, listed


EXPORTED, LISTED_AS = _exported()
_SELECTOR = re.compile(r"\b(provault_[a-z0-9_]+)(\{[^}]*\})?")
_MATCHER = re.compile(r'([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"')


def _rules() -> list[dict]:
    doc = yaml.safe_load((MONITORING / "alerts.yml").read_text(encoding="utf-8"))
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _dashboard_exprs() -> list[str]:
    doc = json.loads((MONITORING / "grafana-dashboard.json").read_text(encoding="utf-8"))
    return [t["expr"] for p in doc["panels"] for t in p["targets"]]


def _problems(expr: str) -> list[str]:
    problems = []
    for name, braces in _SELECTOR.findall(expr):
        if name not in EXPORTED:
            problems.append(f"{name} is not exported")
            continue
        for label, op, value in _MATCHER.findall(braces or ""):
            if label not in EXPORTED[name]:
                problems.append(f"{name} has no label {label!r}")
            if name == "provault_ingest_rejections_total" and label == "reason":
                reasons = value.split("|") if op == "=~" else [value]
                problems += [f"no rejection reason {r!r}" for r in reasons if r not in KNOWN_REASONS]
            if name == "provault_producer_anomalies_total" and label == "kind" and value not in ANOMALY_KINDS:
                problems.append(f"no anomaly kind {value!r}")
    return problems


KNOWN_REASONS = set(REJECTION_REASONS) | {WRONG_SUBJECT}
ANOMALY_KINDS = {"gap", "late", "fork"}  # ledger/core/admission.py (Anomaly.kind)


def test_the_code_exports_exactly_what_the_operations_page_lists() -> None:
    listed = set(re.findall(r"^\| `(provault_[a-z0-9_]+)` \|", OPERATIONS, flags=re.M))
    assert listed == LISTED_AS


@pytest.mark.parametrize("rule", _rules(), ids=lambda r: r["alert"])
def test_each_alert_uses_exported_metrics_and_is_documented(rule: dict) -> None:
    assert _problems(rule["expr"]) == []
    assert rule["labels"]["severity"] in ("warning", "critical")
    assert rule["annotations"]["summary"] and rule["annotations"]["action"]
    assert f"`{rule['alert']}`" in OPERATIONS, f"{rule['alert']} is not in docs/operations.md (Alerts)"


def test_every_dashboard_query_uses_exported_metrics() -> None:
    exprs = _dashboard_exprs()
    assert len(exprs) >= 15
    assert {p for e in exprs for p in _problems(e)} == set()
    used = {name for e in exprs for name, _ in _SELECTOR.findall(e)}
    # every family appears on the dashboard, in some series
    families = {re.sub(r"(_total|_bucket|_count|_sum)$", "", n) for n in EXPORTED}
    shown = {re.sub(r"(_total|_bucket|_count|_sum)$", "", n) for n in used}
    assert families - shown == {"provault_build_info", "provault_agent_spool_bytes"}


def test_the_checker_itself_catches_typos() -> None:
    assert _problems("rate(provault_ingest_event_total[5m])") == ["provault_ingest_event_total is not exported"]
    assert _problems('provault_dependency_up{dep="nats"}') == ["provault_dependency_up has no label 'dep'"]
    assert _problems('provault_ingest_rejections_total{reason=~"bad_signature|bad_sig"}') == [
        "no rejection reason 'bad_sig'"
    ]
    assert _problems('provault_producer_anomalies_total{kind="spoon"}') == ["no anomaly kind 'spoon'"]


def test_the_scrape_jobs_reach_every_server_over_https() -> None:
    doc = yaml.safe_load((MONITORING / "prometheus.yml").read_text(encoding="utf-8"))
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    assert set(jobs) == {"provault-ledger", "provault-query", "provault-openlineage"}
    targets = {t for j in jobs.values() for c in j["static_configs"] for t in c["targets"]}
    assert targets == {"ledger:9430", "query:9431", "openlineage:9432"}
    assert all(j["scheme"] == "https" and j["tls_config"]["ca_file"] for j in jobs.values())
    assert doc["rule_files"] == ["/etc/prometheus/alerts.yml"]


PROMTOOL = pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool is not installed (.ci/run installs it)"
)


def _promtool(*args: str, cwd: Path) -> None:
    result = subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr


@PROMTOOL
def test_promtool_accepts_the_rules_and_they_fire_as_the_cases_say(tmp_path: Path) -> None:
    shutil.copy(MONITORING / "alerts.yml", tmp_path / "alerts.yml")
    shutil.copy(Path(__file__).with_name("alerts_test.yml"), tmp_path / "alerts_test.yml")
    _promtool("check", "rules", "alerts.yml", cwd=tmp_path)
    _promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)


@PROMTOOL
def test_promtool_accepts_the_scrape_configuration(tmp_path: Path) -> None:
    """The Compose paths (/etc/prometheus, /run/secrets) pointed at copies here, nothing else changed."""
    shutil.copy(MONITORING / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "ca.crt").write_text("")
    text = (MONITORING / "prometheus.yml").read_text(encoding="utf-8")
    text = text.replace("/etc/prometheus/alerts.yml", str(tmp_path / "alerts.yml"))
    (tmp_path / "prometheus.yml").write_text(text.replace("/run/secrets/ca.crt", str(tmp_path / "ca.crt")))
    _promtool("check", "config", "prometheus.yml", cwd=tmp_path)
