"""The contract of the one reader of ``ledger.entries`` (``ledger.store.entries``) that the projector, the audit,
audit bundles and the ledger service read the log through: what was appended comes back byte for byte, in seq
order, page after page; bad arguments are refused by name; and every append wakes whoever LISTENs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ledger.core import merkle
from ledger.core.envelope import parse_envelope
from ledger.core.errors import InvalidArgument
from ledger.core.events import chain_hash
from ledger.db import connect
from ledger.store import entries
from ledger.store.log import LOG_CHANNEL
from tests.ledgerkit import Ledger, dataset_prov

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.postgres


def _appended(ledger: Ledger, n: int = 5) -> list:
    chain, reg = ledger.producer_with_key("trainer@host-7")
    events = [chain.emit("dataset.registered", dataset_prov(f"{i:064x}")) for i in range(n)]
    ledger.append(reg, *events)
    return [reg, *events]


def test_entries_come_back_exactly_as_appended_in_seq_order(ledger: Ledger) -> None:
    sealed = _appended(ledger)
    got = entries.read_entries(ledger.conn, after=-1, limit=100)
    assert [e.seq for e in got] == list(range(len(sealed)))
    for e, s in zip(got, sealed, strict=True):
        assert e.envelope == s.envelope and e.event_id == s.event_id
        assert e.leaf_hash == merkle.leaf_hash(s.envelope)
        assert e.source == "grpc" and e.payload_hash == chain_hash(parse_envelope(s.envelope).payload)
    assert [e.producer_seq for e in got[1:]] == [1, 2, 3, 4, 5] and {e.producer_id for e in got[1:]} == {
        "trainer@host-7"
    }
    assert entries.get_entry(ledger.conn, seq=3) == got[3]
    assert entries.get_entry(ledger.conn, event_id=sealed[3].event_id) == got[3]
    assert entries.entries_at(ledger.conn, [4, 1]) == {4: got[4], 1: got[1]}


def test_pages_after_limit_and_iteration_agree(ledger: Ledger) -> None:
    _appended(ledger)
    whole = entries.read_entries(ledger.conn, after=-1, limit=100)
    pages, after = [], -1
    for _ in range(10):  # bounded: 6 entries in pages of 2
        page = entries.read_entries(ledger.conn, after=after, limit=2)
        if not page:
            break
        assert len(page) <= 2
        pages.extend(page)
        after = page[-1].seq
    assert pages == whole == list(entries.iter_entries(ledger.conn, chunk=4))
    assert list(entries.iter_entries(ledger.conn, start=4)) == whole[4:]
    assert entries.read_entries(ledger.conn, after=len(whole) - 1, limit=10) == []


def test_a_byte_budget_stops_a_chunk_early_but_never_returns_nothing(ledger: Ledger) -> None:
    sealed = _appended(ledger)
    assert [e.seq for e in entries.read_entries(ledger.conn, after=-1, limit=100, max_bytes=1)] == [0]
    two = len(sealed[0].envelope) + len(sealed[1].envelope)
    assert [e.seq for e in entries.read_entries(ledger.conn, after=-1, limit=100, max_bytes=two)] == [0, 1]
    with ledger.conn.transaction():  # inside the caller's transaction, as the projector reads
        assert len(entries.read_entries(ledger.conn, after=-1, limit=3, max_bytes=1 << 30)) == 3


def test_bad_arguments_are_refused_by_name_and_absent_entries_are_none(ledger: Ledger) -> None:
    _appended(ledger, 1)
    with pytest.raises(InvalidArgument, match=r"limit: expected at least 1 entry, found 0"):
        entries.read_entries(ledger.conn, after=-1, limit=0)
    with pytest.raises(InvalidArgument, match=r"no log entries at seqs \[99, 7\]"):
        entries.entries_at(ledger.conn, [0, 99, 7])
    with pytest.raises(InvalidArgument, match=r"event id: expected a UUID, found 'not-a-uuid'"):
        entries.get_entry(ledger.conn, event_id="not-a-uuid")
    assert entries.get_entry(ledger.conn, seq=50) is None
    assert entries.get_entry(ledger.conn, event_id="00000000-0000-4000-8000-000000000000") is None


def test_every_append_notifies_the_log_channel_with_the_new_size(ledger: Ledger) -> None:
    with connect(ledger.dsn, autocommit=True, role="provault_auditor") as listener:
        listener.execute(f"LISTEN {LOG_CHANNEL}")
        sealed = _appended(ledger, 2)
        got = [n for n in listener.notifies(timeout=10, stop_after=1)]
    assert [(n.channel, n.payload) for n in got] == [(LOG_CHANNEL, str(len(sealed)))]


def test_no_other_product_module_selects_log_entries_itself() -> None:
    """The projector, the audit and bundles read through ledger.store.entries; nobody keeps a private SELECT."""
    selects = re.compile(r"FROM\s+ledger\.entries", re.IGNORECASE)
    offenders = [
        str(p.relative_to(ROOT))
        for package in ("ledger", "query", "agents")
        for p in sorted((ROOT / package).rglob("*.py"))
        if p != ROOT / "ledger" / "store" / "entries.py" and _selects_envelopes(p)
    ]
    assert offenders == []
    assert selects.search((ROOT / "ledger" / "store" / "entries.py").read_text())


def _selects_envelopes(path: Path) -> bool:
    """A SELECT of the stored payloads from ledger.entries (other columns, e.g. a count or max(seq), are fine)."""
    text = path.read_text()
    return bool(
        re.search(
            r"SELECT[^;\"]*\b(payload|signatures)\b[^;\"]*FROM\s+ledger\.entries", text, re.IGNORECASE | re.DOTALL
        )
    )
