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


def test_the_duty_table_in_the_docs_names_exactly_the_duties_a_report_maps() -> None:
    from query.report.duties import DUTIES  # noqa: PLC0415 - after the import probe above, in its own process

    text = (ROOT / "docs" / "auditors.md").read_text(encoding="utf-8")
    section = text.split("### Record-keeping duties the contents serve\n", 1)[1].split("\n### ", 1)[0]
    rows = [line.split(" | ")[0].removeprefix("| ") for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == "duty" and rows[1:] == [d[0] for d in DUTIES]
