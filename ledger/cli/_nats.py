"""``provault nats user add|list|remove`` and ``provault nats server-config``: NATS users.

Each agent connects as its own NATS user, allowed to publish only on its
producers' subjects; the ledger connects as a user allowed only to consume
and acknowledge its stream (ledger/natsauth.py).  ``user add`` makes the key
pair, writes the seed once to a new file (mode 0600) for the client's
``nats.nkey_seed_file``, and keeps the public key in ``nats.users_file``;
``server-config`` renders those users as a nats-server ``authorization``
block.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ledger.config import settings_from
from ledger.filestore import replace_atomically, write_new_secret
from ledger.natsauth import (
    ROLES,
    NatsUser,
    NatsUserError,
    NatsUsers,
    new_user_seed,
    render_server_config,
    users_path,
)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    nats = sub.add_parser(
        "nats", help="NATS users: per-agent publish rights, the ledger's consumer, read-only monitors"
    )
    nats_sub = nats.add_subparsers(dest="nats_command", metavar="ACTION", required=True)
    user = nats_sub.add_parser("user", help="add, list and remove NATS users")
    us = user.add_subparsers(dest="user_command", metavar="ACTION", required=True)

    p = us.add_parser(
        "add",
        parents=[common],
        help="create a NATS user (nkey pair); the seed goes to a new file, the public key to the users file",
        description=(
            "Create a NATS user with a new nkey pair. Role agent: may publish only on the subjects of the producer ids "
            "given with --producer (<nats.subject_prefix>.<producer token>). Role ledger: may only consume and "
            "acknowledge the stream nats.stream through the ledger's durable consumer. Role monitor: may only read the "
            "state of the stream and its consumers (dashboards, the nats CLI). The seed is written to --seed-out "
            "(a new file, mode 0600): point that client's nats.nkey_seed_file at it. The public key is added to "
            "nats.users_file (default <data-dir>/auth/nats-users.json); run `provault nats server-config` afterwards."
        ),
    )
    p.add_argument("name", metavar="NAME", help="who or what connects (a host, a pipeline); unique")
    p.add_argument("--role", required=True, choices=ROLES)
    p.add_argument(
        "--producer",
        action="append",
        default=[],
        metavar="PRODUCER_ID",
        help="a producer id an agent user may publish for (exact id); repeat for several",
    )
    p.add_argument("--seed-out", required=True, metavar="FILE", help="write the user's seed to FILE (must not exist)")
    p.set_defaults(run=run_add)

    p = us.add_parser("list", parents=[common], help="list the NATS users (names, roles, producers, public keys)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(run=run_list)

    p = us.add_parser(
        "remove", parents=[common], help="remove a NATS user; re-render and reload the servers' config to lock it out"
    )
    p.add_argument("name", metavar="NAME")
    p.set_defaults(run=run_remove)

    p = nats_sub.add_parser(
        "server-config",
        parents=[common],
        help="render the users as a nats-server authorization block",
        description=(
            "Write the nats-server `authorization { users = [...] }` block for every user in nats.users_file, with "
            "each user's permissions, to --out (replaced atomically) or standard output. Include it from every NATS "
            "server's config (`include ./provault-users.conf`) and reload them (`nats-server --signal reload`). "
            "Once it is included, a client without a listed key is refused."
        ),
    )
    p.add_argument("--out", metavar="FILE", help="write to FILE instead of standard output")
    p.set_defaults(run=run_server_config)


def run_add(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = NatsUsers(users_path(settings))
    out = Path(args.seed_out).expanduser()
    if out.exists():
        raise NatsUserError(
            f"--seed-out: {out} already exists; not overwriting a seed file", hint="choose another file"
        )
    if not out.parent.is_dir():
        raise NatsUserError(f"--seed-out: directory {out.parent} does not exist")
    seed, public_key = new_user_seed()
    user = store.add(name=args.name, role=args.role, public_key=public_key, producers=args.producer)
    try:
        write_new_secret(out, seed + "\n")
    except OSError as e:
        store.remove(user.name)  # no user without its seed
        raise NatsUserError(f"--seed-out: cannot write {out} ({e.strerror}); the user was not added") from None
    scope = f", publishes for {', '.join(user.producers)}" if user.producers else ""
    print(f"added NATS user {user.name} (role {user.role}{scope}) to {store.path}", file=sys.stderr)
    print(f"wrote its seed to {out} (mode 0600): point that client's nats.nkey_seed_file at it", file=sys.stderr)
    print("then run `provault nats server-config --out FILE` and reload the NATS servers", file=sys.stderr)
    print(public_key)
    return 0


def _row(u: NatsUser) -> str:
    return f"{u.name:<24}  {u.role:<6}  {u.created:<20}  {u.public_key}  {','.join(u.producers) or '-'}"


def run_list(args: argparse.Namespace) -> int:
    store = NatsUsers(users_path(settings_from(args)))
    users = sorted(store.load().values(), key=lambda u: (u.role, u.name))
    if args.json:
        print(json.dumps([u.to_json() for u in users], indent=2))
        return 0
    if not users:
        print(f"no NATS users in {store.path}; add one with `provault nats user add NAME --role ROLE --seed-out FILE`")
        return 0
    print(f"{'NAME':<24}  {'ROLE':<6}  {'CREATED':<20}  {'PUBLIC KEY':<56}  PRODUCERS")
    print("\n".join(_row(u) for u in users))
    return 0


def run_remove(args: argparse.Namespace) -> int:
    store = NatsUsers(users_path(settings_from(args)))
    user = store.remove(args.name)
    print(
        f"removed NATS user {user.name} ({user.public_key}); re-render with `provault nats server-config` and reload "
        "the NATS servers: until then its key still connects"
    )
    return 0


def run_server_config(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    store = NatsUsers(users_path(settings))
    text = render_server_config(list(store.load().values()), settings.nats, source=str(store.path))
    if args.out:
        out = Path(args.out).expanduser()
        if not out.parent.is_dir():
            raise NatsUserError(f"--out: directory {out.parent} does not exist")
        replace_atomically(out, text, mode=0o644)
        print(
            f"wrote the authorization block for {len(store.load())} users to {out}; include it from each NATS server's "
            "config and reload them (nats-server --signal reload)",
            file=sys.stderr,
        )
    else:
        sys.stdout.write(text)
    return 0
