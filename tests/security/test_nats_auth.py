"""NATS users on a real nats-server: who may publish, consume and delete what.

The server runs with the authorization block ``provault nats server-config``
renders (ledger/natsauth.py): agents publish only on their producers'
subjects, the ledger only consumes its stream, nobody connects anonymously.
The ledger side is the real ingest writing to a real PostgreSQL.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.errors
import pytest

from agents.spool import Record
from agents.transport import NatsTransport
from ledger.config import NatsSettings, PostgresSettings, Settings
from ledger.core.admission import Refused
from ledger.core.errors import ConfigError, TransportUnavailable
from ledger.core.producing import Sealed
from ledger.embedded import EmbeddedNats
from ledger.filestore import write_new_secret
from ledger.natsauth import NatsUsers, connect_options, new_user_seed, render_server_config, require_ledger_user
from ledger.service.ingest import IngestService
from ledger.store import entries, log
from ledger.transport import CONSUMER, subject_for
from tests.conftest import running_ingest
from tests.ledgerkit import Ledger, dataset_prov
from tests.service.natskit import wait_for

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

REFUSED_AT_CONNECT = "authorization violation"


@dataclass
class SecuredNats:
    server: EmbeddedNats
    users: NatsUsers
    conf: Path
    seeds: dict[str, Path]
    base: Settings

    def settings(self, user: str | None) -> Settings:
        nats_settings = dataclasses.replace(self.base.nats, nkey_seed_file=str(self.seeds[user]) if user else None)
        return dataclasses.replace(self.base, nats=nats_settings)

    def render(self) -> None:
        self.conf.write_text(render_server_config(list(self.users.load().values()), self.base.nats))


@pytest.fixture
def secured(tmp_path: Path, pg_dsn: str) -> Iterator[SecuredNats]:
    if os.environ.get("PROVAULT_TEST_NATS_URL"):
        pytest.skip("needs a nats-server this test configures (the embedded one), not PROVAULT_TEST_NATS_URL")
    users = NatsUsers(tmp_path / "auth" / "nats-users.json")
    seeds: dict[str, Path] = {}
    for name, role, producers in [
        ("ledger", "ledger", ()),
        ("gpu-07", "agent", ("trainer@gpu-07",)),
        ("gpu-08", "agent", ("trainer@gpu-08",)),
        ("gateway", "agent", ("trainer@a", "trainer@b")),
        ("grafana", "monitor", ()),
        ("admin-relay", "agent", ("admin/test",)),  # publishes the test admin's key events
    ]:
        seed, public = new_user_seed()
        users.add(name=name, role=role, public_key=public, producers=producers)
        write_new_secret(seeds.setdefault(name, tmp_path / f"{name}.nk"), seed + "\n")
    outsider, _ = new_user_seed()  # a valid key nobody registered
    write_new_secret(seeds.setdefault("outsider", tmp_path / "outsider.nk"), outsider + "\n")
    conf = tmp_path / "nats.conf"
    server = EmbeddedNats(tmp_path / "nats", include=conf)
    sn = SecuredNats(
        server=server,
        users=users,
        conf=conf,
        seeds=seeds,
        base=Settings(data_dir=tmp_path / "data", postgres=PostgresSettings(dsn=pg_dsn), nats=NatsSettings(url="")),
    )
    sn.render()
    server.start()
    sn.base = dataclasses.replace(sn.base, nats=NatsSettings(url=server.url))
    try:
        yield sn
    finally:
        server.stop()


@pytest.fixture
def ledger_ingest(secured: SecuredNats, ledger: Ledger) -> Iterator[IngestService]:
    """The real ingest, connected as the ledger's NATS user."""
    with running_ingest(secured.settings("ledger"), ledger.dsn, secured.server.url) as svc:
        yield svc


# --- helpers --------------------------------------------------------------------------------


