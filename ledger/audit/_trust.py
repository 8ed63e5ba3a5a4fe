"""The trust root: the admin keys and the checkpoint key the audit starts from.

Either may be pinned by the auditor instead of read from ``ledger.trust_root``:
the checkpoint key (``--key``) and the admin keys (``--admin-key``).  A pinned
key replaces the stored one for the whole audit, and the stored ones must be
exactly the pinned ones, or the audit reports a ``trust_root`` /
``trust_root_mismatch`` problem naming what differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import psycopg

from ledger.core.checkpoint import NoteVerifier
from ledger.core.keyring import KeyRecord, root_key
from ledger.core.keys import Ed25519Verifier, keyid_of
from ledger.store import checkpoints as store_checkpoints

from ._report import Problem, problem

KEY_FROM_TRUST_ROOT = "trust_root"
"""The checkpoint key came from ledger.trust_root (the database)."""
KEY_GIVEN = "given"
"""The checkpoint key was given by the auditor (not read from the database)."""
PINNED_ADMIN = "pinned"
"""The name a pinned admin key gets when the trust root does not hold it (the replay does not read names)."""

_TRUST_ROOT_SQL = "SELECT keyid, public_key, purpose, name FROM ledger.trust_root ORDER BY added_at, keyid"
_ORIGIN_SQL = "SELECT name FROM ledger.trust_root WHERE purpose = 'checkpoint' ORDER BY added_at LIMIT 1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Trust:
    admins: tuple[KeyRecord, ...]
    """The admin (root) keys the replay starts from: the pinned ones, or else those stored."""
    admins_pinned: bool
    checkpoint_key: NoteVerifier | None
    origin: str | None
    key_source: str
    problems: tuple[Problem, ...]


def _trust_problem(message: str, expected: object = None, found: object = None) -> Problem:
    return problem("trust_root", "ledger.trust_root", message, expected, found)


def load_trust(
    conn: psycopg.Connection, given: NoteVerifier | None = None, pins: dict[str, bytes] | None = None
) -> Trust:
    """Admin keys and the checkpoint key; keys the auditor pinned replace the stored ones.

    ``pins`` maps keyid to raw public key, as :func:`ledger.core.keys.pinned_keys` returns it.
    """
    rows = conn.execute(_TRUST_ROOT_SQL).fetchall()
    problems = [
        _trust_problem(f"keyid of {name!r} is not the SHA-256 of its public key", keyid_of(bytes(pk)), keyid)
        for keyid, pk, _, name in rows
        if keyid_of(bytes(pk)) != keyid
    ]
    stored_admins = tuple(root_key(bytes(pk), name) for _, pk, purpose, name in rows if purpose == "admin")
    stored = [
        NoteVerifier(name=name, verifier=Ed25519Verifier(bytes(pk)))
        for _, pk, purpose, name in rows
        if purpose == "checkpoint"
    ]
    problems += _checkpoint_key_problems(stored, given)
    if pins is not None:
        problems += admin_key_problems(stored_admins, pins)
        names = {r.keyid: r.identity["name"] for r in stored_admins}
        admins = tuple(root_key(pk, names.get(kid, PINNED_ADMIN)) for kid, pk in pins.items())
    else:
        admins = stored_admins
    if given is not None:
        key, source = given, KEY_GIVEN
    else:
        key, source = (stored[0] if stored else None), KEY_FROM_TRUST_ROOT
    return Trust(
        admins=admins,
        admins_pinned=pins is not None,
        checkpoint_key=key,
        origin=key.name if key else None,
        key_source=source,
        problems=tuple(problems),
    )


def admin_key_problems(stored: Sequence[KeyRecord], pins: dict[str, bytes]) -> list[Problem]:
    """The trust root's admin keys must be exactly the ones the auditor pinned, no more and no fewer."""
    have = {r.keyid for r in stored}
    missing = sorted(set(pins) - have)
    unexpected = sorted(have - set(pins))
    if not missing and not unexpected:
        return []
    parts = ([f"missing (pinned, not in the trust root): {', '.join(missing)}"] if missing else []) + (
        [f"unexpected (in the trust root, not pinned): {', '.join(unexpected)}"] if unexpected else []
    )
    return [
        problem(
            "trust_root_mismatch",
            "ledger.trust_root",
            "the admin keys stored in the database are not the admin keys you pinned (the trust root was replaced, "
            "or the keys are another ledger's): " + "; ".join(parts),
            ", ".join(sorted(pins)),
            ", ".join(sorted(have)) or "none",
        )
    ]


def _checkpoint_key_problems(stored: list[NoteVerifier], given: NoteVerifier | None) -> list[Problem]:
    """A log has one checkpoint key; the one the auditor gives must be it."""
    problems = []
    if len(stored) > 1:
        problems.append(
            _trust_problem(
                "more than one checkpoint key: a log has one checkpoint identity",
                "1 key",
                ", ".join(v.vkey() for v in stored),
            )
        )
    if given is not None and stored and stored[0].vkey() != given.vkey():
        problems.append(
            _trust_problem(
                "the checkpoint key stored in the database is not the key you gave", given.vkey(), stored[0].vkey()
            )
        )
    if given is None and not stored:
        problems.append(_trust_problem("no checkpoint key: checkpoints cannot be verified", "1 key", "none"))
    return problems


def checkpoint_key(conn: psycopg.Connection, given: NoteVerifier | None) -> tuple[NoteVerifier, str]:
    """The key checkpoints must verify with, and where it came from (raises when the ledger has none)."""
    if given is not None:
        return given, KEY_GIVEN
    return store_checkpoints.checkpoint_verifier(conn), KEY_FROM_TRUST_ROOT


def ledger_origin(conn: psycopg.Connection) -> str | None:
    """The origin the ledger's checkpoint key signs for, if it has one."""
    row = conn.execute(_ORIGIN_SQL).fetchone()
    return row[0] if row else None


def source_text(source: str) -> str:
    return "given" if source == KEY_GIVEN else "stored (ledger.trust_root)"
