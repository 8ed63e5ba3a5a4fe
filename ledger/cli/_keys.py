"""``provault keys new|register|revoke|list``: producer keys, managed through the log.

``register`` and ``revoke`` make an admin-signed ``key.registered`` /
``key.revoked`` event and append it over gRPC.  The admin's chain position is
saved, and the sealed envelope kept in ``<data-dir>/outbox/``, before it is
sent, so an interrupted command resends the same event next time instead of
forking the admin's chain.
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path

from ledger.config import Settings, settings_from
from ledger.core.errors import InvalidEvent, KeyMaterialError, ProvaultError
from ledger.core.events import parse_time
from ledger.core.keyring import (
    IDENTITY_ROLES,
    IDENTITY_TYPES,
    KEY_REGISTERED,
    KEY_REVOKED,
    ROLES,
    KeyRegistration,
    KeyRevocation,
    check_role_names,
)
from ledger.core.keys import (
    Ed25519Signer,
    keyid_of,
    parse_private_key,
    parse_public_key,
    save_private_key,
    save_public_key,
)
from ledger.db import connect
from ledger.keyadmin import AdminEventFailed, registration_prov, send_admin_event
from ledger.stack import read_stack_file, resolve_postgres_dsn


class CommandFailed(ProvaultError):
    reason = "command_failed"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    keys = sub.add_parser("keys", help="create, register, revoke and list signing keys")
    ks = keys.add_subparsers(dest="keys_command", metavar="ACTION", required=True)

    p = ks.add_parser("new", parents=[common], help="create an Ed25519 key pair: FILE (private, 0600) and FILE.pub")
    p.add_argument("file", metavar="FILE")
    p.add_argument("--raw", action="store_true", help="write raw 32-byte seed / public key instead of PEM")
    p.set_defaults(run=run_new)

    admin_opts = argparse.ArgumentParser(add_help=False)
    admin_opts.add_argument(
        "--admin-key", metavar="FILE", help="admin private key (default: <data-dir>/keys/admin.key)"
    )
    admin_opts.add_argument("--ledger", metavar="HOST:PORT", help="LedgerService address (default: the running stack)")

    p = ks.add_parser("register", parents=[common, admin_opts], help="register a producer or admin key in the ledger")
    p.add_argument("key_file", metavar="KEYFILE", help="the key's public (or private) key file")
    p.add_argument(
        "--identity",
        required=True,
        metavar="TYPE:NAME",
        help=f"who holds the key; TYPE is one of {', '.join(IDENTITY_TYPES)} (e.g. person:alice)",
    )
    p.add_argument(
        "--kinds", default="*", help="comma-separated event kinds it may sign, patterns allowed (default: *)"
    )
    p.add_argument("--producers", default="*", help="comma-separated producer ids it may speak for, patterns allowed")
    p.add_argument("--role", choices=ROLES, default="producer")
    p.add_argument(
        "--roles",
        metavar="NAME,...",
        help="duties of the key's holder that gate policies count approvals by, e.g. ml-lead,security",
    )
    p.set_defaults(run=run_register)

    p = ks.add_parser(
        "revoke", parents=[common, admin_opts], help="revoke a key: nothing it signs is accepted any more"
    )
    p.add_argument("keyid", metavar="KEYID")
    p.add_argument("--reason", required=True, help="why (kept in the log)")
    p.add_argument(
        "--effective-from", metavar="TIME", help="RFC 3339 UTC time from which its entries are suspect (default: now)"
    )
    p.set_defaults(run=run_revoke)

    p = ks.add_parser("list", parents=[common], help="list the ledger's keys")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_list)


def run_new(args: argparse.Namespace) -> int:
    signer = Ed25519Signer.generate()
    path = save_private_key(signer, args.file, raw=args.raw)
    save_public_key(signer.public_key, f"{args.file}.pub", raw=args.raw)
    print(f"created {path} (private, mode 0600) and {path}.pub\nkeyid {signer.keyid}")
    return 0


def _public_key_from(path: str) -> bytes:
    data = Path(path).read_bytes() if Path(path).exists() else None
    if data is None:
        raise KeyMaterialError(f"key file {path} does not exist")
    try:
        return parse_public_key(data, source=path)
    except KeyMaterialError:
        return parse_private_key(data, source=path).public_key


def _identity(text: str, roles: str | None = None) -> dict[str, str]:
    kind, sep, name = text.partition(":")
    if not sep or kind not in IDENTITY_TYPES or not name:
        raise CommandFailed(
            f"--identity: expected TYPE:NAME with TYPE one of {', '.join(IDENTITY_TYPES)}, found {text!r}"
        )
    identity = {"type": kind, "name": name}
    if roles is not None:
        try:
            names = check_role_names(_patterns(roles))
        except InvalidEvent as e:
            raise CommandFailed(f"--roles: {e.message}") from None
        if not names:
            raise CommandFailed(f"--roles: expected comma-separated role names like ml-lead, found {roles!r}")
        identity[IDENTITY_ROLES] = ",".join(names)
    return identity


def _patterns(text: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in text.split(",") if p.strip())


def run_register(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    public_key = _public_key_from(args.key_file)
    reg = KeyRegistration(
        keyid=keyid_of(public_key),
        public_key=public_key,
        role=args.role,
        identity=_identity(args.identity, args.roles),
        kinds=_patterns(args.kinds),
        producers=_patterns(args.producers),
    )
    return _send_admin_event(
        args, settings, KEY_REGISTERED, registration_prov(reg), reg.to_data(), f"registered key {reg.keyid}"
    )


def run_revoke(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    when = parse_time(args.effective_from) if args.effective_from else datetime.now(UTC)
    keyid = args.keyid.lower()
    if len(keyid) != 64 or any(c not in "0123456789abcdef" for c in keyid):
        raise CommandFailed(f"KEYID: expected 64 hex digits (see `provault keys list`), found {args.keyid!r}")
    rev = KeyRevocation(keyid=keyid, effective_from=when, reason=args.reason)
    prov = {"agent": {f"provault:key-{rev.keyid[:16]}": {"prov:type": "provault:SigningKey"}}}
    return _send_admin_event(args, settings, KEY_REVOKED, prov, rev.to_data(), f"revoked key {rev.keyid}")


def _ledger_target(args: argparse.Namespace, settings: Settings) -> str:
    if args.ledger:
        return args.ledger
    info = read_stack_file(settings.data_dir)
    if info and info.get("ledger_grpc"):
        return str(info["ledger_grpc"])
    return settings.grpc.ledger_listen


def _send_admin_event(
    args: argparse.Namespace, settings: Settings, kind: str, prov: dict, data: dict, done: str
) -> int:
    try:
        event_id, outcome = send_admin_event(
            settings, kind, prov, data, target=_ledger_target(args, settings), admin_key=args.admin_key
        )
    except AdminEventFailed as e:
        raise CommandFailed(e.message, hint=e.hint) from None
    print(
        f"{done} (event {event_id}, log seq {outcome.seq}{', already recorded' if outcome.status == 'duplicate' else ''})"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    with connect(resolve_postgres_dsn(settings), autocommit=True) as conn:
        roots = conn.execute(
            "SELECT keyid, purpose, name, added_at FROM ledger.trust_root ORDER BY added_at"
        ).fetchall()
        keys = conn.execute(
            "SELECT keyid, role, identity, kinds, producers, registered_seq, revoked_seq, revoked_from, revoked_reason"
            " FROM ledger.keys ORDER BY registered_seq"
        ).fetchall()
    rows = [
        {"keyid": k, "role": f"trust-root {p}", "identity": n, "since": a.isoformat(), "status": "active"}
        for k, p, n, a in roots
    ]
    for k, role, ident, kinds, prods, rseq, vseq, vfrom, vwhy in keys:
        status = f"revoked at seq {vseq} (from {vfrom.isoformat()}: {vwhy})" if vseq is not None else "active"
        rows.append(
            {
                "keyid": k,
                "role": role,
                "identity": f"{ident['type']}:{ident['name']}",
                "since": f"seq {rseq}",
                "kinds": kinds,
                "producers": prods,
                "status": status,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        for r in rows:
            print(f"{r['keyid'][:16]}  {r['role']:<22} {r['identity']:<24} {r['since']:<12} {r['status']}")
    return 0
