"""A real dbt project run by ``dbt-ol`` against the embedded PostgreSQL, its OpenLineage events into the endpoint.

dbt pins protobuf 5-6 and provault protobuf 7, so dbt lives in its own
virtualenv, made on first use under ``$TMPDIR/provault-test-dbt`` (pip from
the package index, about a minute; reused afterwards).  Slow: run with
``pytest -m slow tests/openlineage/test_dbt.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from ledger.cli import main
from ledger.core.vocab import ol_dataset_id
from tests.openlineage.conftest import OlStack, wait_until

pytestmark = pytest.mark.slow

DBT_REQUIREMENTS = ["dbt-core>=1.8,<1.11", "dbt-postgres>=1.8,<1.11", "openlineage-dbt>=1.20"]
VENV = Path(tempfile.gettempdir()) / "provault-test-dbt"


def dbt_ol() -> Path:
    tool = VENV / "bin" / "dbt-ol"
    if not tool.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", *DBT_REQUIREMENTS], check=True, timeout=1200)
    return tool


MODELS = {
    "seeds/raw_orders.csv": "id,customer,amount\n1,ada,12.50\n2,bob,3.00\n3,ada,7.25\n",
    "models/stg_orders.sql": "select id, customer, amount from {{ ref('raw_orders') }}\n",
    "models/customer_totals.sql": "select customer, sum(amount) as total from {{ ref('stg_orders') }} group by customer\n",
    "dbt_project.yml": (
        "name: shop\nversion: '1.0'\nconfig-version: 2\nprofile: shop\n"
        "model-paths: [models]\nseed-paths: [seeds]\ntarget-path: target\n"
    ),
}


def test_dbt_ol_events_land_and_trace_through_the_models(ol_stack: OlStack, tmp_path: Path, capsys) -> None:
    tool = dbt_ol()
    dsn = urlsplit(ol_stack.dsn)
    with psycopg.connect(ol_stack.dsn, autocommit=True) as c:
        c.execute("CREATE DATABASE shop")
    project = tmp_path / "shop"
    for name, text in MODELS.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    (project / "profiles.yml").write_text(
        "shop:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n"
        f"      host: 127.0.0.1\n      port: {dsn.port}\n      user: {dsn.username}\n      password: ''\n"
        "      dbname: shop\n      schema: analytics\n      threads: 1\n"
    )
    base = ol_stack.url.removesuffix("/api/v1/lineage")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PROVAULT_", "OPENLINEAGE_"))},
        "PATH": f"{tool.parent}{os.pathsep}{os.environ.get('PATH', '')}",  # dbt-ol runs `dbt`
        "OPENLINEAGE_URL": base,
        "OPENLINEAGE_ENDPOINT": "api/v1/lineage",
        "OPENLINEAGE_NAMESPACE": "shop-dbt",
        "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
    }
    before = len(ol_stack.entries())
    for command in (["seed"], ["run"]):
        done = subprocess.run(
            [str(tool), *command, "--project-dir", str(project), "--profiles-dir", str(project)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            cwd=project,
        )
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    def models_logged() -> bool:
        jobs = {
            json.loads(e["event"]["data"]["openlineage"]["raw"])["job"]["name"] for e in ol_stack.entries()[before:]
        }
        return any(j.endswith("customer_totals") for j in jobs) and any(j.endswith("stg_orders") for j in jobs)

    wait_until(models_logged, 60, "dbt-ol's events for both models in the log")
    logged = ol_stack.entries()[before:]
    received = [json.loads(e["event"]["data"]["openlineage"]["raw"]) for e in logged]
    assert all(e["event"]["data"]["openlineage"]["flags"] == [] for e in logged), [
        e["event"]["data"]["openlineage"]["flags"] for e in logged
    ]
    totals = next(r for r in received if r["job"]["name"].endswith("customer_totals") and r.get("outputs"))
    [out] = totals["outputs"]
    assert out["name"].endswith("analytics.customer_totals")
    ol_stack.projected(logged[-1]["seq"])
    code = main(
        ["trace", "--data-dir", str(ol_stack.settings.data_dir), "--json", ol_dataset_id(out["namespace"], out["name"])]
    )
    answer = json.loads(capsys.readouterr().out)
    assert code == 0
    names = {n["attributes"].get("provault:name") for n in answer["nodes"]}
    assert any(str(n).endswith("analytics.stg_orders") for n in names), names
