"""Bringing a ledger database to life: every schema migrated, keys created as needed, the trust root recorded.

Shared by ``provault db migrate`` / ``ledger init``, ``provault up`` and the benchmarks.
"""

from __future__ import annotations

from pathlib import Path

from ledger import plugins
from ledger.config import Settings
from ledger.core.keys import load_or_create_key, load_public_key
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
    signer, created = load_or_create_key(ck)
    if created:
        changes.append(f"created checkpoint key {ck}")
    admins = [(load_public_key(f), Path(f).stem) for f in admin_key_files]
    if not admins:
        path = default_admin_key_path(settings)
        admin, created = load_or_create_key(path)
        if created:
            changes.append(f"created admin key {path}")
        admins = [(admin.public_key, "admin")]
    with connect(dsn, autocommit=True) as conn:
        changes += checkpoints.initialize(conn, checkpoint_signer=signer, origin=settings.signing.origin, admins=admins)
    return changes
