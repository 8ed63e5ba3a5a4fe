"""A real disk-full on the agent's spool: writes fail with EFBIG (RLIMIT_FSIZE), not a mock.

The agent runs in a child process (tests/faults/spool_child.py) whose files
may not grow past LIMIT bytes, with SIGXFSZ ignored so a write past it fails
with EFBIG as on a full disk.  emit() must then fail loudly (SpoolFull naming
the spool) or, with backpressure="drop", drop and count; it must never return
an id for an event it did not keep, and a failed write must leave no partial
record and burn no producer seq (both did before 4aa2854: the partial record
made the spool unreadable once later writes succeeded, and the skipped seqs
showed as a 'gap' anomaly in the ledger).  When space is back -- the child
restarted without the limit, or the limit lifted inside the same process --
every id emit() returned must reach the log exactly once, in the producer's
order, and the audit must pass.  The same holds when the full disk hits the
agent's other file, its saved chain position.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from ledger.config import Settings
from ledger.core.keys import Ed25519Signer, save_private_key
from ledger.store import entries
from tests.ledgerkit import Ledger

from .faultkit import assert_log_intact, log_size, save_checkpoint_key, serving, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.nats]

PRODUCER = "trainer@host-1/train"
LIMIT = 16 * 1024  # bytes a file of the child may reach: ~18 events in the first spool segment
CHILD_TIMEOUT_S = 90.0
EMITS = 200
ROOT = Path(__file__).resolve().parents[2]  # the child runs `-m tests.faults.spool_child` from here


@dataclass(frozen=True, slots=True, kw_only=True)
class ChildRun:
    returncode: int
    ids: tuple[str, ...]
    dropped: int
    errors: tuple[str, ...]
    torn: tuple[str, ...]
    closed: bool
    stderr: str


def _run_child(work: Path, key: Path, url: str, settings: Settings, **plan) -> ChildRun:
    plan |= {"stream": settings.nats.stream, "subject_prefix": settings.nats.subject_prefix}
    res = subprocess.run(
        [sys.executable, "-m", "tests.faults.spool_child", url, str(key), str(work), PRODUCER, json.dumps(plan)],
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        cwd=ROOT,
    )
    lines = [ln.split(" ", 1) + [""] for ln in res.stdout.splitlines() if ln]
    return ChildRun(
        returncode=res.returncode,
        ids=tuple(rest.strip() for tag, rest, *_ in lines if tag == "ID"),
        dropped=sum(1 for tag, *_ in lines if tag == "DROPPED"),
        errors=tuple(rest.strip() for tag, rest, *_ in lines if tag == "ERR"),
        torn=tuple(rest.strip() for tag, rest, *_ in lines if tag == "TORN"),
        closed=any(tag == "CLOSED" and rest.strip() == "True" for tag, rest, *_ in lines),
        stderr=res.stderr[-3000:],
    )


def _clear(error: str, spool: Path) -> bool:
    """SpoolFull, naming the spool directory (what to free), not a bare OSError."""
    kind, _, rest = error.partition(" ")
    return kind == "SpoolFull" and str(spool) in rest


def _setup(tmp_path: Path, settings: Settings, ledger: Ledger) -> tuple[Path, int]:
    save_checkpoint_key(ledger, settings)
    key = Ed25519Signer.generate()
    ledger.append(ledger.registration(key, producers=[PRODUCER]))
    save_private_key(key, tmp_path / "producer.key")
    return tmp_path / "producer.key", log_size(ledger)


def _drained(ledger: Ledger, base: int, returned: list[str], lp) -> None:
    wait_until(
        lambda: {e.event_id for e in entries.iter_entries(ledger.conn, start=base)} >= set(returned),
        timeout=60,
        what="every event emit() returned an id for",
        every=0.2,
        alive=lp,
    )
    time.sleep(1.5)  # anything sent twice would arrive within ack_wait; let it, so the check below sees it


@pytest.mark.parametrize("backpressure", ["block", "drop"])
def test_disk_full_then_restart_delivers_every_returned_id(
    tmp_path, settings: Settings, ledger: Ledger, nats_target, backpressure: str
) -> None:
    started = time.monotonic()
    key, base = _setup(tmp_path, settings, ledger)
    work = tmp_path / "agent"
    with serving(settings, ledger, nats_target.url, tmp_path / "ledger.log") as lp:
        full = _run_child(work, key, nats_target.url, settings, limit=LIMIT, emit=EMITS, backpressure=backpressure)
        assert full.returncode == 0, full.stderr
        assert 0 < len(full.ids) < EMITS, (
            f"{len(full.ids)} of {EMITS} ids returned: the limit never bit, or nothing fitted"
        )
        if backpressure == "drop":  # the policy applies to a full disk as to a full spool: counted, never raised
            assert full.errors == () and full.dropped == EMITS - len(full.ids), full
        else:  # emit() waits publish_timeout_s for room, then fails loudly
            assert full.dropped == 0 and full.errors, full
            assert all(_clear(e, work / "spool") for e in full.errors), (
                f"emit() failed without saying where: {full.errors}"
            )
        segment = next((work / "spool").glob("seg-*.log"))
        assert segment.stat().st_size <= LIMIT
        again = _run_child(work, key, nats_target.url, settings, emit=5)
        assert again.returncode == 0 and again.closed, again.stderr
        assert again.torn == (), f"a failed write left a partial record behind: {again.torn}"
        returned = [*full.ids, *again.ids]
        _drained(ledger, base, returned, lp)
    print(
        f"\nspool file limit {LIMIT} B, backpressure={backpressure}: {len(full.ids)} stored, {len(full.errors)} emit error(s) "
        f"{full.errors[:1]}, {full.dropped} dropped; {time.monotonic() - started:.1f} s"
    )
    registrations = [e.event_id for e in entries.iter_entries(ledger.conn) if e.seq < base]
    assert_log_intact(ledger, registrations + returned)


def test_space_back_in_the_same_process_keeps_the_spool_readable(
    tmp_path, settings: Settings, ledger: Ledger, nats_target
) -> None:
    key, base = _setup(tmp_path, settings, ledger)
    work = tmp_path / "agent"
    with serving(settings, ledger, nats_target.url, tmp_path / "ledger.log") as lp:
        run = _run_child(work, key, nats_target.url, settings, limit=LIMIT, emit=EMITS, then_free=5)
        assert run.returncode == 0 and run.closed, f"{run}\n{run.stderr}"  # closed: everything spooled was delivered
        assert run.errors and all(_clear(e, work / "spool") for e in run.errors), run.errors
        again = _run_child(work, key, nats_target.url, settings, emit=1)
        assert again.returncode == 0 and again.closed, f"the agent cannot reopen its spool: {again.stderr}"
        assert again.torn == ()
        returned = [*run.ids, *again.ids]
        _drained(ledger, base, returned, lp)
    registrations = [e.event_id for e in entries.iter_entries(ledger.conn) if e.seq < base]
    assert_log_intact(ledger, registrations + returned)


def test_disk_full_while_saving_the_chain_position_keeps_the_agent_startable(
    tmp_path, settings: Settings, ledger: Ledger, nats_target
) -> None:
    # A 64-byte limit: the spool segment (written before it) is untouched, but the ~110-byte
    # chain position the agent saves on delivery and on close no longer fits.  A short write
    # renamed over the saved position left truncated JSON the next agent refused to start on.
    key, base = _setup(tmp_path, settings, ledger)
    work = tmp_path / "agent"
    with serving(settings, ledger, nats_target.url, tmp_path / "ledger.log") as lp:
        run = _run_child(work, key, nats_target.url, settings, before=5, limit=64)
        assert run.returncode == 0 and len(run.ids) == 5, f"{run}\n{run.stderr}"
        again = _run_child(work, key, nats_target.url, settings, emit=5)
        assert again.returncode == 0 and again.closed, (
            f"the agent cannot start again once space is back: {again.stderr[-600:]}"
        )
        returned = [*run.ids, *again.ids]
        _drained(ledger, base, returned, lp)
    registrations = [e.event_id for e in entries.iter_entries(ledger.conn) if e.seq < base]
    assert_log_intact(ledger, registrations + returned)
