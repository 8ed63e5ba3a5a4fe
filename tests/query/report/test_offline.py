"""verify-report needs no database: importing the report package and its verifier loads no driver or store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_the_verifier_loads_no_database_or_network_module() -> None:
    probe = (
        "import sys, query.report, query.report.verify, query.report.pdf; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in {'psycopg', 'nats', 'grpc', 'psycopg_pool'} "
        "or m.startswith(('ledger.store', 'ledger.service', 'ledger.db', 'query.projector', 'query.traverse', "
        "'query.report.build'))))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT).stdout
    assert out.strip() == "[]"
