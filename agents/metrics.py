"""An agent's metrics, read from its live runtimes when Prometheus scrapes (nothing on the emit path).

Agents serve no port unless ``metrics.agent_listen`` is set (:func:`serve_if_configured`,
called by :func:`agents.runtime.agent_from_settings`); a server process that
runs an agent runtime (the OpenLineage endpoint, a serving node with its own
exporter) exports them with its own metrics.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ledger.config import Settings
from ledger.metrics import REGISTRY, MetricsServer, server_for

_live: weakref.WeakSet = weakref.WeakSet()
_lock = threading.Lock()
_served: MetricsServer | None = None


def track(agent) -> None:
    """Export ``agent``'s counts and spool until :func:`untrack` (it closed)."""
    with _lock:
        _live.add(agent)


def untrack(agent) -> None:
    with _lock:
        _live.discard(agent)


class AgentCollector(Collector):
    def collect(self) -> Iterator:
        events = CounterMetricFamily(
            "provault_agent_events",
            "Events an agent runtime signed, had acknowledged by the ledger, or dropped under back-pressure.",
            labels=("producer", "outcome"),
        )
        spooled = GaugeMetricFamily(
            "provault_agent_spool_events", "Events waiting in the durable spool for delivery.", labels=("producer",)
        )
        size = GaugeMetricFamily("provault_agent_spool_bytes", "The spool's size on disk.", labels=("producer",))
        with _lock:
            agents = list(_live)
        for agent in agents:
            stats, pid = agent.stats, agent.producer_id
            events.add_metric((pid, "sealed"), stats.emitted)
            events.add_metric((pid, "delivered"), stats.sent)
            events.add_metric((pid, "dropped"), stats.dropped)
            spooled.add_metric((pid,), agent.spool.pending_count())
            size.add_metric((pid,), agent.spool.bytes)
        yield events
        yield spooled
        yield size


REGISTRY.register(AgentCollector())


def serve_if_configured(settings: Settings) -> MetricsServer | None:
    """Start this process's agent metrics endpoint once, when ``metrics.agent_listen`` is set; it runs until exit."""
    global _served
    if settings.metrics.agent_listen is None:
        return None
    with _lock:
        if _served is None:
            server = server_for(settings, "agent_listen")
            if server is not None:
                server.start()
            _served = server
        return _served
