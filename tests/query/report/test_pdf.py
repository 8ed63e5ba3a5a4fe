"""`provault report --pdf`: weasyprint renders the report, and the PDF carries the HTML that verify-report checks."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tests.query.provstory import Story

from .conftest import Cli

pypdf = pytest.importorskip("pypdf", reason="pypdf (the [report] extra) reads PDFs back")


def _weasyprint_missing() -> str | None:
    try:
        import weasyprint  # noqa: F401, PLC0415 - probing the optional extra and its system libraries
    except (ImportError, OSError) as e:
        return f"weasyprint or its system libraries (pango) are missing: {type(e).__name__}: {e}"
    return None


@pytest.mark.postgres
def test_the_pdf_renders_the_model_and_verifies_through_its_attachment(
    story: Story, cli: Cli, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    missing = _weasyprint_missing()
    if missing:
        pytest.skip(missing)
    out = tmp_path / "sentiment.pdf"
    code, stdout, _ = cli("report", "model", "sentiment", "--pdf", "-o", out)
    assert code == 0, stdout
    data = out.read_bytes()
    assert data.startswith(b"%PDF-")
    reader = pypdf.PdfReader(io.BytesIO(data))
    text = "\n".join(page.extract_text() for page in reader.pages)
    assert "Compliance report: model sentiment" in text and story.ids.model[:20] in text
    assert list(reader.attachments) == ["report.html"]
    code, stdout, _ = cli("verify-report", out, "--key", keys[0], "--admin-key", keys[1])
    assert code == 0 and stdout.startswith(f"provault verify-report: OK: {out}")


def test_a_pdf_without_the_report_attached_is_refused_at_step_0(cli: Cli, tmp_path: Path) -> None:
    missing = _weasyprint_missing()
    if missing:
        pytest.skip(missing)
    import weasyprint  # noqa: PLC0415 - present: checked above

    path = tmp_path / "plain.pdf"
    path.write_bytes(weasyprint.HTML(string="<h1>Compliance report: model sentiment</h1>").write_pdf())
    code, stdout, _ = cli("verify-report", path)
    assert code == 1 and stdout.splitlines()[:2] == [
        "provault verify-report: FAILED at step 0 (report format)",
        "  [malformed_report] the PDF carries no single attachment 'report.html' with the report",
    ]