class Client:
    """A raw NATS connection as one user, recording the errors the server sends it."""

    def __init__(self, secured: SecuredNats, user: str | None) -> None:
        self.opts = connect_options(secured.settings(user).nats)
        self.url = secured.server.url
        self.errors: list[str] = []
        self.nc: nats.NATS | None = None

    async def __aenter__(self) -> Client:
        async def note(e: Exception) -> None:
            self.errors.append(str(e).lower())

        self.nc = await nats.connect(
            self.url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0, error_cb=note, **self.opts
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.nc is not None
        await self.nc.close()

    async def refused(self, what: str, attempt) -> None:
        """``attempt`` must fail (NATS drops the request, so it times out) and the server must say why."""
        with pytest.raises((nats.errors.Error, asyncio.TimeoutError)):
            await attempt
        await self.told(what)

    async def told(self, what: str) -> None:
        """The server sent this client an error containing ``what``."""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(what in e for e in self.errors):
            await asyncio.sleep(0.05)
        assert any(what in e for e in self.errors), f"expected a NATS error containing {what!r}, got {self.errors}"


def _stream_messages(secured: SecuredNats) -> int:
    async def go() -> int:
        async with Client(secured, "ledger") as c:
            assert c.nc is not None
            return (await c.nc.jetstream().stream_info(secured.base.nats.stream)).state.messages

    return asyncio.run(go())


def _send(secured: SecuredNats, user: str | None, producer_id: str, events: Sequence[Sealed]) -> int:
    transport = NatsTransport(secured.server.url, secured.settings(user).nats, producer_id, timeout_s=3)

    async def go() -> int:
        try:
            return await transport.send(
                [Record(index=i, event_id=e.event_id, envelope=e.envelope) for i, e in enumerate(events)]
            )
        finally:
            await transport.close()

    return asyncio.run(go())


def _registered(ledger: Ledger, producer_id: str):
    """A producer whose key the log knows (registered by the admin, straight into the log)."""
    chain, reg = ledger.producer_with_key(producer_id, producers=(producer_id,))
    plan = ledger.append(reg)
    assert len(plan.accepted) == 1
    return chain


# --- who may connect ---------------------------------------------------------------------------


def test_anonymous_and_unregistered_clients_are_refused_at_connect(secured: SecuredNats) -> None:
    for user in (None, "outsider"):
        with pytest.raises(nats.errors.Error) as err:
            asyncio.run(Client(secured, user).__aenter__())
        assert REFUSED_AT_CONNECT in str(err.value).lower(), user
    # The agent runtime reports it as a refusal of its credentials, not as an unreachable server.
    with pytest.raises(TransportUnavailable, match="refused this agent's credentials"):
        _send(secured, "outsider", "trainer@gpu-07", [])


# --- agents -----------------------------------------------------------------------------------


def test_an_agent_delivers_on_its_own_subject_and_the_ledger_logs_it(
    secured: SecuredNats, ledger: Ledger, ledger_ingest: IngestService
) -> None:
    chain = _registered(ledger, "trainer@gpu-07")
    events = [chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(20)]
    assert _send(secured, "gpu-07", "trainer@gpu-07", events) == 20
    wait_for(lambda: log.log_size(ledger.conn) == 21, what="the agent's 20 events in the log")
    stored = {e.event_id: e.envelope for e in entries.iter_entries(ledger.conn)}
    assert all(stored[e.event_id] == e.envelope for e in events)
    assert ledger.rejections() == []


def test_an_agent_cannot_publish_for_another_producer(
    secured: SecuredNats, ledger: Ledger, ledger_ingest: IngestService
) -> None:
    chain = _registered(ledger, "trainer@gpu-08")
    ev = chain.emit("dataset.registered", dataset_prov())
    with pytest.raises(
        TransportUnavailable, match="refused to let this agent publish on provault.events.trainer~40gpu-08"
    ) as err:
        _send(secured, "gpu-07", "trainer@gpu-08", [ev])
    assert "permissions violation" in err.value.message.lower()
    assert "provault nats user add" in (err.value.hint or "")
    assert _stream_messages(secured) == 0, "the refused publish never reached the stream"
    assert log.log_size(ledger.conn) == 1 and ledger.rejections() == []
    # The owner can still deliver that very event.
    assert _send(secured, "gpu-08", "trainer@gpu-08", [ev]) == 1
    wait_for(lambda: log.log_size(ledger.conn) == 2, what="the owner's event")


def test_an_agent_cannot_read_consume_acknowledge_or_delete_the_stream(
    secured: SecuredNats, ledger: Ledger, ledger_ingest: IngestService
) -> None:
    stream = secured.base.nats.stream
    chain = _registered(ledger, "trainer@gpu-07")
    ev = chain.emit("dataset.registered", dataset_prov())

    async def go() -> None:
        async with Client(secured, "gpu-07") as c:
            assert c.nc is not None
            js = c.nc.jetstream(timeout=1.5)
            # Core subscriptions to events in flight, or to the ledger's replies (its fetched batches).
            await c.nc.subscribe(f"{secured.base.nats.subject_prefix}.>")
            await c.nc.subscribe("_INBOX.>")
            await c.nc.flush(timeout=3)
            await c.told('permissions violation for subscription to "provault.events.>"')
            await c.told('permissions violation for subscription to "_inbox.>"')
            await c.refused(f"durable.create.{stream.lower()}.evil", js.add_consumer(stream, durable_name="evil"))
            await c.refused(f"consumer.delete.{stream.lower()}", js.delete_consumer(stream, CONSUMER))
            await c.refused(f"stream.purge.{stream.lower()}", js.purge_stream(stream))
            await c.refused(f"stream.delete.{stream.lower()}", js.delete_stream(stream))
            await c.refused(f"stream.info.{stream.lower()}", js.stream_info(stream))
            await c.refused(
                f"$js.ack.{stream.lower()}", c.nc.request(f"$JS.ACK.{stream}.{CONSUMER}.1.1.1.0.0.0", b"", timeout=1)
            )

    asyncio.run(go())
    # The ledger still works: the stream, its consumer and the agent's own publishing are intact.
    assert _send(secured, "gpu-07", "trainer@gpu-07", [ev]) == 1
    wait_for(lambda: log.log_size(ledger.conn) == 2, what="an event after the attempts")


def test_a_reply_aimed_at_the_ledgers_inbox_is_dropped_and_ingest_goes_on(
    secured: SecuredNats, ledger: Ledger, ledger_ingest: IngestService
) -> None:
    """An agent publishes on its own subject with the ledger's inbox as reply: JetStream's ack lands there."""
    chain = _registered(ledger, "trainer@gpu-07")
    inbox = ledger_ingest.ingest.subscription._deliver  # what the monitoring port's /connz would show

    async def go() -> None:
        async with Client(secured, "gpu-07") as c:
            assert c.nc is not None
            for i in range(3):
                await c.nc.publish(
                    subject_for(secured.base.nats, "trainer@gpu-07"), b"not an event %d" % i, reply=inbox
                )
            await c.nc.flush(timeout=3)

    asyncio.run(go())
    ev = chain.emit("dataset.registered", dataset_prov())
    assert _send(secured, "gpu-07", "trainer@gpu-07", [ev]) == 1
    wait_for(lambda: log.log_size(ledger.conn) == 2, what="the genuine event after the spoofed acks")
    assert ledger_ingest.running(), "the ingest is still running"
    assert [r for r, _ in ledger.rejections()] == ["malformed_envelope"] * 3, "the published junk itself is recorded"


def test_the_ledger_user_cannot_publish_events_or_destroy_the_stream(
    secured: SecuredNats, ledger_ingest: IngestService
) -> None:
    stream = secured.base.nats.stream

    async def go() -> None:
        async with Client(secured, "ledger") as c:
            assert c.nc is not None
            js = c.nc.jetstream(timeout=1.5)
            await c.refused(
                'permissions violation for publish to "provault.events.trainer~40gpu-07"',
                js.publish(subject_for(secured.base.nats, "trainer@gpu-07"), b"{}", timeout=1.5),
            )
            await c.refused(f"stream.purge.{stream.lower()}", js.purge_stream(stream))
            await c.refused(f"stream.delete.{stream.lower()}", js.delete_stream(stream))
            await c.refused(f"durable.create.{stream.lower()}.other", js.add_consumer(stream, durable_name="other"))

    asyncio.run(go())


def test_a_monitor_reads_the_stream_state_and_nothing_else(
    secured: SecuredNats, ledger: Ledger, ledger_ingest: IngestService
) -> None:
    stream = secured.base.nats.stream

    async def go() -> None:
        async with Client(secured, "grafana") as c:
            assert c.nc is not None
            js = c.nc.jetstream(timeout=1.5)
            assert (await js.stream_info(stream)).config.name == stream
            assert (await js.consumer_info(stream, CONSUMER)).name == CONSUMER
            await c.nc.subscribe(f"{secured.base.nats.subject_prefix}.>")
            await c.told('permissions violation for subscription to "provault.events.>"')
            await c.refused(f"durable.create.{stream.lower()}.peek", js.add_consumer(stream, durable_name="peek"))
            await c.refused(
                f"consumer.msg.next.{stream.lower()}",
                c.nc.request(f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{CONSUMER}", b"1", timeout=1),
            )
            await c.refused(f"stream.purge.{stream.lower()}", js.purge_stream(stream))
            await c.refused(
                "permissions violation for publish",
                js.publish(subject_for(secured.base.nats, "trainer@gpu-07"), b"{}", timeout=1),
            )

    asyncio.run(go())


def test_an_event_on_another_producers_subject_is_refused_as_wrong_subject(
    secured: SecuredNats, ledger: Ledger, ledger_ingest: IngestService
) -> None:
    """NATS lets the gateway publish for trainer@a and trainer@b; the ledger still binds each event to its own subject."""
    chain_b = _registered(ledger, "trainer@b")
    ev = chain_b.emit("dataset.registered", dataset_prov())
    assert _send(secured, "gateway", "trainer@a", [ev]) == 1
    wait_for(lambda: len(ledger.rejections()) == 1, what="the rejection")
    ((reason, message),) = ledger.rejections()
    assert reason == "wrong_subject"
    assert (
        "'trainer@b'" in message
        and "provault.events.trainer~40a" in message
        and "provault.events.trainer~40b" in message
    )
    assert log.log_size(ledger.conn) == 1, "nothing was logged"
    # The producer's next event, on its own subject, is logged (the refused one shows as a gap).
    ev2 = chain_b.emit("dataset.registered", dataset_prov("cd" * 32))
    assert _send(secured, "gateway", "trainer@b", [ev2]) == 1
    wait_for(lambda: log.log_size(ledger.conn) == 2, what="the event on its own subject")


def test_an_event_whose_key_is_registered_in_the_same_batch_is_still_bound_to_its_subject(
    secured: SecuredNats, ledger: Ledger, ledger_ingest: IngestService
) -> None:
    """Stage 2 re-checks an unknown-key event once the batch registers its key: it must not escape the binding."""
    chain, reg = ledger.producer_with_key("trainer@gpu-08", producers=("trainer@gpu-08",))
    ev = chain.emit("dataset.registered", dataset_prov())
    # Back to back, so that both usually land in one fetch (the path under test); in two, the event is checked normally.
    transport_admin = NatsTransport(secured.server.url, secured.settings("admin-relay").nats, "admin/test", timeout_s=3)
    transport_agent = NatsTransport(secured.server.url, secured.settings("gpu-07").nats, "trainer@gpu-07", timeout_s=3)

    async def go() -> None:
        try:
            await asyncio.gather(
                transport_admin.send([Record(index=0, event_id=reg.event_id, envelope=reg.envelope)]),
                transport_agent.send([Record(index=0, event_id=ev.event_id, envelope=ev.envelope)]),
            )
        finally:
            await transport_admin.close()
            await transport_agent.close()

    asyncio.run(go())
    wait_for(
        lambda: len(ledger.rejections()) == 1 and log.log_size(ledger.conn) == 1,
        what="the registration and the refusal",
    )
    assert [r for r, _ in ledger.rejections()] == ["wrong_subject"]
    assert {e.event_id for e in entries.iter_entries(ledger.conn)} == {reg.event_id}


def test_binding_covers_events_refused_only_for_an_unknown_key(ledger_ingest: IngestService) -> None:
    ingest = ledger_ingest.ingest
    s = ingest.settings.nats
    unknown = Refused(
        raw=b"x", reason="unknown_key", message="m", event_id="e", keyid="k", producer_id="trainer@gpu-08"
    )
    unparsed = Refused(raw=b"y", reason="unknown_key", message="m")
    other = Refused(raw=b"z", reason="bad_signature", message="m", producer_id="trainer@gpu-08")
    wrong, right, kept, kept2 = ingest.bind_subjects(
        [subject_for(s, "trainer@gpu-07"), subject_for(s, "trainer@gpu-08"), subject_for(s, "a"), subject_for(s, "a")],
        [unknown, unknown, unparsed, other],
    )
    assert wrong.reason == "wrong_subject" and wrong.producer_id == "trainer@gpu-08" and wrong.keyid == "k"
    assert right is unknown, "on its own subject it stays an unknown key, which stage 2 may still admit"
    assert kept is unparsed and kept2 is other, "other refusals keep their own reason"


def test_a_removed_user_is_locked_out_once_the_servers_reload(secured: SecuredNats) -> None:
    async def connects(user: str) -> bool:
        try:
            async with Client(secured, user):
                return True
        except nats.errors.Error as e:
            assert REFUSED_AT_CONNECT in str(e).lower()
            return False
        except ConnectionResetError:
            # the server refused the user and closed the socket before the client finished sending CONNECT,
            # so the client sees the close rather than the -ERR: refused all the same
            return False

    assert asyncio.run(connects("gpu-08"))
    secured.users.remove("gpu-08")
    assert asyncio.run(connects("gpu-08")), "the server only learns of the removal on reload"
    secured.render()
    secured.server.reload()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and asyncio.run(connects("gpu-08")):
        time.sleep(0.1)
    assert not asyncio.run(connects("gpu-08"))
    assert asyncio.run(connects("gpu-07")), "the other users are untouched"


# --- the ledger's own credentials ------------------------------------------------------------------


def test_the_ledger_refuses_to_start_without_a_nats_user_outside_dev_mode(secured: SecuredNats) -> None:
    with pytest.raises(ConfigError, match="nats.nkey_seed_file is unset"):
        require_ledger_user(secured.settings(None))
    require_ledger_user(secured.settings("ledger"))
    require_ledger_user(dataclasses.replace(secured.settings(None), dev_mode=True))


def test_an_ingest_with_an_agent_seed_cannot_consume(secured: SecuredNats, ledger: Ledger) -> None:
    """A ledger misconfigured with an agent's seed fails at start with the server's reason, and consumes nothing."""
    with pytest.raises(
        TransportUnavailable, match=r"refused the ledger's requests \(nats: permissions violation for publish to"
    ) as err:
        with running_ingest(secured.settings("gpu-07"), ledger.dsn, secured.server.url):
            pass
    assert "--role ledger" in (err.value.hint or "")
    assert log.log_size(ledger.conn) == 0
    # An nkey the servers do not know is refused at connect, with the same kind of report.
    with pytest.raises(TransportUnavailable, match=r"(?i)refused the ledger's credentials \(.*authorization violation"):
        with running_ingest(secured.settings("outsider"), ledger.dsn, secured.server.url):
            pass


# --- TLS ---------------------------------------------------------------------------------------------


def test_agents_connect_over_tls_when_nats_tls_ca_is_set(tmp_path: Path) -> None:
    """With a TLS block on the server, nats.tls_ca makes the client verify it; without the CA the client refuses."""
    import ipaddress  # noqa: PLC0415

    from cryptography import x509  # noqa: PLC0415

    from tests.service.test_auth import Pki  # noqa: PLC0415

    if os.environ.get("PROVAULT_TEST_NATS_URL"):
        pytest.skip("needs a nats-server this test configures")
    pki, other = Pki.new("nats-test-ca"), Pki.new("someone-else")
    cert, key = pki.issue("nats", server=True, sans=[x509.IPAddress(ipaddress.ip_address("127.0.0.1"))])
    (tmp_path / "server.pem").write_bytes(cert)
    (tmp_path / "server.key").write_bytes(key)
    (tmp_path / "ca.pem").write_bytes(pki.ca_cert)
    (tmp_path / "other-ca.pem").write_bytes(other.ca_cert)
    seed, public = new_user_seed()
    users = NatsUsers(tmp_path / "users.json")
    users.add(name="ledger", role="ledger", public_key=new_user_seed()[1])
    users.add(name="gpu-07", role="agent", public_key=public, producers=["trainer@gpu-07"])
    write_new_secret(tmp_path / "gpu-07.nk", seed + "\n")
    plain = tmp_path / "plain.conf"
    plain.write_text(render_server_config(list(users.load().values()), NatsSettings()))
    conf = tmp_path / "nats.conf"
    conf.write_text(
        plain.read_text() + f'tls {{ cert_file: "{tmp_path / "server.pem"}", key_file: "{tmp_path / "server.key"}", '
        "handshake_first: true }\n"
    )
    with EmbeddedNats(tmp_path / "nats", include=conf) as server:
        url = f"tls://127.0.0.1:{server.port}"
        good = NatsSettings(url=url, nkey_seed_file=str(tmp_path / "gpu-07.nk"), tls_ca=str(tmp_path / "ca.pem"))

        async def connect(s: NatsSettings) -> str:
            nc = await nats.connect(
                s.url, connect_timeout=3, allow_reconnect=False, max_reconnect_attempts=0, **connect_options(s)
            )
            try:
                await nc.flush(timeout=3)
                return (
                    "connected"
                    if nc.is_connected and nc.connected_url and nc.connected_url.scheme == "tls"
                    else "not tls"
                )
            finally:
                await nc.close()

        assert asyncio.run(connect(good)) == "connected"
        with pytest.raises(Exception, match="(?i)certificate verify failed"):
            asyncio.run(connect(dataclasses.replace(good, tls_ca=str(tmp_path / "other-ca.pem"))))
    # A server (or someone in the middle) that does not start with TLS cannot keep a client with a CA in clear:
    # the client opens with the TLS handshake (tls_handshake_first), before the server's INFO could say "no TLS".
    with EmbeddedNats(tmp_path / "plain-nats", include=plain) as server:
        url = f"nats://127.0.0.1:{server.port}"
        with pytest.raises(Exception, match="(?i)ssl|wrong version|tls"):
            asyncio.run(connect(dataclasses.replace(good, url=url)))
