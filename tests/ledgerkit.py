"""Test helpers: a ledger in a fresh database, keys, and signed events."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import psycopg

from ledger.core.admission import BatchPlan, Limits, check_submission
from ledger.core.keyring import KEY_REGISTERED, KEY_REVOKED, KeyRegistration, KeyRevocation
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed
from ledger.db import connect
from ledger.store import checkpoints, log
from ledger.store.migrate import migrate

ORIGIN = "test.provault/log"


def dataset_prov(digest_hex: str = "ab" * 32) -> dict:
    return {"entity": {f"sha256:{digest_hex}": {"prov:type": "provault:Dataset"}}}


@dataclass
class Ledger:
    """A migrated, initialised ledger database and the keys that run it."""

    dsn: str
    admin: Ed25519Signer = field(default_factory=Ed25519Signer.generate)
    checkpoint_key: Ed25519Signer = field(default_factory=Ed25519Signer.generate)
    conn: psycopg.Connection | None = None
    cache: log.RegistryCache = field(default_factory=log.RegistryCache)
    limits: Limits = field(default_factory=Limits)

    def __post_init__(self) -> None:
        migrate(self.dsn)
        with connect(self.dsn, autocommit=True) as c:
            checkpoints.initialize(
                c, checkpoint_signer=self.checkpoint_key, origin=ORIGIN, admins=[(self.admin.public_key, "test-admin")]
            )
        self.conn = connect(self.dsn, autocommit=True, role="provault_ledger")
        self.admin_chain = ProducerChain("admin/test", self.admin)

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()

    # -- events --
    def registration(
        self,
        key: Ed25519Signer,
        *,
        kinds: Sequence[str] = ("*",),
        producers: Sequence[str] = ("*",),
        role: str = "producer",
        name: str = "alice",
        identity_type: str = "person",
    ) -> Sealed:
        reg = KeyRegistration(
            keyid=key.keyid,
            public_key=key.public_key,
            role=role,
            identity={"type": identity_type, "name": name},
            kinds=tuple(kinds),
            producers=tuple(producers),
        )
        return self.admin_chain.emit(KEY_REGISTERED, {"agent": {"provault:alice": {}}}, data=reg.to_data())

    def revocation(self, key: Ed25519Signer, *, effective_from: datetime | None = None) -> Sealed:
        rev = KeyRevocation(keyid=key.keyid, effective_from=effective_from or datetime.now(UTC), reason="leaked")
        return self.admin_chain.emit(KEY_REVOKED, {"agent": {"provault:alice": {}}}, data=rev.to_data())

    # -- appending --
    def check(self, raws: Sequence[bytes]):
        assert self.conn is not None
        keys = self.cache.current(self.conn, log.log_size(self.conn)).public_keys()
        return [check_submission(r, keys, now=datetime.now(UTC), limits=self.limits) for r in raws]

    def append(
        self, *items: bytes | Sealed, source: str = "grpc", stream_seqs: Sequence[int] | None = None
    ) -> BatchPlan:
        raws = [i.envelope if isinstance(i, Sealed) else i for i in items]
        assert self.conn is not None
        return log.append_batch(
            self.conn,
            self.check(raws),
            source=source,
            registry_cache=self.cache,
            stream_seqs=stream_seqs,
            limits=self.limits,
        )

    def rejections(self) -> list[tuple[str, str]]:
        assert self.conn is not None
        return [(r, m) for r, m in self.conn.execute("SELECT reason, message FROM ledger.rejections ORDER BY id")]

    def producer_with_key(self, producer_id: str = "trainer@host-1", **kw) -> tuple[ProducerChain, Sealed]:
        key = Ed25519Signer.generate()
        return ProducerChain(producer_id, key), self.registration(key, **kw)
