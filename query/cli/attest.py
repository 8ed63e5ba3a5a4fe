"""``provault attest MODEL`` (issue an in-toto attestation) and ``provault verify-attestation`` (check one offline).

``attest`` reads the configured PostgreSQL (or a running ``provault up``'s) as ``provault_auditor``, signs
with the attestation key (``supply.key_file``) and records the issuing through that key's own agent
(docs/supply-chain.md).  It writes two files: the DSSE envelope, and the audit bundle the statement was
computed from, which a verifier needs too.  ``verify-attestation`` opens no database and no network
connection.  Exit codes: 0 verified, 1 the first failing step (or any refusal), 2 a command-line error.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from ledger.core.errors import DecodeError, InvalidArgument, KeyMaterialError, ProvaultError, VerificationError
from ledger.core.keys import load_public_key
from query.bundle_verify import printable
from query.cli.bundle import auditor_connection, read_vkey

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def _seq(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a ledger seq (an integer >= 0), found {text!r}")
    return int(text)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "attest",
        parents=[common],
        help="issue an in-toto / SLSA provenance attestation of a model, signed by the attestation key",
        description=(
            "Gather the model's lifecycle as a verified audit bundle, compute an in-toto Statement v1 with an "
            "SLSA Provenance v1 predicate from it (subject: the model's digest; dependencies: its datasets, code "
            "commits and environments; parameters: its runs'), sign it in a DSSE envelope with the attestation "
            "key, and record the issuing as an attestation.issued event. Writes FILE and the bundle next to it "
            "(FILE with .bundle.json in place of .json); check both with `provault verify-attestation`."
        ),
    )
    p.add_argument("model", metavar="MODEL", help="the model's label (prov:label) or its id sha256:<hex>")
    p.add_argument("-o", "--out", metavar="FILE", help="where to write the envelope (default <label>.intoto.json)")
    p.add_argument("--as-of", type=_seq, metavar="SEQ", help="attest as the ledger stood at this seq")
    p.add_argument("--no-record", action="store_true", help="do not record the issuing in the ledger")
    p.set_defaults(run=run_attest)

    v = sub.add_parser(
        "verify-attestation",
        parents=[common],
        help="verify an attestation from `provault attest` offline (no database, no network)",
        description=(
            "Check an attestation against the audit bundle behind it, without trusting whoever issued it: "
            "(1) the envelope is DSSE with in-toto's payloadType, holding an in-toto Statement v1 with an SLSA "
            "Provenance v1 predicate; (2) the bundle verifies; (3) the statement names this bundle's digest; "
            "(4) the signature is by a key the bundle registers for attestation.*, not revoked at its "
            "checkpoint; (5) the statement equals the one recomputed from the bundle. Pin the log's checkpoint "
            "key with --vkey and the admin keys with --admin-key. Exit 0 when it verifies, 1 naming the first "
            "failure."
        ),
    )
    v.add_argument("file", metavar="FILE", help="the attestation (a DSSE envelope, as `provault attest` wrote it)")
    v.add_argument("--bundle", required=True, metavar="BUNDLE", help="the audit bundle written next to it")
    v.add_argument(
        "--vkey",
        "--key",
        dest="vkey",
        metavar="VKEY_FILE",
        help="the checkpoint verifier key you saved (`provault checkpoint --vkey`)",
    )
    v.add_argument(
        "--admin-key",
        action="append",
        default=[],
        metavar="PUBKEY_FILE",
        help="an admin (root) public key you trust; repeat for several",
    )
    v.add_argument("--json", action="store_true", help="print a machine-readable result on stdout")
    v.set_defaults(run=run_verify)


# --- provault attest ------------------------------------------------------------------------------


def default_name(label: str | None, model: str) -> str:
    """``<label>.intoto.json``, the label made safe as a file name (the digest's start when there is none)."""
    stem = _UNSAFE.sub("_", label or "").strip("._") or f"model-{model.split(':', 1)[-1][:16]}"
    return f"{stem}.intoto.json"


def bundle_path(path: Path) -> Path:
    """FILE with ``.bundle.json`` in place of ``.json`` (appended when FILE does not end in ``.json``)."""
    name = path.name[: -len(".json")] if path.name.endswith(".json") else path.name
    return path.with_name(name + ".bundle.json")


def _write(path: Path, data: bytes) -> None:
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise InvalidArgument(f"cannot write {path}: {e.strerror or type(e).__name__}") from None


def run_attest(args: argparse.Namespace) -> int:
    from ledger.config import settings_from  # noqa: PLC0415 - the database side loads only here
    from query.supply.attest import issue, load_attestor  # noqa: PLC0415

    settings = settings_from(args)
    key = load_attestor(settings)  # before the ledger is read: a missing key says how to make it
    with auditor_connection(settings) as conn:
        issued = issue(conn, settings, args.model, as_of_seq=args.as_of, record=not args.no_record, signer=key)
    ev = issued.evidence
    out = Path(args.out) if args.out else Path(default_name(ev.label(), ev.model))
    bundle = bundle_path(out)
    _write(bundle, ev.bundle_json)
    _write(out, issued.envelope_json)
    label = f" ({ev.label()})" if ev.label() else ""
    lines = [
        f"wrote {out} ({len(issued.envelope_json)} bytes): in-toto Statement v1, SLSA Provenance v1, "
        f"for model {ev.model}{label}, as of seq {ev.as_of_seq}, signed by the attestation key {key.keyid[:16]}…",
        f"wrote {bundle} ({len(ev.bundle_json)} bytes): the audit bundle it was computed from, {ev.bundle_digest}",
        f"statement digest {issued.statement_digest}",
    ]
    if args.no_record:
        lines.append("not recorded in the ledger (--no-record)")
    elif issued.delivered:
        lines.append(f"recorded as attestation.issued event {issued.event_id}")
    else:
        lines.append(
            f"recorded as attestation.issued event {issued.event_id}: spooled, not yet delivered "
            "(the ledger did not answer in time; it is sent when it does)"
        )
    lines.append(f"check it with `provault verify-attestation {out} --bundle {bundle}`")
    print("\n".join(printable(line) for line in lines))
    return 0


# --- provault verify-attestation ---------------------------------------------------------------------


def _json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=True).replace("\x7f", "\\u007f")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as e:
        raise InvalidArgument(f"cannot read the {what} {path}: {e.strerror or type(e).__name__}") from None


