"""What "nothing already accepted changed" means, a ledger with history to protect, and a server in front of it.

:func:`accepted_state` digests everything the ledger has accepted and derived
from it: the entries (every column, the exact envelope bytes), the Merkle
nodes, the signed checkpoints, the trust root, the key registry, the
producer chains and the log state.  A refused input must leave it equal; an
accepted one (a gap, a late event) must leave the old entries equal and the
new root consistent with the old one (:func:`assert_extends`).  The records
of refusals (``ledger.rejections``, ``ledger.producer_anomalies``) are
meant to grow and are not part of it.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import grpc
import psycopg
from psycopg import sql

from ledger.core import merkle
from ledger.core.envelope import Envelope, Signature, encode_envelope, pae, parse_envelope
from ledger.core.keyring import KeyRegistration
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed
from ledger.grpckit.auth import LEDGER_METHOD_ROLES, AuthInterceptor, DevModeAuthenticator
from ledger.service.appender import Appender
from ledger.service.grpc_ledger import build_ledger_server
from ledger.store import checkpoints, log
from provault.v1 import ledger_pb2, ledger_pb2_grpc
from tests.ledgerkit import ORIGIN, Ledger, dataset_prov

_ACCEPTED = {
    "entries": "SELECT seq, event_id::text, keyid, producer_id, producer_seq, kind, event_time, payload, signatures,"
    " envelope, leaf_hash,"
    " payload_hash, received_at, source FROM ledger.entries ORDER BY seq",
    "merkle_nodes": "SELECT level, idx, hash FROM ledger.merkle_nodes ORDER BY level, idx",
    "checkpoints": "SELECT tree_size, root_hash, note, signed_at FROM ledger.checkpoints ORDER BY tree_size",
    "trust_root": "SELECT keyid, public_key, purpose, name, added_at FROM ledger.trust_root ORDER BY keyid",
    "keys": "SELECT * FROM ledger.keys ORDER BY keyid",
    "producers": "SELECT * FROM ledger.producers ORDER BY producer_id",
    "log_state": "SELECT size, frontier FROM ledger.log_state",
}


@dataclass(frozen=True, slots=True)
class State:
    size: int
    root: bytes
    digests: tuple[tuple[str, str], ...]

    def digest(self, table: str) -> str:
        return dict(self.digests)[table]


def _digest(rows: list[tuple]) -> str:
    h = hashlib.sha256()
    for row in rows:
        h.update(repr(tuple(bytes(v) if isinstance(v, memoryview) else v for v in row)).encode())
    return h.hexdigest()


def accepted_state(conn: psycopg.Connection) -> State:
    """A digest of everything accepted (read in one snapshot)."""
    with conn.transaction():
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        digests = tuple((name, _digest(conn.execute(q).fetchall())) for name, q in _ACCEPTED.items())  # type: ignore[arg-type]
        size, root = log.current_root(conn)
    return State(size=size, root=root, digests=digests)


def entries_before(conn: psycopg.Connection, size: int) -> str:
    rows = conn.execute(_ACCEPTED["entries"].replace("ORDER BY seq", "WHERE seq < %s ORDER BY seq"), (size,)).fetchall()  # type: ignore[arg-type]
    return _digest(rows)


def assert_extends(conn: psycopg.Connection, before: State) -> State:
    """The log grew without touching what it held: same old entries, a consistent new root."""
    after = accepted_state(conn)
    assert after.size > before.size
    assert entries_before(conn, before.size) == before.digest("entries"), "an entry accepted earlier changed"
    proof = log.consistency_proof(conn, before.size, after.size)
    merkle.verify_consistency(before.size, after.size, before.root, after.root, proof)
    assert after.digest("trust_root") == before.digest("trust_root") and after.digest("checkpoints") == before.digest(
        "checkpoints"
    )
    return after


def rejection_count(conn: psycopg.Connection) -> int:
    return int(conn.execute("SELECT count(*) FROM ledger.rejections").fetchone()[0])


@dataclass(frozen=True, slots=True, kw_only=True)
class Rejection:
    source: str
    reason: str
    message: str
    event_id: str | None
    keyid: str | None
    producer_id: str | None
    raw_sha256: bytes
    raw_size: int


def last_rejection(conn: psycopg.Connection) -> Rejection:
    row = conn.execute(
        "SELECT source, reason, message, event_id, keyid, producer_id, raw_sha256, raw_size"
        " FROM ledger.rejections ORDER BY id DESC LIMIT 1"
    ).fetchone()
    assert row is not None, "nothing was recorded in ledger.rejections"
    return Rejection(
        source=row[0],
        reason=row[1],
        message=row[2],
        event_id=row[3],
        keyid=row[4],
        producer_id=row[5],
        raw_sha256=bytes(row[6]),
        raw_size=row[7],
    )


def anomalies(conn: psycopg.Connection) -> list[tuple[str, int | None, int]]:
    return conn.execute("SELECT kind, expected_seq, found_seq FROM ledger.producer_anomalies ORDER BY id").fetchall()


# --- a ledger with history ----------------------------------------------------------------


@dataclass
class Seeded:
    """Seq 0: the trainer's key; 1-3: its events; 4: mallory's key; 5: mallory's revocation. Checkpointed at 6."""

    lg: Ledger
    trainer: ProducerChain
    mallory: ProducerChain
    events: list[Sealed]

    @property
    def conn(self) -> psycopg.Connection:
        assert self.lg.conn is not None
        return self.lg.conn

    def event(
        self,
        n: int = 0,
        *,
        chain: ProducerChain | None = None,
        kind: str = "dataset.registered",
        time: datetime | None = None,
    ) -> Sealed:
        """A fresh, valid event of the trainer (not yet sent), the n-th of its kind in this test."""
        ch = chain or self.trainer
        return ch.emit(kind, dataset_prov(f"{0xE0 + n:064x}"), time=time or datetime.now(UTC) - timedelta(seconds=1))


