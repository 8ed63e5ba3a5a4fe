"""``provault verify``: audit the ledger database independently of the service.

Exit 0 when everything verifies, 1 with the first divergence when not.  The
progress bar goes to stderr; the summary (or ``--json``) to stdout.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from ledger.audit import (
    KEY_GIVEN,
    AuditReport,
    CheckpointProof,
    audit,
    verify_against_checkpoint,
)
from ledger.config import settings_from
from ledger.core.checkpoint import NoteVerifier, parse_vkey
from ledger.core.errors import (
    DecodeError,
    KeyMaterialError,
    ProvaultError,
    VerificationError,
)
from ledger.core.keys import load_public_key
from ledger.db import connect
from ledger.stack import resolve_postgres_dsn

AUDITOR_ROLE = "provault_auditor"
BAR_WIDTH = 30


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "verify",
        parents=[common],
        help="audit the ledger database: envelopes, signatures, Merkle tree, checkpoints",
        description=(
            "Re-derive the whole log from the stored envelope bytes and the trust root: contiguous seqs, "
            "leaf hashes, every signature with the key registry as it stood at that seq, every stored Merkle "
            "node, the log state, every signed checkpoint and the consistency between them. With --checkpoint, "
            "also prove that today's log extends a checkpoint you saved earlier. Exit 0 when everything "
            "verifies, 1 (naming the first divergence) when not. Pin the log's checkpoint key with --key and the "
            "admin keys with --admin-key; without them the keys stored in the database are used (both are reported)."
        ),
    )
    p.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="a signed checkpoint note saved earlier: prove the current log is consistent with it",
    )
    p.add_argument(
        "--key",
        metavar="VKEY_FILE",
        help="the log's checkpoint verifier key (C2SP vkey: name+hash+base64) to use instead of the one stored "
        "in the database",
    )
    p.add_argument(
        "--admin-key",
        action="append",
        default=[],
        metavar="PUBKEY_FILE",
        help="an admin (root) public key you trust; repeat for several. The trust root must hold exactly these "
        "admin keys, and the key registry is replayed from them",
    )
    p.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    key = _load_key(Path(args.key)) if args.key else None
    admins = [_load_admin_key(f) for f in args.admin_key] or None
    note = _read_text(Path(args.checkpoint), "checkpoint") if args.checkpoint else None
    dsn = resolve_postgres_dsn(settings_from(args))
    bar = ProgressBar(sys.stderr)
    with connect(dsn, autocommit=True, role=AUDITOR_ROLE) as conn:
        saved: CheckpointProof | ProvaultError | None = None
        if note is not None:
            try:
                saved = verify_against_checkpoint(conn, note, key=key)
            except (VerificationError, DecodeError) as e:
                saved = e
        report = audit(conn, progress=bar, checkpoint_key=key, admin_keys=admins)
    bar.finish()
    if args.json:
        print(json.dumps(_json(report, saved, args), indent=2))
    else:
        print(_summary(report, saved, args))
    return 0 if report.ok and not isinstance(saved, ProvaultError) else 1


def _read_text(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyMaterialError(f"{what} file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise KeyMaterialError(f"{what} file {path} cannot be read as UTF-8 text: {type(e).__name__}") from None


def _load_key(path: Path) -> NoteVerifier:
    text = _read_text(path, "verifier key").strip()
    try:
        return parse_vkey(text)
    except KeyMaterialError as e:
        raise KeyMaterialError(
            f"verifier key file {path}: {e.message}", hint="it holds one line: <name>+<hex key hash>+<base64 key>"
        ) from e


def _load_admin_key(path: str) -> bytes:
    """A public key file as ``ledger init --admin-key`` and ``verify-bundle --admin-key`` read it."""
    try:
        return load_public_key(path)
    except KeyMaterialError as e:
        raise KeyMaterialError(
            f"--admin-key: {e.message}",
            hint="give the admin public key file (PEM, or raw 32 bytes) "
            "the ledger was initialised with (`provault ledger init --admin-key`)",
        ) from e


# --- output -----------------------------------------------------------------------


def _key_text(source: str, args: argparse.Namespace) -> str:
    return f"given with --key {args.key}" if source == KEY_GIVEN else "read from the database (ledger.trust_root)"


def _admin_text(report: AuditReport) -> str:
    keys = ", ".join(k[:16] + "…" for k in report.admin_keyids) or "none"
    if report.admin_keys_pinned:
        return f"pinned with --admin-key ({keys})"
    return f"NOT pinned: read from the database (ledger.trust_root) ({keys}); pin them with --admin-key"


def _summary(report: AuditReport, saved: CheckpointProof | ProvaultError | None, args: argparse.Namespace) -> str:
    lines = [_saved_text(saved, args)] if saved is not None else []
    status = "OK" if report.ok else f"FAILED: {report.problem_count} problem{'s' * (report.problem_count != 1)}"
    lines += [
        f"provault verify: {status}",
        f"  log             {report.origin or '(no origin)'}, {report.log_size} entries (log_state), root {report.root_hash.hex()}",
        f"  entries         {report.entries_checked} re-verified (seq, leaf hash, signature and key as of their seq, columns)",
        f"  merkle nodes    {report.nodes_checked} recomputed and compared",
        f"  checkpoints     {report.checkpoints_checked} checked (signature, origin, root, consistency)",
        f"  checkpoint key  {_key_text(report.key_source, args)}",
        f"  admin keys      {_admin_text(report)}",
    ]
    if report.first_problem is not None:
        lines.append(f"first divergence: {report.first_problem.describe()}")
        lines.append(f"problems (the first {len(report.problems)} of {report.problem_count}, in the order found):")
        lines += [f"  - {p.describe()}" for p in report.problems]
        if report.problem_count > len(report.problems):
            lines.append(f"  ... and {report.problem_count - len(report.problems)} more")
        lines.append("  by kind: " + ", ".join(f"{k} {n}" for k, n in report.problem_kinds))
    return "\n".join(lines)


def _saved_text(saved: CheckpointProof | ProvaultError, args: argparse.Namespace) -> str:
    if isinstance(saved, ProvaultError):
        return f"saved checkpoint {args.checkpoint}: REFUSED [{saved.reason}]: {saved.diagnostics()}"
    return (
        f"saved checkpoint {args.checkpoint}: OK: size {saved.saved.size} (root {saved.saved.root_hash.hex()}) is "
        f"consistent with the ledger's latest checkpoint, size {saved.latest.size} (root {saved.latest.root_hash.hex()}); "
        f"checkpoint key {saved.key} {_key_text(saved.key_source, args)}"
    )


def _json(
    report: AuditReport, saved: CheckpointProof | ProvaultError | None, args: argparse.Namespace
) -> dict[str, Any]:
    doc: dict[str, Any] = {"ok": report.ok and not isinstance(saved, ProvaultError), "audit": report.to_json()}
    if isinstance(saved, ProvaultError):
        doc["checkpoint"] = {
            "ok": False,
            "file": args.checkpoint,
            "reason": saved.reason,
            "message": saved.message,
            "hint": saved.hint,
        }
    elif saved is not None:
        doc["checkpoint"] = {"file": args.checkpoint, **saved.to_json()}
    return doc


class ProgressBar:
    """``\\r``-updated bar on a terminal; a line every ~10% otherwise."""

    def __init__(self, stream: TextIO, label: str = "verifying") -> None:
        self.stream, self.label = stream, label
        self.tty = stream.isatty()
        self.shown = -1
        self.drawn = False

    def __call__(self, done: int, total: int) -> None:
        if total <= 0:
            return
        pct = min(100, done * 100 // total)
        if self.tty:
            filled = pct * BAR_WIDTH // 100
            self.stream.write(f"\r{self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {pct:3d}% {done}/{total}")
            self.drawn = True
        elif pct // 10 > self.shown:
            self.shown = pct // 10
            self.stream.write(f"{self.label}: {pct}% ({done}/{total} entries)\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
