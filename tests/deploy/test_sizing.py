"""deploy/sizing.py, the measurement behind docs/operations.md's sizing figures, runs and adds up."""

from __future__ import annotations

import importlib.util

import pytest

from .manifests import DEPLOY

pytestmark = [pytest.mark.postgres]


def _sizing():
    spec = importlib.util.spec_from_file_location("provault_deploy_sizing", DEPLOY / "sizing.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_sizing_measures_bytes_per_event(pg_dsn: str) -> None:
    result = _sizing().measure(pg_dsn, 300)
    assert result["events"] == 301
    assert 1500 < result["envelope_bytes_per_event"] < 4000
    assert result["merkle_nodes_per_event"] == pytest.approx(2.0, abs=0.05)
    per_event = result["bytes_per_event"]
    assert per_event["entries"] > result["envelope_bytes_per_event"] / 2  # the envelope is stored (maybe compressed)
    assert result["entries_plus_merkle_bytes_per_event"] == pytest.approx(
        per_event["entries"] + per_event["merkle_nodes"], abs=2
    )
    assert result["prov_projection_bytes_per_event"] > 0
