"""``provault auth token create|list|revoke``: bearer tokens for the gRPC services.

The tokens file (``grpc.tokens_file``) keeps only hashes; ``create`` shows a
token once.  The servers re-read the file when it changes, so a revoked token
is refused from its next call on, without a restart.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ledger.config import settings_from
from ledger.core.errors import ProvaultError
from ledger.filestore import write_new_secret
from ledger.grpckit.tokens import ROLES, TokenEntry, TokenStore, tokens_path


class TokenCommandFailed(ProvaultError):
    reason = "command_failed"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    auth = sub.add_parser("auth", help="bearer tokens for the gRPC services (ledger serve, query serve)")
    auth_sub = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    token = auth_sub.add_parser("token", help="create, list and revoke bearer tokens")
    ts = token.add_subparsers(dest="token_command", metavar="ACTION", required=True)

    p = ts.add_parser(
        "create",
        parents=[common],
        help="create a token; it is printed once, only its hash is kept",
        description=(
            "Create a bearer token for LedgerService / QueryService and store its SHA-256 hash in grpc.tokens_file "
            "(default <data-dir>/auth/tokens.json, mode 0600). Roles: producer (Append, only for the producer ids "
            "given with --producer), auditor (every query and the ledger's reads), admin (everything). The token is "
            "printed once (or written to --out) and cannot be shown again."
        ),
    )
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument(
        "--producer",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a producer id a producer token may append for; shell-style patterns, '*' for any; repeat for several",
    )
    p.add_argument("--name", default="", help="who or what holds it (shown in `list` and in the servers' logs)")
    p.add_argument(
        "--out",
        metavar="FILE",
        help="write the token to FILE (new, mode 0600; for grpc.client_token_file) instead of printing it",
    )
    p.set_defaults(run=run_create)

    p = ts.add_parser("list", parents=[common], help="list the tokens (ids, roles, producers, names; never the tokens)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_list)

    p = ts.add_parser("revoke", parents=[common], help="revoke a token; the servers refuse it from its next call on")
    p.add_argument("token_id", metavar="ID")
    p.set_defaults(run=run_revoke)


def _patterns(role: str, patterns: list[str]) -> tuple[str, ...]:
    bad = [p for p in patterns if not p.strip() or any(c.isspace() for c in p)]
    if bad:
        raise TokenCommandFailed(f"--producer: expected a producer id or pattern without spaces, found {bad[0]!r}")
    if role == "producer" and not patterns:
        raise TokenCommandFailed(
            "a producer token needs --producer PATTERN: the producer ids it may append for ('*' for any)"
        )
    if role != "producer" and patterns:
        raise TokenCommandFailed(
            f"--producer: only producer tokens are limited to producer ids; a {role} token takes none"
        )
    return tuple(dict.fromkeys(patterns))


def _write_new(path: Path, token: str) -> None:
    try:
        write_new_secret(path, token + "\n")
    except FileExistsError:
        raise TokenCommandFailed(
            f"--out: {path} already exists; not overwriting a token file", hint="choose another file"
        ) from None


def run_create(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    producers = _patterns(args.role, args.producer)
    store = TokenStore(tokens_path(settings))
    out = Path(args.out).expanduser() if args.out else None
    if out is not None and out.exists():
        raise TokenCommandFailed(
            f"--out: {out} already exists; not overwriting a token file", hint="choose another file"
        )
    token, entry = store.create(role=args.role, producers=producers, name=args.name)
    scope = f", producers {', '.join(entry.producers)}" if entry.producers else ""
    print(f"created token {entry.id} (role {entry.role}{scope}) in {store.path}", file=sys.stderr)
    if out is not None:
        _write_new(out, token)
        print(f"wrote the token to {out} (mode 0600); point grpc.client_token_file at it", file=sys.stderr)
    else:
        print(token, flush=True)
        print("this is the only time the token is shown; only its hash is stored", file=sys.stderr)
    return 0


def _row(e: TokenEntry) -> str:
    return f"{e.id}  {e.role:<8}  {e.created:<20}  {','.join(e.producers) or '-':<24}  {e.name}"


def run_list(args: argparse.Namespace) -> int:
    store = TokenStore(tokens_path(settings_from(args)))
    entries = sorted(store.load().values(), key=lambda e: (e.created, e.id))
    if args.json:
        print(json.dumps([{k: v for k, v in e.to_json().items() if k != "hash"} for e in entries], indent=2))
        return 0
    if not entries:
        print(f"no tokens in {store.path}; create one with `provault auth token create --role ROLE`")
        return 0
    print(f"{'ID':<12}  {'ROLE':<8}  {'CREATED':<20}  {'PRODUCERS':<24}  NAME")
    print("\n".join(_row(e) for e in entries))
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    store = TokenStore(tokens_path(settings_from(args)))
    entry = store.revoke(args.token_id)
    name = f" ({entry.name})" if entry.name else ""
    print(f"revoked token {entry.id}{name}; the servers refuse it from their next call on")
    return 0
