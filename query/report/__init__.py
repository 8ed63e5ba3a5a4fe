"""Compliance reports an auditor can file: ``provault report model NAME|DIGEST`` and ``provault report period``.

A report is one self-contained HTML file (and, with the ``[report]`` extra, a PDF that carries it): the
model's lifecycle or a period's statements as tables, each row with its ledger seq and signer, a
retention-continuity section, the table of record-keeping duties it serves, and the evidence it was
computed from (an audit bundle, signed checkpoints and consistency proofs), so that it verifies offline
(``provault verify-report``).  docs/auditors.md says what each section proves.

* :mod:`.evidence` -- the embedded evidence, its canonical encoding, its offline check (pure);
* :mod:`.content` -- the tables, computed from verified evidence alone (pure), from the statements
  :mod:`.facts` reads out of the bundle; :mod:`.duties` -- the duties a report maps to;
* :mod:`.html` -- rendering with jinja2 (autoescaping), deterministic; :mod:`.pdf` -- weasyprint;
* :mod:`.verify` -- ``verify-report``: the evidence, then the tables rendered again and compared;
* :mod:`.build` -- gathering the evidence from the ledger and the projection, with bounded work.
"""

from __future__ import annotations

from .content import DUTIES, ReportView, view
from .evidence import (
    REPORT_FORMAT,
    REPORT_STEPS,
    Checked,
    Evidence,
    MalformedReport,
    ReportAltered,
    check_evidence,
    decode_evidence,
    encode_evidence,
)
from .html import render_html
from .verify import ReportCheck, extract_evidence, read_report, report_html, verify_report


def render(evidence: Evidence) -> str:
    """The report's HTML for freshly gathered ``evidence``: checked first, exactly as a verifier will."""
    return render_html(view(check_evidence(evidence)), evidence)


__all__ = [
    "DUTIES",
    "REPORT_FORMAT",
    "REPORT_STEPS",
    "Checked",
    "Evidence",
    "MalformedReport",
    "ReportAltered",
    "ReportCheck",
    "ReportView",
    "check_evidence",
    "decode_evidence",
    "encode_evidence",
    "extract_evidence",
    "read_report",
    "render",
    "render_html",
    "report_html",
    "verify_report",
    "view",
]
