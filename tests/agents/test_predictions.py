"""PredictionLogger: batching by size and time, back-pressure, PROV shape, and the real ledger end to end."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from agents.predictions import (
    COLUMNS,
    PREDICTIONS_LOGGED,
    PredictionBacklogFull,
    PredictionLogger,
    PredictionLoggerClosed,
    build_rows,
    canonical_json,
    input_digest_of,
    output_value,
    plan_chunks,
    unix_time_text,
)
from agents.runtime import Agent
from agents.spool import Spool
from agents.transport import NatsTransport
from ledger.config import AgentSettings, NatsSettings
from ledger.core.envelope import parse_envelope
from ledger.core.errors import InvalidArgument
from ledger.core.events import format_time, parse_event, parse_time
from ledger.core.ids import content_id, is_content_id
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import with_prefixes
from ledger.core.provjson import validate_prov
from ledger.core.vocab import deployment_id, predict_batch_id, service_id
from ledger.embedded import free_port

PRODUCER = "serving@host-1/churn-server"
DEPLOYMENT = deployment_id("churn", "0190c8a2-7b1e-7c3d-9a4f-1b2c3d4e5f60")
MODEL = content_id(b"a model artifact")
BATCH_THREAD = "provault-predictions-"


# --- helpers (test_serving.py uses them too) ----------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Emitted:
    kind: str
    prov: dict
    data: dict
    thread: str


class RecordingAgent(Agent):
    """A real agent (signing, spool, NATS transport) that also keeps what it accepted.

    ``gate``: while it is not set, emits from the logger's batching thread wait
    (a slow agent, to fill the buffer deterministically).
    """

    def __init__(self, *args: Any, gate: threading.Event | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate
        self.events: list[Emitted] = []

    def emit(self, kind, prov, *, data=None, time=None) -> str:
        thread = threading.current_thread().name
        if self.gate is not None and thread.startswith(BATCH_THREAD):
            self.gate.wait(30)
        event_id = super().emit(kind, prov, data=data, time=time)
        if event_id:
            self.events.append(Emitted(kind=kind, prov=prov, data=data, thread=thread))
        return event_id

    def rows(self) -> list[list]:
        return [row for e in self.events for row in e.data["rows"]]


def make_agent(
    tmp_path: Path,
    *,
    url: str | None = None,
    key: Ed25519Signer | None = None,
    nats: NatsSettings | None = None,
    gate: threading.Event | None = None,
    **settings: Any,
) -> RecordingAgent:
    """An agent; without ``url`` its NATS is a free port nobody listens on (nothing is delivered)."""
    timeout = 2.0 if url else 0.3
    url = url or f"nats://127.0.0.1:{free_port()}"
    settings.setdefault("publish_timeout_s", 2.0)
    return RecordingAgent(
        producer_id=PRODUCER,
        signer=key or Ed25519Signer.generate(),
        spool_dir=tmp_path / "spool",
        state_dir=tmp_path / "state",
        transport=NatsTransport(url, nats or NatsSettings(), PRODUCER, timeout_s=timeout),
        settings=AgentSettings(**settings),
        gate=gate,
    )


def make_logger(agent: Agent, **kw: Any) -> PredictionLogger:
    return PredictionLogger(agent, deployment=DEPLOYMENT, model=MODEL, service="churn-server", **kw)


def wait_until(condition, *, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.01)


@pytest.fixture
def offline(tmp_path: Path):
    """An agent that cannot deliver (its events stay spooled); closed afterwards."""
    agent = make_agent(tmp_path)
    yield agent
    agent.close(timeout=0.1)


# --- pure parts ---------------------------------------------------------------------------


def test_plan_chunks_splits_by_count_bytes_and_repeated_ids() -> None:
    ids = [f"p{i}" for i in range(10)]
    assert plan_chunks(ids, [10] * 10, batch_max=4, max_bytes=10_000) == [(0, 4), (4, 8), (8, 10)]
    assert plan_chunks(ids, [10] * 10, batch_max=100, max_bytes=35) == [(0, 3), (3, 6), (6, 9), (9, 10)]
    assert plan_chunks(["a", "b", "a", "c", "a"], [1] * 5, batch_max=100, max_bytes=100) == [(0, 2), (2, 4), (4, 5)]
    assert plan_chunks(["big"], [10**9], batch_max=1, max_bytes=10) == [(0, 1)], "an oversized row still goes somewhere"
    assert plan_chunks([], [], batch_max=5, max_bytes=5) == []


class _Array:
    """Enough of an array for the digest: bytes, a dtype kind and tolist()."""

    def __init__(self, data: bytes, kind: str = "f", values: list | None = None) -> None:
        self.data, self.values = data, values
        self.dtype = type("dtype", (), {"kind": kind})()
        self.thread = None

    def tobytes(self) -> bytes:
        self.thread = threading.current_thread().name
        return self.data

    def tolist(self) -> list:
        return self.values


def test_inputs_are_digested_by_content() -> None:
    assert input_digest_of(None) is None
    assert input_digest_of(b"\x00\x01") == content_id(b"\x00\x01")
    assert input_digest_of(bytearray(b"ab")) == content_id(b"ab")
    assert input_digest_of("héllo") == content_id("héllo".encode())
    assert input_digest_of({"b": 1, "a": [1.5, "x"]}) == content_id(b'{"a":[1.5,"x"],"b":1}')
    assert canonical_json({"b": 1, "a": "é"}) == '{"a":"é","b":1}'.encode()
    assert input_digest_of(_Array(b"rowbytes")) == content_id(b"rowbytes")
    assert input_digest_of(_Array(b"pointers", kind="O", values=[1, "a"])) == content_id(b'[1,"a"]')
    with pytest.raises(TypeError):
        input_digest_of(object())
    with pytest.raises(TypeError):
        input_digest_of([float("nan")])


def test_outputs_are_short_json_or_their_digest() -> None:
    assert output_value(3)[0] == 3
    assert output_value(0.25)[0] == 0.25
    assert output_value(True)[0] is True
    assert output_value(None)[0] is None
    assert output_value(float("nan"))[0] == "nan"
    assert output_value("yes")[0] == "yes"
    assert output_value("x" * 1000)[0] == content_id(b"x" * 1000)
    assert output_value(b"raw")[0] == content_id(b"raw")
    assert output_value([0.1, 0.9])[0] == [0.1, 0.9]
    big = list(range(500))
    assert output_value(big)[0] == content_id(json.dumps(big, separators=(",", ":")).encode())
    assert output_value(_Array(b"", values=[0.5, 0.5]))[0] == [0.5, 0.5]
    digest = content_id(b"response")
    assert output_value(digest)[0] == digest, "a digest passes as it is"


def test_times_are_rfc3339_as_the_events_write_them() -> None:
    t = 1_790_000_000.123456
    text = unix_time_text(t)
    assert text == format_time(parse_time(text))
    assert text.startswith("2026-09-21T") and text.endswith(".123456Z")


def test_bad_arguments_are_refused_with_what_to_do(offline: RecordingAgent) -> None:
    with pytest.raises(InvalidArgument, match=r"provault:deployment/<name>/<uuid>"):
        PredictionLogger(offline, deployment="churn", model=MODEL)
    with pytest.raises(InvalidArgument, match=r"sha256:<64 hex>"):
        PredictionLogger(offline, deployment=DEPLOYMENT, model="model.pkl")
    with pytest.raises(InvalidArgument, match=r"'block', 'spool' or 'drop'"):
        make_logger(offline, backpressure="wait")
    with pytest.raises(InvalidArgument, match=r"batch_interval_s"):
        make_logger(offline, batch_interval_s=0)


# --- batching -------------------------------------------------------------------------------


def test_a_batch_is_sealed_when_full(offline: RecordingAgent) -> None:
    logger = make_logger(offline, batch_max=50, batch_interval_s=60)
    for i in range(120):
        logger.log(f"p{i}", f"input {i}".encode(), i % 2)
    wait_until(lambda: len(offline.events) == 2, what="two full batches")
    assert [len(e.data["rows"]) for e in offline.events] == [50, 50]
    assert logger.pending == 20, "the rest waits for its interval"
    logger.flush(timeout=0.2)  # seals the rest; delivery cannot happen here
    assert [len(e.data["rows"]) for e in offline.events] == [50, 50, 20]
    rows = offline.rows()
    assert [r[0] for r in rows] == [f"p{i}" for i in range(120)]
    assert [r[2] for r in rows] == [content_id(f"input {i}".encode()) for i in range(120)]
    assert [r[3] for r in rows] == [i % 2 for i in range(120)]
    assert logger.stats.emitted == 120 and logger.stats.batches == 3
    logger.close(timeout=0.1)


def test_a_batch_is_sealed_when_its_oldest_prediction_waited_the_interval(offline: RecordingAgent) -> None:
    logger = make_logger(offline, batch_max=1000, batch_interval_s=0.2)
    t0 = time.monotonic()
    for i in range(3):
        logger.log(f"p{i}", b"x", "yes")
    wait_until(lambda: offline.events, timeout=10, what="the interval's batch")
    assert time.monotonic() - t0 < 10
    (event,) = offline.events
    assert [r[0] for r in event.data["rows"]] == ["p0", "p1", "p2"]
    activity = next(iter(event.prov["activity"].values()))
    assert parse_time(activity["prov:startTime"]) <= parse_time(activity["prov:endTime"])
    assert event.thread.startswith(BATCH_THREAD)
    logger.close(timeout=0.1)


def test_the_event_is_valid_prov_and_its_rows_are_what_was_logged(offline: RecordingAgent, tmp_path: Path) -> None:
    logger = make_logger(offline, batch_max=10, batch_interval_s=60)
    logger.log("a", b"in-a", {"label": "churn", "p": 0.8})
    logger.log("b", "text input", 0.5, input_digest=None)
    logger.log("c", None, "no", input_digest=content_id(b"elsewhere"))
    logger.log(7, {"age": 41}, None)
    logger.close(timeout=0.1)
    (event,) = offline.events
    assert event.kind == PREDICTIONS_LOGGED
    validate_prov(with_prefixes(event.prov))
    (batch,) = event.prov["activity"]
    assert batch.startswith(predict_batch_id(""))
    assert {u["prov:entity"] for u in event.prov["used"].values()} == {DEPLOYMENT, MODEL}
    assert [w["prov:agent"] for w in event.prov["wasAssociatedWith"].values()] == [service_id("churn-server")]
    assert event.data["deployment"] == DEPLOYMENT and event.data["model"] == MODEL
    assert event.data["columns"] == list(COLUMNS)
    ids, times, inputs, outputs = zip(*event.data["rows"], strict=True)
    assert ids == ("a", "b", "c", "7")
    assert inputs == (
        content_id(b"in-a"),
        content_id(b"text input"),
        content_id(b"elsewhere"),
        content_id(b'{"age":41}'),
    )
    assert outputs == ({"label": "churn", "p": 0.8}, 0.5, "no", None)
    assert all(format_time(parse_time(t)) == t for t in times)
    offline.close(timeout=0.1)
    spool = Spool(tmp_path / "spool")
    try:
        (record,) = spool.take(10)
    finally:
        spool.close()
    signed = parse_event(parse_envelope(record.envelope).payload)
    assert signed.kind == PREDICTIONS_LOGGED and [list(r) for r in signed.data["rows"]] == event.data["rows"]


def test_inputs_are_digested_on_the_batching_thread_not_the_callers(offline: RecordingAgent) -> None:
    logger = make_logger(offline, batch_max=1, batch_interval_s=60)
    row = _Array(b"a row")
    logger.log("p", row, 1)
    assert row.thread is None or row.thread.startswith(BATCH_THREAD)
    wait_until(lambda: offline.events, what="the batch")
    assert row.thread.startswith(BATCH_THREAD)
    assert offline.rows()[0][2] == content_id(b"a row")
    logger.close(timeout=0.1)


def test_close_seals_the_buffer_and_refuses_more(offline: RecordingAgent) -> None:
    logger = make_logger(offline, batch_max=100, batch_interval_s=60)
    for i in range(7):
        logger.log(f"p{i}", b"x", i)
    assert logger.close(timeout=0.1) is False, "sealed, but the agent could not deliver"
    assert len(offline.rows()) == 7
    with pytest.raises(PredictionLoggerClosed):
        logger.log("late", b"x", 0)
    assert logger.close() is True, "closing twice is harmless"


def test_a_forked_child_refuses_to_log_with_what_to_do(offline: RecordingAgent) -> None:
    logger = make_logger(offline, batch_max=100, batch_interval_s=60)
    logger.log("parent", b"x", 0)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        try:
            logger.log("child", b"x", 0)
        except PredictionLoggerClosed as e:
            os._exit(0 if "after the fork" in e.diagnostics() else 2)
        os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    logger.close(timeout=0.1)
    assert [r[0] for r in offline.rows()] == ["parent"], "the parent's logger carries on"


def test_repeated_ids_go_to_separate_events_with_a_warning(offline: RecordingAgent, caplog) -> None:
    logger = make_logger(offline, batch_max=100, batch_interval_s=60)
    with caplog.at_level(logging.WARNING, logger="provault.agent.predictions"):
        for pid in ["a", "b", "a", "c"]:
            logger.log(pid, b"x", 0)
        logger.close(timeout=0.1)
    assert [[r[0] for r in e.data["rows"]] for e in offline.events] == [["a", "b"], ["a", "c"]]
    assert logger.stats.duplicates == 1 and "more than once" in caplog.text


# --- back-pressure ----------------------------------------------------------------------------


def _stuck_agent(tmp_path: Path, **kw: Any) -> RecordingAgent:
    """NATS unreachable and a spool too small for one batch: emits fail (SpoolFull) after 0.3 s."""
    return make_agent(tmp_path, spool_max_bytes=64, publish_timeout_s=0.3, **kw)


def test_block_waits_for_room_then_raises_a_clear_error(tmp_path: Path) -> None:
    agent = _stuck_agent(tmp_path)
    logger = make_logger(agent, batch_max=5, queue_size=5, batch_interval_s=60, backpressure="block")
    t0 = time.monotonic()
    with pytest.raises(PredictionBacklogFull, match=r"is full \(5 predictions\); waited 0.3 s") as info:
        for i in range(100):
            logger.log(f"p{i}", b"x", 0)
    assert i <= 11, "at most one batch taken plus one full buffer were accepted"
    assert time.monotonic() - t0 < 20
    assert "spool" in info.value.diagnostics()
    logger.close(timeout=0.1)
    agent.close(timeout=0.1)


def test_drop_counts_and_warns_on_the_first_and_every_thousandth(tmp_path: Path, caplog) -> None:
    agent = _stuck_agent(tmp_path)
    logger = make_logger(agent, batch_max=5, queue_size=5, batch_interval_s=60, backpressure="drop")
    with caplog.at_level(logging.WARNING, logger="provault.agent.predictions"):
        for i in range(2600):
            logger.log(f"p{i}", b"x", 0)
    dropped = logger.stats.dropped
    assert 2600 - 5 - 5 <= dropped < 2600
    warnings = [r for r in caplog.records if "dropped so far" in r.getMessage()]
    assert len(warnings) == 1 + dropped // 1000
    logger.close(timeout=0.1)
    agent.close(timeout=0.1)


def test_spool_seals_on_the_callers_thread_when_the_batcher_is_behind(tmp_path: Path) -> None:
    gate = threading.Event()
    agent = make_agent(tmp_path, gate=gate)
    logger = make_logger(agent, batch_max=10, queue_size=10, batch_interval_s=60, backpressure="spool")
    try:
        for i in range(35):
            logger.log(f"p{i}", b"x", i)
        assert any(e.thread == threading.current_thread().name for e in agent.events), "sealed right here"
    finally:
        gate.set()
    logger.flush(timeout=0.2)
    ids = [r[0] for r in agent.rows()]
    assert sorted(ids) == sorted(f"p{i}" for i in range(35)) and len(ids) == 35
    logger.close(timeout=0.1)
    agent.close(timeout=0.1)


def test_batches_the_agent_drops_are_counted(tmp_path: Path, caplog) -> None:
    agent = _stuck_agent(tmp_path, backpressure="drop")
    logger = make_logger(agent, batch_max=100, batch_interval_s=60)
    with caplog.at_level(logging.WARNING, logger="provault.agent.predictions"):
        for i in range(7):
            logger.log(f"p{i}", b"x", 0)
        logger.flush(timeout=0.2)
    assert logger.stats.dropped == 7 and logger.stats.emitted == 0
    assert "its back-pressure policy is 'drop'" in caplog.text
    logger.close(timeout=0.1)
    agent.close(timeout=0.1)


# --- end to end ---------------------------------------------------------------------------------


@pytest.mark.postgres
@pytest.mark.nats
def test_five_thousand_predictions_reach_the_ledger_each_once(tmp_path, ledger, ingest, settings, nats_target) -> None:
    from ledger.store import entries  # noqa: PLC0415

    key = Ed25519Signer.generate()
    ledger.append(ledger.registration(key, kinds=[PREDICTIONS_LOGGED], producers=["serving@*"], name="churn-server"))
    agent = make_agent(tmp_path, url=nats_target.url, key=key, nats=settings.nats)
    logger = make_logger(agent, batch_max=500, batch_interval_s=0.2)
    expected = {f"pred-{i}": content_id(f"features {i}".encode()) for i in range(5000)}
    for pid in expected:
        logger.log(pid, f"features {pid[5:]}".encode(), int(pid[5:]) % 3)
    assert logger.close(timeout=60)
    agent.close(timeout=10)

    def logged() -> list:
        return [e for e in entries.iter_entries(ledger.conn) if e.kind == PREDICTIONS_LOGGED]

    wait_until(
        lambda: sum(len(parse_event(parse_envelope(e.envelope).payload).data["rows"]) for e in logged()) >= 5000,
        timeout=60,
        what="every batch in the ledger",
    )
    rows = []
    for entry in logged():
        event = parse_event(parse_envelope(entry.envelope).payload)
        validate_prov(event.prov)
        assert event.data["deployment"] == DEPLOYMENT and event.data["model"] == MODEL
        rows += [list(r) for r in event.data["rows"]]
    counts = Counter(r[0] for r in rows)
    assert set(counts) == set(expected) and set(counts.values()) == {1}, "every prediction id exactly once"
    assert all(r[2] == expected[r[0]] and r[3] == int(r[0][5:]) % 3 and is_content_id(r[2]) for r in rows)
    assert ledger.rejections() == []


def test_the_undigestable_input_warning_names_the_prediction() -> None:
    """Issue 19.8: the warning said only "input of object cannot be digested", not which prediction."""
    heard: list[tuple[str, str]] = []
    items = [("req-7", 1.7e9, object(), 1, None), ("req-8", 1.7e9, None, 1, "md5:abc")]
    rows, ids, _, _ = build_rows(items, lambda counter, why: heard.append((counter, why)))
    assert ids == ["req-7", "req-8"] and [r[2] for r in rows] == [None, None]  # logged, without a digest
    assert heard == [
        ("undigestable", "prediction 'req-7': input of object cannot be digested (logged without it)"),
        ("undigestable", "prediction 'req-8': input_digest 'md5:abc' is not sha256:<hex> (logged without it)"),
    ]
