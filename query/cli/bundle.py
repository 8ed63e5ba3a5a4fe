"""``provault bundle`` (build an audit bundle) and ``provault verify-bundle`` (check one offline).

``verify-bundle`` opens no database and no network connection: it reads the
file and the keys you pinned, and runs ``query.bundle_verify``.  Exit 0 when
the bundle verifies, 1 with the first failing step and its place.  Text that can
come from the bundle is printed through ``printable`` (control characters and
bidi controls escaped), and ``--json`` output is pure ASCII JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ledger.core.errors import DecodeError, KeyMaterialError, ProvaultError, VerificationError
from ledger.core.keys import load_public_key
from query.bundle_verify import BundleReport, printable, read_bundle, verify_bundle

if TYPE_CHECKING:
    from ledger.config import Settings

AUDITOR_ROLE = "provault_auditor"


def auditor_connection(settings: Settings):  # -> psycopg.Connection
    """The configured PostgreSQL (or the running stack's), as ``provault_auditor``: SELECT only."""
    from ledger.db import connect  # noqa: PLC0415 - the database side loads only here
    from ledger.stack import resolve_postgres_dsn  # noqa: PLC0415

    return connect(resolve_postgres_dsn(settings), autocommit=True, role=AUDITOR_ROLE)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "bundle",
        parents=[common],
        help="write an audit bundle for a node's trace: envelopes, inclusion proofs, checkpoint, key history",
        description=(
            "Trace from node ID (upstream by default) as of the latest checkpoint, and write everything needed "
            "to check the answer offline to FILE: the exact signed envelopes behind it, an inclusion proof for "
            "each against one signed checkpoint, and the key registrations behind every signing key. Check it "
            "anywhere with `provault verify-bundle FILE`."
        ),
    )
    p.add_argument("node_id", metavar="ID", help="the node to trace from (e.g. sha256:…, provault:prediction/…)")
    way = p.add_mutually_exclusive_group()
    way.add_argument("--down", action="store_true", help="walk downstream (impact) instead of upstream (traceback)")
    way.add_argument("--both", action="store_true", help="walk both ways")
    p.add_argument("--as-of", type=int, metavar="SEQ", help="answer as of this seq (default: the latest checkpoint)")
    p.add_argument(
        "--depth", type=int, default=0, metavar="N", help="follow at most N relation hops (default: the server's)"
    )
    p.add_argument(
        "--max-nodes", type=int, default=0, metavar="N", help="include at most N nodes (default: the server's)"
    )
    p.add_argument("-o", "--out", required=True, metavar="FILE", help="where to write the bundle")
    p.add_argument("--binary", action="store_true", help="write the binary protobuf encoding instead of JSON")
    p.set_defaults(run=run_bundle)

    p = sub.add_parser(
        "verify-bundle",
        parents=[common],
        help="verify an audit bundle offline (no database, no network)",
        description=(
            "Check an audit bundle without trusting the server that built it: (1) the checkpoint's signature, "
            "(2) every entry's leaf hash and inclusion proof, (3) every signature and the key history behind it, "
            "(4) the graph recomputed from the signed events. Pin the log's checkpoint key with --key and the "
            "admin keys with --admin-key; without them the bundle's own checkpoint key is used and admin "
            "signatures are not checked (both are reported). Exit 0 when it verifies, 1 naming the first failure."
        ),
    )
    p.add_argument("file", metavar="FILE", help="the bundle file (JSON or binary, as `provault bundle` wrote it)")
    p.add_argument(
        "--key", metavar="VKEY_FILE", help="the checkpoint verifier key you saved (`provault checkpoint --vkey`)"
    )
    p.add_argument(
        "--admin-key",
        action="append",
        default=[],
        metavar="PUBKEY_FILE",
        help="an admin (root) public key you trust; repeat for several",
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    p.set_defaults(run=run_verify)


# --- provault bundle --------------------------------------------------------------------


def run_bundle(args: argparse.Namespace) -> int:
    from ledger.config import settings_from  # noqa: PLC0415 - the database side loads only here
    from ledger.db import connect  # noqa: PLC0415
    from ledger.stack import resolve_postgres_dsn  # noqa: PLC0415
    from query.bundle import bundle_trace, write_bundle  # noqa: PLC0415

    direction = "downstream" if args.down else "both" if args.both else "upstream"
    dsn = resolve_postgres_dsn(settings_from(args))
    with connect(dsn, autocommit=True, role=AUDITOR_ROLE) as conn:
        bundle = bundle_trace(
            conn,
            args.node_id,
            direction=direction,
            max_depth=max(args.depth, 0),
            max_nodes=max(args.max_nodes, 0),
            as_of_seq=args.as_of,
        )
    size = write_bundle(bundle, args.out, binary=args.binary)
    print(
        f"wrote {args.out} ({size} bytes): {len(bundle.entries)} entries and {len(bundle.key_entries)} key entries "
        f"about {printable(bundle.node_id)}, as of seq {bundle.as_of_seq}, proven against checkpoint size {bundle.checkpoint.tree_size}"
        + (" (the walk was cut short: raise --depth / --max-nodes)" if bundle.truncated else "")
    )
    return 0


# --- provault verify-bundle -----------------------------------------------------------------


def read_vkey(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as e:
        raise KeyMaterialError(f"verifier key file {path} cannot be read: {type(e).__name__}") from None


def run_verify(args: argparse.Namespace) -> int:
    vkey = read_vkey(args.key) if args.key else None
    admins = [load_public_key(p) for p in args.admin_key] or None
    try:
        report = verify_bundle(read_bundle(args.file), vkey=vkey, admin_keys=admins)
    except (VerificationError, DecodeError, KeyMaterialError) as e:
        if not hasattr(e, "step") and isinstance(e, KeyMaterialError):
            raise  # the auditor's own key files, not the bundle
        _print_failure(e, args)
        return 1
    print(_json(report.to_json()) if args.json else _summary(report, args))
    return 0


def _json(doc: dict[str, Any]) -> str:
    """JSON that is safe on a terminal too: ``ensure_ascii`` escapes C0 and every non-ASCII character
    (C1, bidi controls); DEL is ASCII, so it is escaped here (it can only occur inside a string)."""
    return json.dumps(doc, indent=2, ensure_ascii=True).replace("\x7f", "\\u007f")


def _print_failure(e: ProvaultError, args: argparse.Namespace) -> None:
    step = getattr(e, "step", 0)
    place = printable(getattr(e, "place", "the file"))
    detail = printable(getattr(e, "detail", e.message))
    hint = printable(e.hint) if e.hint else None
    if args.json:
        doc: dict[str, Any] = {
            "ok": False,
            "file": args.file,
            "step": step,
            "step_name": getattr(e, "step_name", "bundle format"),
            "place": place,
            "reason": e.reason,
            "message": detail,
            "hint": hint,
        }
        print(_json(doc))
        return
    name = getattr(e, "step_name", "bundle format")
    print(f"provault verify-bundle: FAILED at step {step} ({name}), {place}", file=sys.stdout)
    print(f"  [{e.reason}] {detail}")
    if hint:
        print(f"  hint: {hint}")


def _summary(r: BundleReport, args: argparse.Namespace) -> str:
    lines = [
        f"provault verify-bundle: OK: {args.file}",
        f"  subject         {r.node_id} ({r.direction}), as of seq {r.as_of_seq}",
        f"  contents        {r.entries} entries, {r.key_entries} key entries, {r.nodes} nodes, {r.edges} edges",
        *(f"  step {s}" for s in r.steps),
        "  checkpoint key  "
        + (
            "pinned with --key"
            if r.key_source == "given"
            else "NOT pinned: taken from the bundle itself; pin it with --key"
        ),
        "  admin keys      "
        + (
            "pinned with --admin-key"
            if r.admin_keys_pinned
            else f"NOT pinned: {len(r.unchecked_seqs)} signature(s) by root keys {', '.join(k[:16] + '…' for k in r.root_keyids)} "
            "were not checked; pin them with --admin-key"
        ),
    ]
    lines += [f"  note            {n}" for n in r.notes]
    return "\n".join(printable(line) for line in lines)
