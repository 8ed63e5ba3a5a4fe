"""A report as PDF (the ``[report]`` extra: weasyprint), carrying its HTML as the attachment ``report.html``.

The pages are weasyprint's rendering of the HTML; ``provault verify-report`` checks the attached HTML
(evidence and tables) exactly as it checks an HTML report.  The printed pages themselves are not
compared with the evidence: file the PDF, and verify it, as the HTML it carries.
"""

from __future__ import annotations

from ledger.core.errors import ProvaultError

from .verify import PDF_ATTACHMENT


class PdfUnavailable(ProvaultError):
    reason = "pdf_unavailable"


def render_pdf(html: str) -> bytes:
    """The PDF of ``html``, with ``html`` attached byte for byte."""
    try:
        import weasyprint  # noqa: PLC0415 - optional and heavy: only --pdf loads it
    except (ImportError, OSError) as e:  # OSError: the system's pango / cairo libraries are missing
        raise PdfUnavailable(
            f"PDF output needs weasyprint and its system libraries: {type(e).__name__}: {str(e)[:200]}",
            hint="pip install 'provault[report]' (and the pango libraries, e.g. apt-get install libpango-1.0-0), "
            "or write the HTML report, which holds the same content and verifies the same way",
        ) from None
    attachment = weasyprint.Attachment(string=html, name=PDF_ATTACHMENT, description="the provault report, verifiable")
    return weasyprint.HTML(string=html).write_pdf(attachments=[attachment])


__all__ = ["PdfUnavailable", "render_pdf"]
