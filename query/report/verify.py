"""``provault verify-report``: check a compliance report offline, tables included (no database, no network).

0. report format: the file is UTF-8 HTML (or a PDF carrying it as the attachment ``report.html``) with
   exactly one evidence block, in canonical form (:mod:`query.report.evidence`);
1. bundle: the embedded audit bundle verifies (``query.bundle_verify``: checkpoint, inclusion proofs,
   signatures and key history, graph);
2. retention continuity: every checkpoint of the chain verifies under the checkpoint key, and each
   consistency proof shows that the later tree extends the earlier; the chain ends at the bundle's checkpoint;
3. period completeness (period reports): every seq the log grew by in the period is in the bundle;
4. tables match the evidence: the report is rendered again from the verified evidence alone and must be
   the file, byte for byte; a difference is named by table, row and column when it is in a table.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ledger.core.errors import expected_found

from .content import view
from .evidence import Checked, MalformedReport, ReportAltered, check_evidence, decode_evidence, fail
from .html import render_html

EVIDENCE_OPEN = '<script type="application/json" id="provault-evidence">'
EVIDENCE_CLOSE = "</script>"
MAX_REPORT_BYTES = 1 << 30
PDF_ATTACHMENT = "report.html"


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportCheck:
    """What a report that verified proves, and on whose keys."""

    kind: str
    subject: dict[str, str]
    tables: int
    rows: int
    tree_sizes: tuple[int, ...]
    key_source: str
    admin_keys_pinned: bool
    steps: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": True,
            "kind": self.kind,
            "subject": dict(self.subject),
            "tables": self.tables,
            "rows": self.rows,
            "tree_sizes": list(self.tree_sizes),
            "key_source": self.key_source,
            "admin_keys_pinned": self.admin_keys_pinned,
            "steps": list(self.steps),
        }


# --- reading ---------------------------------------------------------------------------------------


def report_html(data: bytes) -> str:
    """The report's HTML text: the file itself, or the ``report.html`` a PDF report carries."""
    if len(data) > MAX_REPORT_BYTES:
        raise fail(MalformedReport, 0, expected_found("report size", f"at most {MAX_REPORT_BYTES} bytes", len(data)))
    if data.startswith(b"%PDF-"):
        data = _pdf_attachment(data)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise fail(MalformedReport, 0, f"the report is not UTF-8 text (byte {e.start})") from None


def _pdf_attachment(data: bytes) -> bytes:
    try:
        import pypdf  # noqa: PLC0415 - optional: only PDF reports need it (the [report] extra)
    except ImportError:
        raise fail(
            MalformedReport,
            0,
            "this report is a PDF, and reading its attached HTML needs pypdf",
            hint="pip install 'provault[report]', or verify the HTML report instead",
        ) from None
    try:
        found = pypdf.PdfReader(io.BytesIO(data)).attachments.get(PDF_ATTACHMENT)
    except Exception as e:  # pypdf raises many kinds on a damaged file; all mean the same here
        raise fail(MalformedReport, 0, f"the PDF cannot be read: {type(e).__name__}") from None
    if not found or len(found) != 1:
        raise fail(MalformedReport, 0, f"the PDF carries no single attachment {PDF_ATTACHMENT!r} with the report")
    return found[0]


def extract_evidence(html: str) -> str:
    """The text of the one evidence block."""
    count = html.count(EVIDENCE_OPEN)
    if count != 1:
        raise fail(MalformedReport, 0, expected_found("evidence blocks", "exactly one", count))
    start = html.index(EVIDENCE_OPEN) + len(EVIDENCE_OPEN)
    end = html.find(EVIDENCE_CLOSE, start)
    if end < 0:
        raise fail(MalformedReport, 0, "the evidence block is not closed")
    return html[start:end]


# --- verifying -------------------------------------------------------------------------------------


def verify_report(data: bytes, *, vkey: str | None = None, admin_keys: Sequence[bytes] | None = None) -> ReportCheck:
    """Verify a report file's bytes offline; return what it proves, or raise at the first failing step."""
    html = report_html(data)
    # 0. One evidence block, in canonical form.
    evidence = decode_evidence(extract_evidence(html))
    # 1.-3. The bundle, the continuity chain and the period's completeness.
    checked = check_evidence(evidence, vkey=vkey, admin_keys=admin_keys)
    # 4. The tables are what the evidence states.
    shown = view(checked)
    expected = render_html(shown, evidence)
    if expected != html:
        raise _difference(html, expected)
    return _result(checked, shown)


