"""A report as one self-contained HTML file: the tables, then the evidence they were computed from.

Rendered with jinja2 with autoescaping on: every string from an event (names, labels, parameters,
reasons) is HTML-escaped, and before that made :func:`~query.bundle_verify.printable` (control and
bidi characters shown as escapes), so a name like ``<script>`` is text on the page, never markup.
The evidence block is :func:`~query.report.evidence.encode_evidence`, which cannot close its
``<script>`` element.  Rendering is deterministic: the same evidence gives the same bytes, which is
what lets ``provault verify-report`` render the report again and compare.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

from query.bundle_verify import printable

from .content import ReportView
from .evidence import REPORT_FORMAT, Evidence, encode_evidence

TEMPLATE = "report.html.j2"


def _shown(value: Any) -> Any:
    if isinstance(value, Markup):
        return value
    return printable(value) if isinstance(value, str) else value


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("query.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        finalize=_shown,
        keep_trailing_newline=True,
    )


def render_html(view: ReportView, evidence: Evidence) -> str:
    """The report's HTML: ``view``'s tables and ``evidence`` embedded (see the module docstring)."""
    template = _environment().get_template(TEMPLATE)
    sections = [*view.tables, view.continuity, view.duties]
    return template.render(
        view=view, sections=sections, format=REPORT_FORMAT, evidence=Markup(encode_evidence(evidence))
    )


__all__ = ["render_html"]
