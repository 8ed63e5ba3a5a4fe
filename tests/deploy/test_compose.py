"""deploy/compose: references resolve, the topology is the required one, nothing is published beyond
this host, and the NATS monitoring port stays inside the containers."""

from __future__ import annotations

import re

from .manifests import (
    COMPOSE,
    DOCKERFILE,
    compose,
)
from .natskit import (
    NATS_CONFS,
)


def test_compose_references_existing_files_services_and_secrets() -> None:
    c = compose()
    here = COMPOSE.parent
    services, secrets = c["services"], c["secrets"]
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./secrets/"):
                continue  # the operator's (docs/operations.md), like the secrets below
            if source.startswith("."):
                assert (here / source).is_file(), f"{name}: {source} does not exist"
            else:
                assert source in c["volumes"], f"{name}: volume {source} is not declared"
        for secret in svc.get("secrets", []):
            assert secret in secrets, f"{name}: secret {secret} is not declared"
        for dep in svc.get("depends_on", {}):
            assert dep in services, f"{name}: depends on unknown service {dep}"
        if "build" in svc:
            assert (here / svc["build"]["context"] / svc["build"]["dockerfile"]).resolve() == DOCKERFILE
    # Secret files are the operator's to create, under secrets/, which git ignores.
    for name, secret in secrets.items():
        assert secret["file"].startswith("./secrets/"), name
    assert "secrets/" in (here / ".gitignore").read_text().split()
    assert set(secrets) == {s for svc in services.values() for s in svc.get("secrets", [])}, "every secret is used"


def test_compose_runs_the_required_topology() -> None:
    services = compose()["services"]
    assert services["postgres"]["image"] == "postgres:17" and "healthcheck" in services["postgres"]
    nats = [n for n in services if n.startswith("nats-")]
    assert len(nats) == 3
    for n in nats:
        assert services[n]["image"].startswith("nats:2.11")
        assert "healthcheck" in services[n]
    assert services["migrate"]["restart"] == "no"
    assert services["ledger"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_compose_publishes_ports_on_loopback_only() -> None:
    for name, svc in compose()["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name}: {port} is published beyond this host"


def test_compose_keeps_nats_monitoring_inside_the_containers() -> None:
    """8222 has no authentication, and /connz lists every client's subscriptions (the ledger's inbox among them):
    Compose publishes neither it nor the routes' port, and the servers listen on it on the container's loopback,
    where the healthcheck, which runs inside the container, still reaches it."""
    services = compose()["services"]
    for conf in NATS_CONFS:
        svc = services[conf.stem]
        published = [str(p).rsplit(":", 1)[-1] for p in svc.get("ports", [])]
        assert "8222" not in published and "6222" not in published, f"{conf.stem}: {svc.get('ports')}"
        assert re.search(r"^http: 127\.0\.0\.1:8222$", conf.read_text(), re.M), conf.name
        test = svc["healthcheck"]["test"]
        assert test[0] == "CMD" and test[-1] == "http://127.0.0.1:8222/healthz", test