def _result(c: Checked, shown: Any) -> ReportCheck:
    sizes = tuple(cp.size for cp in c.checkpoints)
    r = c.bundle_report
    bundle_steps = tuple(r.steps) if r is not None else ("no bundle: nothing was logged in the period",)
    tables = [*shown.tables, shown.continuity]
    return ReportCheck(
        kind=c.evidence.kind,
        subject=dict(c.evidence.subject),
        tables=len(tables),
        rows=sum(len(t.rows) for t in tables),
        tree_sizes=sizes,
        key_source=c.key_source,
        admin_keys_pinned=r.admin_keys_pinned if r is not None else False,
        steps=(
            *(f"1 bundle, {s}" for s in bundle_steps),
            f"2 continuity: {len(sizes)} checkpoints (tree sizes {sizes[0]} to {sizes[-1]}) verify and each extends the one before",
            *(
                ("3 period: every entry the log grew by in the period is in the bundle",)
                if c.evidence.kind == "period"
                else ()
            ),
            f"4 tables: the report is exactly what its evidence renders to ({len(tables)} tables, "
            f"{sum(len(t.rows) for t in tables)} rows)",
        ),
    )


class _Cells(HTMLParser):
    """Every table cell's text, by table id, row and column."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tables: dict[str, list[list[str]]] = {}
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "table":
            self._table = dict(attrs).get("id") or f"table{len(self.tables)}"
            self.tables.setdefault(self._table, [])
        elif tag == "tr" and self._table is not None:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table is not None:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table is not None:
            rows = self.tables[self._table]
            if rows:
                rows[-1].append("".join(self._cell))
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _cells(html: str) -> dict[str, list[list[str]]]:
    p = _Cells()
    p.feed(html)
    p.close()
    return p.tables


def _column(table: str, header: list[str], row: int, col: int) -> str:
    if table == "summary":  # no header row: each row is a field and its value
        return ("field", "value")[col] if col < 2 else str(col)
    return header[col] if row and col < len(header) else str(col)


def _difference(found: str, expected: str) -> Exception:
    """Name the first difference: a table cell when there is one, else the first line that differs."""
    have, want = _cells(found), _cells(expected)
    for table, rows in want.items():
        shown = have.get(table)
        if shown is None:
            return fail(ReportAltered, 4, f"the table {table!r} that the evidence states is missing from the report")
        header = rows[0] if rows else []
        for r, row in enumerate(rows):
            other = shown[r] if r < len(shown) else None
            if other is None:
                return fail(
                    ReportAltered, 4, f"table {table!r}, row {r}: missing from the report (the evidence states {row!r})"
                )
            for col, cell in enumerate(row):
                got = other[col] if col < len(other) else None
                if got != cell:
                    name = _column(table, header, r, col)
                    return fail(
                        ReportAltered,
                        4,
                        f"table {table!r}, row {r}, column {name!r}: the report shows {got!r}, the evidence states {cell!r}",
                        hint="the report was edited after it was made; the evidence block is what was signed and logged",
                    )
        if len(shown) > len(rows):
            return fail(
                ReportAltered,
                4,
                f"table {table!r}, row {len(rows)}: a row the evidence does not state ({shown[len(rows)]!r})",
            )
    extra = sorted(set(have) - set(want))
    if extra:
        return fail(ReportAltered, 4, f"the report holds table {extra[0]!r}, which the evidence does not state")
    a, b = found.splitlines(), expected.splitlines()
    line = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    got = a[line][:120] if line < len(a) else "the end of the file"
    want_line = b[line][:120] if line < len(b) else "the end of the file"
    return fail(
        ReportAltered,
        4,
        f"line {line + 1} differs from the report the evidence renders to: found {got!r}, expected {want_line!r}",
        hint="the report was edited after it was made; keep report files as `provault report` wrote them",
    )


def read_report(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise fail(MalformedReport, 0, f"cannot read report file {path}: {e.strerror or type(e).__name__}") from None


__all__ = ["PDF_ATTACHMENT", "ReportCheck", "extract_evidence", "read_report", "report_html", "verify_report"]
