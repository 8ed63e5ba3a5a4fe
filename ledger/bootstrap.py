"""Bringing a ledger database to life: every schema migrated, keys created as needed, the trust root recorded.

Shared by ``provault db migrate`` / ``ledger init``, ``provault up`` and the benchmarks.
"""

from __future__ import annotations

from pathlib import Path

from ledger import plugins
from ledger.config import Settings
from ledger.core.keys import (
    Ed25519Signer,
    load_private_key,
    load_public_key,
    save_private_key,
    save_public_key,
)
from ledger.db import connect
from ledger.store import checkpoints
from ledger.store.migrate import migrate


def migrate_all(dsn: str) -> list[str]:
    """The ledger's schema, then each contributed one (the PROV projection's, which reads the ledger's)."""
    applied = migrate(dsn)
    for contributed in plugins.contributions(plugins.MIGRATIONS):
        applied += contributed(dsn)
    return applied


def default_admin_key_path(settings: Settings) -> Path:
    return settings.data_dir / "keys" / "admin.key"


def initialise(settings: Settings, dsn: str, admin_key_files: list[str]) -> list[str]:
    """Migrate, create keys as needed, record the trust root. Returns what changed."""
    changes = [f"applied {a}" for a in migrate_all(dsn)]
    ck = settings.checkpoint_key_path
    if ck.exists():
        signer = load_private_key(ck)
    else:
        signer = Ed25519Signer.generate()
        save_private_key(signer, ck)
        save_public_key(signer.public_key, f"{ck}.pub")
        changes.append(f"created checkpoint key {ck}")
    admins = [(load_public_key(f), Path(f).stem) for f in admin_key_files]
    if not admins:
        path = default_admin_key_path(settings)
        if path.exists():
            admin = load_private_key(path)
        else:
            admin = Ed25519Signer.generate()
            save_private_key(admin, path)
            save_public_key(admin.public_key, f"{path}.pub")
            changes.append(f"created admin key {path}")
        admins = [(admin.public_key, "admin")]
    with connect(dsn, autocommit=True) as conn:
        changes += checkpoints.initialize(conn, checkpoint_signer=signer, origin=settings.signing.origin, admins=admins)
    return changes
