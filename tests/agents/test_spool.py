"""The agent spool: order, acknowledgement, recovery, and loud failure on damage."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from agents import spool as spool_mod
from agents.spool import Spool, SpoolCorrupted, SpoolError, SpoolFull


def _eid() -> str:
    return str(uuid.uuid4())


def _fill(sp: Spool, n: int, size: int = 100) -> list[str]:
    ids = [_eid() for _ in range(n)]
    for i, e in enumerate(ids):
        sp.append(e, bytes([i % 256]) * size)
    return ids


def test_records_come_back_in_order_until_acknowledged(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    ids = _fill(sp, 10)
    first = sp.take(4)
    assert [r.event_id for r in first] == ids[:4] and [r.index for r in first] == [0, 1, 2, 3]
    assert [r.event_id for r in sp.take(100)] == ids[4:]
    assert sp.take(5) == []
    sp.rewind()
    assert [r.event_id for r in sp.take(3)] == ids[:3]
    sp.acknowledge(3)
    sp.rewind()
    assert [r.index for r in sp.take(100)] == list(range(3, 10))
    assert sp.pending_count() == 7
    sp.close()


def test_reopening_keeps_unacknowledged_records(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    ids = _fill(sp, 5)
    sp.acknowledge(2)
    sp.close()
    again = Spool(tmp_path)
    assert [r.event_id for r in again.take(10)] == ids[2:]
    assert again.last_record().event_id == ids[-1]
    again.close()


def test_segments_rotate_and_spent_ones_are_deleted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_mod, "SEGMENT_BYTES", 1000)
    sp = Spool(tmp_path)
    ids = _fill(sp, 30, size=200)
    assert len(list(tmp_path.glob("seg-*.log"))) > 5
    assert [r.event_id for r in sp.take(100)] == ids
    sp.acknowledge(25)
    assert len(list(tmp_path.glob("seg-*.log"))) <= 3
    sp.close()
    again = Spool(tmp_path)
    assert [r.event_id for r in again.take(100)] == ids[25:]
    again.close()


def test_full_spool_refuses_with_advice(tmp_path: Path) -> None:
    sp = Spool(tmp_path, max_bytes=2000)
    _fill(sp, 10, size=100)
    with pytest.raises(SpoolFull, match="agent.spool_max_bytes"):
        _fill(sp, 10, size=100)
    sp.close()


def test_a_second_process_cannot_share_a_spool(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    with pytest.raises(SpoolError, match="in use by another process"):
        Spool(tmp_path)
    sp.close()


def test_a_flipped_byte_in_the_middle_is_reported_never_skipped(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    _fill(sp, 5, size=50)
    sp.close()
    seg = next(tmp_path.glob("seg-*.log"))
    data = bytearray(seg.read_bytes())
    data[8 + 8 + 60] ^= 0x40  # inside the body of record 0
    seg.write_bytes(bytes(data))
    with pytest.raises(SpoolCorrupted, match=r"damaged at byte 8 \(record 0\): CRC-32 mismatch"):
        Spool(tmp_path)


def test_an_impossible_length_is_reported(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    _fill(sp, 3, size=50)
    sp.close()
    seg = next(tmp_path.glob("seg-*.log"))
    data = bytearray(seg.read_bytes())
    data[8:12] = (2**31).to_bytes(4, "big")
    seg.write_bytes(bytes(data))
    with pytest.raises(SpoolCorrupted, match="record length 2147483648 is impossible"):
        Spool(tmp_path)


def test_a_torn_last_record_is_set_aside_and_reported(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    ids = _fill(sp, 4, size=50)
    sp.close()
    seg = next(tmp_path.glob("seg-*.log"))
    size = seg.stat().st_size
    os.truncate(seg, size - 10)  # the last write was cut short
    again = Spool(tmp_path)
    assert [r.event_id for r in again.take(10)] == ids[:3]
    assert len(again.torn) == 1 and again.torn[0].saved_as.startswith("torn-")
    assert (tmp_path / again.torn[0].saved_as).stat().st_size > 0
    again.append(_eid(), b"x")  # writing continues after the good records
    again.close()
    assert len(Spool(tmp_path).take(10)) == 4


def test_a_missing_segment_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spool_mod, "SEGMENT_BYTES", 500)
    sp = Spool(tmp_path)
    _fill(sp, 10, size=200)
    sp.close()
    segs = sorted(tmp_path.glob("seg-*.log"))
    segs[0].unlink()
    with pytest.raises(SpoolCorrupted, match="are missing"):
        Spool(tmp_path)


def test_a_garbled_cursor_is_reported(tmp_path: Path) -> None:
    Spool(tmp_path).close()
    (tmp_path / "cursor").write_text("banana")
    with pytest.raises(SpoolCorrupted, match="cursor"):
        Spool(tmp_path)


def test_a_large_record_is_read_whole(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    big = os.urandom(5 << 20)
    eid = _eid()
    sp.append(eid, big)
    rec = sp.take(1)[0]
    assert rec.event_id == eid and rec.envelope == big
    sp.close()


def test_reading_continues_after_acknowledge_deletes_the_segment_read_to_its_end(tmp_path: Path) -> None:
    sp = Spool(tmp_path)
    first = [_eid(), _eid()]
    for e in first:
        sp.append(e, os.urandom(6 << 20))
    assert [r.event_id for r in sp.take(10)] == first
    third = _eid()
    sp.append(third, os.urandom(6 << 20))  # does not fit: rotates, the first segment is complete
    sp.acknowledge(2)  # ...and spent, so it is deleted
    assert [r.event_id for r in sp.take(10)] == [third]
    sp.close()