def seed(lg: Ledger) -> Seeded:
    trainer, reg = lg.producer_with_key("trainer@host-1", kinds=("run.*", "dataset.*"), producers=("trainer@*",))
    mallory, reg_m = lg.producer_with_key("mallory@host-6", name="mallory")
    events = [trainer.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(3)]
    plan = lg.append(reg, *events, reg_m)
    assert len(plan.accepted) == 5, lg.rejections()
    assert len(lg.append(lg.revocation(mallory.signer)).accepted) == 1
    assert lg.conn is not None and checkpoints.sign_latest(lg.conn, lg.checkpoint_key, ORIGIN) is not None
    return Seeded(lg=lg, trainer=trainer, mallory=mallory, events=events)


# --- a real LedgerService in front of it -----------------------------------------------------

GRPC_MAX_MESSAGE = 4 << 20  # grpc.max_message_bytes, the setting's default
TIMEOUT = 10


@dataclass
class Served:
    seeded: Seeded
    stub: ledger_pb2_grpc.LedgerServiceStub
    channel: grpc.Channel

    def append(self, raw: bytes | Sealed) -> ledger_pb2.AppendResult:
        raw = raw.envelope if isinstance(raw, Sealed) else raw
        return self.stub.Append(ledger_pb2.AppendRequest(envelope_json=raw), timeout=TIMEOUT).result


@contextlib.contextmanager
def serving(lg: Ledger) -> Iterator[Served]:
    """The seeded ledger behind a real LedgerService with the default limits (as `provault up` runs it)."""
    seeded = seed(lg)
    appender = Appender(lg.dsn, limits=lg.limits)
    server, port = build_ledger_server(
        dsn=lg.dsn,
        appender=appender,
        listen="127.0.0.1:0",
        max_message_bytes=GRPC_MAX_MESSAGE,
        interceptors=(AuthInterceptor(DevModeAuthenticator(), LEDGER_METHOD_ROLES),),
    )
    server.start()
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.max_send_message_length", 8 << 20)])
    try:
        yield Served(seeded=seeded, stub=ledger_pb2_grpc.LedgerServiceStub(channel), channel=channel)
    finally:
        channel.close()
        server.stop(None).wait(10)
        appender.close()


