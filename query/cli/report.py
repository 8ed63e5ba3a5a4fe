"""``provault report model NAME|DIGEST``, ``provault report period --from --to`` and ``provault verify-report``.

``report`` reads the configured PostgreSQL (or a running ``provault up``'s) as ``provault_auditor``,
SELECT only, like ``trace`` and ``bundle``: the database's own authentication is the only way in, and
there is no network endpoint.  It writes one HTML file (``--pdf``: a PDF carrying it), checked with
the same code ``verify-report`` runs before it is written.  ``verify-report`` opens no connection.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from ledger.core.errors import DecodeError, InvalidArgument, KeyMaterialError, ProvaultError, VerificationError
from ledger.core.keys import load_public_key
from query.bundle_verify import printable
from query.cli.bundle import auditor_connection, read_vkey

DEFAULT_DEPTH = 20
DEFAULT_NODES = 10_000
DEFAULT_ENTRIES = 10_000
DEFAULT_TIMEOUT = 60.0


def _count(text: str, *, minimum: int, cap: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, found {text!r}") from None
    if not minimum <= value <= cap:
        raise argparse.ArgumentTypeError(f"expected an integer from {minimum} to {cap}, found {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, found {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"expected more than 0 and at most 3600 seconds, found {text!r}")
    return value


def _time(text: str) -> datetime:
    """An RFC 3339 time with a UTC offset (``2025-03-02T10:00:00Z``), or a date (midnight UTC)."""
    candidate = text + "T00:00:00Z" if len(text) == 10 else text
    try:
        when = datetime.fromisoformat(candidate)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an RFC 3339 time like 2025-03-02T10:00:00Z or a date like 2025-03-02, found {text!r}"
        ) from None
    if when.tzinfo is None:
        raise argparse.ArgumentTypeError(f"expected a time with a UTC offset (e.g. a trailing Z), found {text!r}")
    return when


def _as_of(text: str) -> int | datetime:
    return int(text) if text.isdigit() else _time(text)


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="where to write the report")
    p.add_argument("--pdf", action="store_true", help="write a PDF (needs the [report] extra) that carries the HTML")
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"give up after this long (default {DEFAULT_TIMEOUT:g})",
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    r = sub.add_parser(
        "report",
        help="write a compliance report (HTML or PDF) that verifies offline: a model's lifecycle, or a period",
        description=(
            "Write a compliance report an auditor can file: the statements behind a model's lifecycle, or "
            "everything logged in a period, each with its ledger seq and signer; a retention-continuity "
            "section proven with consistency proofs; the record-keeping duties it serves; and the evidence, "
            "embedded, so that `provault verify-report FILE` checks it offline."
        ),
    )
    kinds = r.add_subparsers(dest="report_kind", metavar="KIND", required=True)
    m = kinds.add_parser(
        "model",
        parents=[common],
        help="a model's lifecycle: data, code, environment, parameters, metrics, authors, approvals, deployments",
        description="Report on one model, named by its label or its digest, as of the latest checkpoint.",
    )
    m.add_argument("model", metavar="NAME|DIGEST", help="the model's label (prov:label) or its id sha256:<hex>")
    m.add_argument("--as-of", type=_as_of, metavar="SEQ|TIME", help="as the ledger stood at this seq or time")
    m.add_argument(
        "--depth",
        type=lambda t: _count(t, minimum=1, cap=100),
        default=DEFAULT_DEPTH,
        metavar="N",
        help=f"follow at most N relation hops each way (default {DEFAULT_DEPTH})",
    )
    m.add_argument(
        "--max-nodes",
        type=lambda t: _count(t, minimum=1, cap=100_000),
        default=DEFAULT_NODES,
        metavar="N",
        help=f"refuse a lifecycle of more than N nodes (default {DEFAULT_NODES})",
    )
    _output(m)
    m.set_defaults(run=run_model, parser=m)

    p = kinds.add_parser(
        "period",
        parents=[common],
        help="what the ledger logged between two times, and proof that it only grew meanwhile",
        description=(
            "Report on every entry the log grew by between the checkpoints the ledger had signed at --from and "
            "at --to (the ledger's clock), with consistency proofs from the first to the last."
        ),
    )
    p.add_argument("--from", dest="start", type=_time, required=True, metavar="TIME", help="RFC 3339 time or date")
    p.add_argument("--to", dest="end", type=_time, required=True, metavar="TIME", help="RFC 3339 time or date")
    p.add_argument(
        "--max-entries",
        type=lambda t: _count(t, minimum=1, cap=100_000),
        default=DEFAULT_ENTRIES,
        metavar="N",
        help=f"refuse a period of more than N entries (default {DEFAULT_ENTRIES})",
    )
    _output(p)
    p.set_defaults(run=run_period, parser=p)

    v = sub.add_parser(
        "verify-report",
        parents=[common],
        help="verify a compliance report offline: its evidence, and that its tables are what the evidence states",
        description=(
            "Check a report from `provault report` without trusting whoever made it: (0) its evidence block, "
            "(1) the embedded audit bundle, (2) the checkpoints and consistency proofs of its retention "
            "continuity, (3) for a period, that every entry of the period is there, and (4) that every table "
            "is exactly what the evidence states. Exit 0 when it verifies, 1 naming the first failure."
        ),
    )
    v.add_argument("file", metavar="FILE", help="the report (HTML, or a PDF from --pdf)")
    v.add_argument(
        "--key", metavar="VKEY_FILE", help="the checkpoint verifier key you saved (`provault checkpoint --vkey`)"
    )
    v.add_argument(
        "--admin-key", action="append", default=[], metavar="PUBKEY_FILE", help="an admin (root) public key you trust"
    )
    v.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    v.set_defaults(run=run_verify)


# --- writing -------------------------------------------------------------------------------------------


def _connect(args: argparse.Namespace):  # -> psycopg.Connection
    from ledger.config import settings_from  # noqa: PLC0415 - keep `provault --help` light

    return auditor_connection(settings_from(args))


def _write(args: argparse.Namespace, evidence: Any) -> int:
    from query.report import render  # noqa: PLC0415 - jinja2 loads only for reports

    html = render(evidence)
    data = html.encode("utf-8")
    if args.pdf:
        from query.report.pdf import render_pdf  # noqa: PLC0415 - weasyprint is optional

        data = render_pdf(html)
    out = Path(args.out)
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except OSError as e:
        raise InvalidArgument(f"cannot write the report to {args.out}: {e.strerror or type(e).__name__}") from None
    return len(data)


def run_model(args: argparse.Namespace) -> int:
    from query.report.build import model_evidence  # noqa: PLC0415

    as_of = args.as_of
    with _connect(args) as conn:
        evidence = model_evidence(
            conn,
            args.model,
            as_of_seq=as_of if isinstance(as_of, int) else None,
            as_of_time=as_of if isinstance(as_of, datetime) else None,
            max_depth=args.depth,
            max_nodes=args.max_nodes,
            timeout_s=args.timeout,
        )
    size = _write(args, evidence)
    print(
        f"wrote {args.out} ({size} bytes): model {printable(evidence.subject['model'])}, "
        f"{len(evidence.checkpoints)} checkpoints in its retention chain; check it with `provault verify-report {args.out}`"
    )
    return 0


def run_period(args: argparse.Namespace) -> int:
    from query.report.build import period_evidence  # noqa: PLC0415

    if args.start > args.end:
        args.parser.error(f"--from {args.start.isoformat()} is after --to {args.end.isoformat()}")
    with _connect(args) as conn:
        evidence = period_evidence(conn, args.start, args.end, max_entries=args.max_entries, timeout_s=args.timeout)
    size = _write(args, evidence)
    assert evidence.period is not None
    n = evidence.period["end_seq"] - evidence.period["first_seq"]
    print(
        f"wrote {args.out} ({size} bytes): {n} entries logged in the period; check it with `provault verify-report {args.out}`"
    )
    return 0


# --- verifying -----------------------------------------------------------------------------------------


def run_verify(args: argparse.Namespace) -> int:
    from query.report import read_report, verify_report  # noqa: PLC0415

    vkey = read_vkey(args.key) if args.key else None
    admins = [load_public_key(p) for p in args.admin_key] or None
    try:
        check = verify_report(read_report(args.file), vkey=vkey, admin_keys=admins)
    except (VerificationError, DecodeError, KeyMaterialError) as e:
        if not hasattr(e, "step") and isinstance(e, KeyMaterialError):
            raise  # the auditor's own key files, not the report
        _failure(e, args)
        return 1
    if args.json:
        print(json.dumps(check.to_json(), indent=2, ensure_ascii=True))
        return 0
    lines = [
        f"provault verify-report: OK: {args.file}",
        f"  report          {check.kind} {', '.join(f'{k} {v}' for k, v in sorted(check.subject.items()))}",
        *(f"  step {s}" for s in check.steps),
        "  checkpoint key  "
        + (
            "pinned with --key"
            if check.key_source == "given"
            else "NOT pinned: taken from the report; pin it with --key"
        ),
        "  admin keys      "
        + ("pinned with --admin-key" if check.admin_keys_pinned else "NOT pinned: pin them with --admin-key"),
    ]
    print("\n".join(printable(line) for line in lines))
    return 0


def _failure(e: ProvaultError, args: argparse.Namespace) -> None:
    step = getattr(e, "step", 0)
    name = getattr(e, "step_name", "report format")
    detail = printable(getattr(e, "detail", e.message))
    hint = printable(e.hint) if e.hint else None
    if args.json:
        doc = {
            "ok": False,
            "file": args.file,
            "step": step,
            "step_name": name,
            "reason": e.reason,
            "message": detail,
            "hint": hint,
        }
        print(json.dumps(doc, indent=2, ensure_ascii=True))
        return
    print(f"provault verify-report: FAILED at step {step} ({name})", file=sys.stdout)
    print(f"  [{e.reason}] {detail}")
    if hint:
        print(f"  hint: {hint}")
