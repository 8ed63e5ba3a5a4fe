"""The supervisor of ``provault up``, on fake servers and a fake clock (the real ones: test_up_supervision.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ledger.core.errors import ServerStartError
from ledger.supervise import RestartPolicy, Supervisor


@dataclass
class FakeChild:
    name: str
    log: Path = Path("/data/child.log")
    up: bool = True
    failures_left: int = 0
    """Restarts that raise before one succeeds."""
    restarts: int = 0

    def running(self) -> bool:
        return self.up

    def restart(self) -> str:
        self.restarts += 1
        if self.failures_left:
            self.failures_left -= 1
            raise ServerStartError(f"{self.name} cannot listen on 127.0.0.1:4222: another process is listening there")
        self.up = True
        return f"{self.name}://127.0.0.1:4222"


@dataclass
class FakeServer:
    name: str
    depends_on: frozenset[str]
    log: Path = Path("(stderr)")
    alive: bool = True
    serving: list[bool] = field(default_factory=list)

    def running(self) -> bool:
        return self.alive

    def set_serving(self, serving: bool) -> None:
        self.serving.append(serving)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _stack(policy: RestartPolicy | None = None):
    pg, nats = FakeChild("PostgreSQL"), FakeChild("NATS")
    ledger = FakeServer("ledger", frozenset({"postgres", "nats"}))
    query = FakeServer("query-grpc", frozenset({"postgres"}))
    projector = FakeServer("projector", frozenset())  # no gRPC health of its own
    clock, said = Clock(), []
    sup = Supervisor(
        {"postgres": pg, "nats": nats},
        lambda: [pg, nats, ledger, projector, query],
        policy=policy or RestartPolicy(),
        clock=clock,
        say=said.append,
    )
    return sup, pg, nats, ledger, query, projector, clock, said


def test_delays_double_from_half_a_second_up_to_thirty() -> None:
    assert [RestartPolicy().delay(n) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_a_crashed_server_is_restarted_after_the_backoff_and_health_follows_it() -> None:
    sup, pg, nats, ledger, query, _, clock, said = _stack()
    sup.check()
    assert ledger.serving == [] and said == []  # nothing to say while everything runs

    nats.up, nats.failures_left = False, 1
    sup.check()
    assert sup.down == {"nats"} and nats.restarts == 0  # noticed, not yet due
    assert ledger.serving == [False] and query.serving == []  # the query side does not need NATS
    assert said == ["NATS stopped unexpectedly; restarting it in 0.5 s (attempt 1; log: /data/child.log)"]

    clock.now += 0.4
    sup.check()
    assert nats.restarts == 0
    clock.now += 0.1
    sup.check()  # due: the restart fails (port taken), the next delay doubles
    assert nats.restarts == 1 and sup.down == {"nats"}
    assert said[-1].startswith("NATS did not start again (NATS cannot listen on 127.0.0.1:4222")
    assert said[-1].endswith("restarting it in 1 s (attempt 2; log: /data/child.log)")

    clock.now += 1
    sup.check()
    assert nats.restarts == 2 and sup.down == frozenset()
    assert said[-1] == "NATS is running again on NATS://127.0.0.1:4222"
    assert ledger.serving == [False, True] and query.serving == [] and pg.restarts == 0


def test_postgres_down_takes_both_servers_out_of_service() -> None:
    sup, pg, _, ledger, query, _, clock, _ = _stack()
    pg.up = False
    sup.check()
    assert ledger.serving == [False] and query.serving == [False]
    clock.now += 0.5
    sup.check()
    assert ledger.serving == [False, True] and query.serving == [False, True]


def test_attempts_start_over_after_a_stable_run_and_the_stack_gives_up_on_a_crash_loop() -> None:
    policy = RestartPolicy(first_delay_s=1, max_delay_s=4, stable_after_s=60, max_attempts=3)
    sup, pg, _, _, _, _, clock, said = _stack(policy)
    for expected_delay in (1, 2, 4):  # each restart works, and it dies again within a second
        pg.up = False
        sup.check()
        assert said[-1].startswith(f"PostgreSQL stopped unexpectedly; restarting it in {expected_delay:g} s")
        clock.now += expected_delay
        sup.check()
        clock.now += 1
    clock.now += 60  # this run was stable: the count starts over
    sup.check()
    pg.up = False
    sup.check()
    assert said[-1].startswith("PostgreSQL stopped unexpectedly; restarting it in 1 s (attempt 1;")
    for delay in (1, 2, 4):
        clock.now += delay
        sup.check()
        clock.now += 1
        pg.up = False
        if delay == 4:
            with pytest.raises(ServerStartError) as e:
                sup.check()
            assert "giving up after 3 restarts in a row, none of which stayed up 60 s" in str(e.value)
            assert e.value.hint == "see its log: /data/child.log"
        else:
            sup.check()


def test_an_in_process_service_that_stops_stops_the_stack() -> None:
    sup, _, _, _, _, projector, _, _ = _stack()
    projector.alive = False
    with pytest.raises(ServerStartError) as e:
        sup.check()
    assert str(e.value).startswith("projector stopped unexpectedly")
