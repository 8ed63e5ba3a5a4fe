"""A NATS cluster has several client URLs; a deployment names them all.

``nats.url`` takes a comma-separated list, handed to nats-py as a server
list, so a ledger or an agent that starts while the first server is down
connects to another one (tests/deploy/test_cluster.py shows the failover).
With TLS the names matter: the deploy files' servers do not advertise their
own addresses (``no_advertise``), so clients keep to the names in
``nats.url``, which the NATS certificate carries.
"""

from __future__ import annotations

import dataclasses
import re
from urllib.parse import urlsplit

import pytest

from ledger.config import IngestSettings, Settings, load_settings
from ledger.embedded import free_port
from ledger.service.appender import Appender
from ledger.service.ingest import IngestService, JetStreamIngest, limits_from
from ledger.transport import nats_servers

from .manifests import DEPLOY, compose, compose_processes

pytestmark = [pytest.mark.postgres, pytest.mark.nats]


def test_a_comma_separated_nats_url_is_a_valid_setting() -> None:
    s = load_settings(env={"PROVAULT_NATS_URL": "nats://nats-0:4222,nats://nats-1:4222,nats://nats-2:4222"})
    assert s.nats.url is not None and s.nats.url.count("nats://") == 3


def test_compose_names_every_nats_node_and_the_nodes_do_not_advertise_others() -> None:
    nodes = {name for name, svc in compose()["services"].items() if svc.get("image", "").startswith("nats:")}
    assert len(nodes) == 3
    for proc in compose_processes():
        if "PROVAULT_NATS_URL" not in proc.env:
            continue
        urls = [urlsplit(u) for u in nats_servers(proc.env["PROVAULT_NATS_URL"])]
        assert {u.hostname for u in urls} == nodes, proc.where
        assert {(u.scheme, u.port) for u in urls} == {("nats", 4222)}, proc.where
    for conf in sorted((DEPLOY / "compose" / "nats").glob("*.conf")):
        cluster = re.search(r"^cluster \{(.*?)^\}", conf.read_text(), re.S | re.M)
        assert cluster and re.search(r"^\s*no_advertise: true$", cluster.group(1), re.M), conf.name


def test_the_ledger_connects_when_the_first_of_several_nats_urls_is_down(settings: Settings, ledger) -> None:
    assert settings.nats.url is not None
    urls = f"nats://127.0.0.1:{free_port()},{settings.nats.url}"
    s = dataclasses.replace(
        settings,
        nats=dataclasses.replace(settings.nats, url=urls),
        ingest=IngestSettings(batch_size=10, workers=1, fetch_timeout_s=0.2),
    )
    appender = Appender(ledger.dsn, limits=limits_from(s))
    svc = IngestService(JetStreamIngest(s, appender, urls))
    try:
        svc.start(ready_timeout=30)
        assert svc.running()
    finally:
        svc.stop()
        appender.close()