@contextlib.contextmanager
def own_database(pg_admin_dsn: str) -> Iterator[Ledger]:
    """A ledger in a database of its own, for a module-scoped fixture (``ledger`` is per test)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    info = psycopg.conninfo.conninfo_to_dict(pg_admin_dsn)
    info["dbname"] = name
    lg = Ledger(psycopg.conninfo.make_conninfo(**info))
    try:
        yield lg
    finally:
        lg.close()
        with psycopg.connect(pg_admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


# --- envelopes and key events ---------------------------------------------------------------


def with_doc(raw: bytes, edit: Callable[[dict], None]) -> bytes:
    """The envelope JSON edited (and written back in another layout)."""
    doc = json.loads(raw)
    edit(doc)
    return json.dumps(doc).encode()


def recoded(raw: bytes, edit: Callable[[dict], None] = lambda d: None, **dumps: object) -> bytes:
    """The envelope JSON edited and written back compact, members sorted (canonical), unless ``dumps`` says otherwise."""
    doc = json.loads(raw)
    edit(doc)
    return json.dumps(doc, **{"separators": (",", ":"), "sort_keys": True, **dumps}).encode()  # type: ignore[arg-type]


def cosigned(raw: bytes, signer: Ed25519Signer) -> bytes:
    """The envelope with a second, valid signature by ``signer`` over the same payload (canonical bytes)."""
    env = parse_envelope(raw)
    extra = Signature(keyid=signer.keyid, sig=signer.sign(pae(env.payload_type, env.payload)))
    return encode_envelope(
        Envelope(payload_type=env.payload_type, payload=env.payload, signatures=(*env.signatures, extra))
    )


def _urlsafe(text: str) -> str:
    return base64.urlsafe_b64encode(base64.b64decode(text)).decode()


def _unknown_signature(doc: dict) -> None:
    doc["signatures"].append({"keyid": Ed25519Signer.generate().keyid, "sig": base64.b64encode(bytes(64)).decode()})


REENCODINGS: dict[str, Callable[[bytes, Ed25519Signer], bytes]] = {
    "unknown-member": lambda raw, _: recoded(raw, lambda d: d.update(junk="x" * 10_000)),
    "unknown-signature-member": lambda raw, _: recoded(
        raw, lambda d: d["signatures"][0].update(extension={"kind": "x"})
    ),
    "url-safe-base64": lambda raw, _: recoded(raw, lambda d: d.update(payload=_urlsafe(d["payload"]))),
    "unpadded-base64": lambda raw, _: recoded(
        raw, lambda d: d["signatures"][0].update(sig=d["signatures"][0]["sig"].rstrip("="))
    ),
    "whitespace": lambda raw, _: recoded(raw, separators=(", ", ": ")),
    "member-order": lambda raw, _: recoded(raw, lambda d: d.update(payload=d.pop("payload")), sort_keys=False),
    "added-unknown-signature": lambda raw, _: recoded(raw, _unknown_signature),
    "added-valid-signature": cosigned,
}
"""Other encodings of a genuine envelope that parse and verify as it does (docs/security.md D5): what anyone who
saw it in flight could send.  The second argument is a key the ledger knows, for a co-signature."""


def reencodable(chain: ProducerChain) -> Sealed:
    """A fresh event whose payload base64 holds a '/' (three '?' in a row: one ends a 3-byte group), so URL-safe differs."""
    sealed = chain.emit("dataset.registered", {"entity": {f"sha256:{'ab' * 32}": {"prov:label": "why???"}}})
    assert "/" in json.loads(sealed.envelope)["payload"]
    return sealed


def registration_data(key: Ed25519Signer, name: str = "x") -> dict:
    return KeyRegistration(
        keyid=key.keyid,
        public_key=key.public_key,
        role="producer",
        identity={"type": "host", "name": name},
        kinds=("*",),
        producers=("*",),
    ).to_data()
