"""``provault bom MODEL``: the model's ML bill of materials, CycloneDX 1.6 JSON (docs/supply-chain.md).

It reads the configured PostgreSQL (or a running ``provault up``'s) as ``provault_auditor``, SELECT only,
like ``report`` and ``bundle``; gathers the model's evidence and verifies it (``query.supply.evidence``),
builds the BOM from it and validates it against the CycloneDX 1.6 schema (``query.supply.bom``), and
writes it to standard output or, with ``-o``, to a file (atomically).  An unknown model, or a ledger with
no checkpoint yet, is exit 1 with the error; a bad command line is exit 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ledger.core.errors import InvalidArgument, ProvaultError
from query.cli.bundle import auditor_connection


class BomUnavailable(ProvaultError):
    reason = "bom_unavailable"


def _seq(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a log seq (an integer from 0), found {text!r}")
    return int(text)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bom",
        parents=[common],
        help="write a model's ML bill of materials: CycloneDX 1.6 JSON with a model card",
        description=(
            "Write the CycloneDX 1.6 ML-BOM of a model, named by its label or its digest, as of the latest "
            "checkpoint: the model (machine-learning-model, with its model card), its datasets, code commits and "
            "environments as components, and the dependencies between them, each component naming the log seqs "
            "that state it and the BOM naming the checkpoint and audit bundle they are proven in. The evidence is "
            "verified, and the BOM validated against the CycloneDX 1.6 schema, before anything is written."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="the model's label (prov:label) or its id sha256:<hex>")
    p.add_argument("-o", "--out", metavar="FILE", help="write the BOM to FILE (default: standard output)")
    p.add_argument("--as-of", type=_seq, metavar="SEQ", help="as the ledger stood at this seq")
    p.set_defaults(run=run_bom)


def _connect(args: argparse.Namespace):  # -> psycopg.Connection
    from ledger.config import settings_from  # noqa: PLC0415 - keep `provault --help` light

    return auditor_connection(settings_from(args))


def _write(path: str, data: bytes) -> None:
    out = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, out)
    except OSError as e:
        raise InvalidArgument(f"cannot write the BOM to {path}: {e.strerror or type(e).__name__}") from None


def run_bom(args: argparse.Namespace) -> int:
    try:
        from query.supply.bom import build_bom  # noqa: PLC0415 - cyclonedx-python-lib is the [supply] extra
    except ImportError as e:
        raise BomUnavailable(
            f"BOMs need cyclonedx-python-lib with JSON validation: {e}",
            hint="pip install 'provault[supply]'",
        ) from None
    from query.supply.evidence import gather  # noqa: PLC0415

    with _connect(args) as conn:
        evidence = gather(conn, args.model, as_of_seq=args.as_of)
    bom = build_bom(evidence)
    text = json.dumps(bom, indent=2, ensure_ascii=False) + "\n"
    if args.out is None:
        sys.stdout.write(text)
        return 0
    _write(args.out, text.encode("utf-8"))
    print(
        f"wrote {args.out}: CycloneDX {bom['specVersion']} BOM of {evidence.model} "
        f"({len(bom.get('components', []))} components) as of seq {evidence.as_of_seq}"
    )
    return 0