def run_verify(args: argparse.Namespace) -> int:
    from query.supply.attest import verify_attestation  # noqa: PLC0415

    vkey = read_vkey(args.vkey) if args.vkey else None
    admins = [load_public_key(p) for p in args.admin_key] or None
    envelope, bundle = _read(args.file, "attestation"), _read(args.bundle, "bundle")
    try:
        check = verify_attestation(envelope, bundle, vkey=vkey, admin_keys=admins)
    except (VerificationError, DecodeError, KeyMaterialError) as e:
        if not hasattr(e, "step"):
            raise  # the verifier's own key files, not the attestation
        _failure(e, args)
        return 1
    if args.json:
        print(_json(check.to_json()))
        return 0
    r = check.bundle
    who = check.signer_identity
    lines = [
        f"provault verify-attestation: OK: {args.file}",
        f"  subject         {check.subject_name} {check.model}, as of seq {r.as_of_seq}",
        f"  statement       {check.statement_digest}",
        f"  bundle          {args.bundle} {check.bundle_digest}",
        f"  signed by       {check.signer_keyid} ({who.get('name', '?')}, {who.get('type', '?')}), "
        f"registered at seq {check.signer_registered_seq}",
        *(f"  step {s}" for s in check.steps),
        "  checkpoint key  "
        + (
            "pinned with --vkey" if r.key_source == "given" else "NOT pinned: taken from the bundle; pin it with --vkey"
        ),
        "  admin keys      "
        + (
            "pinned with --admin-key"
            if r.admin_keys_pinned
            else "NOT pinned: the attestation key's registration rests on the checkpoint alone; pin them with --admin-key"
        ),
        *(f"  note            {n}" for n in r.notes),
    ]
    print("\n".join(printable(line) for line in lines))
    return 0


def _failure(e: ProvaultError, args: argparse.Namespace) -> None:
    step, name = getattr(e, "step", 0), getattr(e, "step_name", "")
    detail = printable(getattr(e, "detail", e.message))
    hint = printable(e.hint) if e.hint else None
    if args.json:
        doc = {
            "ok": False,
            "file": args.file,
            "bundle": args.bundle,
            "step": step,
            "step_name": name,
            "reason": e.reason,
            "message": detail,
            "hint": hint,
        }
        if getattr(e, "bundle_step", None) is not None:
            doc["bundle_step"] = e.bundle_step  # type: ignore[attr-defined]
        if getattr(e, "field", None):
            doc["field"] = e.field  # type: ignore[attr-defined]
        print(_json(doc))
        return
    print(f"provault verify-attestation: FAILED at step {step} ({name}): {printable(args.file)}", file=sys.stdout)
    print(f"  [{e.reason}] {detail}")
    if hint:
        print(f"  hint: {hint}")
