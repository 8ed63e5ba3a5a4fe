"""An agent in a child process whose files may not grow past a limit: a real EFBIG, like a full disk.

``python -m tests.faults.spool_child URL KEY WORK PRODUCER PLAN`` where PLAN is
JSON: ``{"before": n, "limit": bytes or null, "emit": n, "backpressure":
"block"|"drop", "then_free": n, "stream": name, "subject_prefix": prefix}``.
``before`` events are emitted first, without a limit.  With a limit,
RLIMIT_FSIZE is set (after the agent opened its spool) and SIGXFSZ ignored,
so a write past it fails with EFBIG instead of killing us (a write that
straddles it is cut short, as on a disk with a few bytes left); the agent
keeps emitting until it has failed three times.  With
``then_free``, the limit is lifted in this same process (space comes back
while the program runs) and ``then_free`` more events are emitted.

One line per outcome on stdout: ``ID <event id>`` (emit returned it),
``DROPPED`` (emit returned ""), ``ERR <class> <errno> <message>``, then
``TORN <segment> <offset>`` for each torn tail the spool set aside on open,
``STATS <json>`` and ``CLOSED <delivered>``.
"""

from __future__ import annotations

import json
import resource
import signal
import sys
from pathlib import Path

from agents.runtime import Agent
from agents.transport import NatsTransport
from ledger.config import AgentSettings, NatsSettings
from ledger.core.keys import load_private_key

MAX_ERRORS = 3


def _say(*parts: object) -> None:
    print(*parts, flush=True)


def _emit(agent: Agent, start: int, n: int) -> None:
    errors = 0
    for i in range(start, start + n):
        try:
            eid = agent.emit("dataset.registered", {"entity": {f"sha256:{i:064x}": {"prov:type": "provault:Dataset"}}})
        except Exception as e:
            errors += 1
            _say("ERR", type(e).__name__, getattr(e, "errno", None), str(e).replace("\n", " "))
            if errors >= MAX_ERRORS:
                return
            continue
        _say("ID", eid) if eid else _say("DROPPED")


def main(url: str, key: str, work: str, producer: str, plan_json: str) -> None:
    plan = json.loads(plan_json)
    nats = NatsSettings(
        stream=plan.get("stream", "PROVAULT"), subject_prefix=plan.get("subject_prefix", "provault.events")
    )
    settings = AgentSettings(publish_timeout_s=2.0, backpressure=plan.get("backpressure", "block"))
    agent = Agent(
        producer_id=producer,
        signer=load_private_key(Path(key)),
        spool_dir=Path(work) / "spool",
        state_dir=Path(work) / "state",
        transport=NatsTransport(url, nats, producer, timeout_s=2.0),
        settings=settings,
    )
    for torn in agent.spool.torn:
        _say("TORN", torn.segment, torn.offset)
    _emit(agent, 0, plan.get("before", 0))
    if plan.get("limit"):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        hard = plan["limit"] if not plan.get("then_free") else resource.RLIM_INFINITY
        resource.setrlimit(resource.RLIMIT_FSIZE, (plan["limit"], hard))
    done = plan.get("before", 0)
    _emit(agent, done, plan.get("emit", 0))
    if plan.get("then_free"):
        resource.setrlimit(resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        _emit(agent, done + plan.get("emit", 0), plan["then_free"])
    s = agent.stats
    _say("STATS", json.dumps({"emitted": s.emitted, "sent": s.sent, "dropped": s.dropped, "last_error": s.last_error}))
    try:
        _say("CLOSED", agent.close(timeout=30))
    except Exception as e:
        _say("ERR", type(e).__name__, getattr(e, "errno", None), str(e).replace("\n", " "))
        _say("CLOSED", False)


if __name__ == "__main__":
    main(*sys.argv[1:6])
