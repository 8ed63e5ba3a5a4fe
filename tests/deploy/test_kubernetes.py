"""deploy/kubernetes: one ledger and several query replicas, resources and TLS health probes, DSNs by role,
Secrets referenced and never contained, the NATS NetworkPolicy, and overlays whose settings are valid."""

from __future__ import annotations

from typing import Any

from ledger.cli import build_parser
from ledger.config import load_settings

from .manifests import (
    KUBE,
    env_values,
    kube_containers,
    kube_documents,
    load_all,
)
from .natskit import (
    CHART_RELEASE,
)


def _by_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in kube_documents() if d["kind"] == kind}


def test_kubernetes_one_ledger_several_query_replicas() -> None:
    deployments = _by_kind("Deployment")
    assert deployments["provault-ledger"]["spec"]["replicas"] == 1
    assert deployments["provault-ledger"]["spec"]["strategy"]["type"] == "Recreate"
    assert deployments["provault-projector"]["spec"]["replicas"] == 1
    assert deployments["provault-query"]["spec"]["replicas"] >= 2
    assert _by_kind("PodDisruptionBudget") and len(_by_kind("NetworkPolicy")) >= 2


def test_kubernetes_containers_have_resources_and_health_probes() -> None:
    ports = {"ledger": 7430, "query": 7431, "projector": 7431}
    for c in kube_containers(kube_documents()):
        res = c.spec.get("resources", {})
        assert res.get("requests") and res.get("limits"), f"{c.where}: resources"
        assert c.spec["securityContext"]["readOnlyRootFilesystem"] is True, c.where
        if c.spec["name"] in ports:
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                command = c.spec[probe]["exec"]["command"]
                assert command[:3] == ["provault", "health", f"127.0.0.1:{ports[c.spec['name']]}"], (
                    f"{c.where}: {probe}"
                )
                check_timeout = build_parser().parse_args(command[1:]).timeout
                # The CLI takes about a second to start, then waits up to --timeout for the answer.
                assert c.spec[probe]["timeoutSeconds"] >= check_timeout + 2, f"{c.where}: {probe}: timeoutSeconds"


def test_kubernetes_dsns_point_writers_at_the_primary_and_queries_at_replicas() -> None:
    cluster = _by_kind("Cluster")["provault-pg"]
    assert cluster["apiVersion"] == "postgresql.cnpg.io/v1" and cluster["spec"]["instances"] == 3
    env = {c.where: c.spec.get("env", []) for c in kube_containers(kube_documents())}
    dsn = {w: next((e["value"] for e in v if e["name"] == "PROVAULT_POSTGRES_DSN"), None) for w, v in env.items() if v}
    assert dsn.pop("StatefulSet/provault-openlineage/openlineage") is None, "the OpenLineage endpoint uses no database"
    for where, value in dsn.items():
        host = value.split("@")[1].split(":")[0]
        assert host == ("provault-pg-ro" if where.endswith("/query") else "provault-pg-rw"), where


def test_kubernetes_secrets_are_referenced_never_contained() -> None:
    docs = kube_documents()
    assert not [d for d in docs if d["kind"] == "Secret"], "keys and passwords are created by the operator"
    text = "\n".join(p.read_text() for p in (KUBE / "base").glob("*.yaml"))
    for name in (
        "provault-checkpoint-key",
        "provault-admin-keys",
        "provault-pg-ledger",
        "provault-pg-query",
        "provault-grpc-tls",
        "provault-grpc-tokens",
        "provault-ca",
        "provault-ledger-nats",
    ):
        assert name in text


NATS_NETWORK_POLICY = KUBE / "nats-networkpolicy.yaml"


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    assert set(selector) <= {"matchLabels"}, f"only matchLabels here: {selector}"
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def test_the_nats_network_policy_admits_each_port_from_the_expected_pods_only() -> None:
    """deploy/kubernetes/nats-networkpolicy.yaml, for namespace nats: it selects the chart's NATS pods (release
    nats); 4222 from the ledger's pods (namespace provault) and pods labelled provault.io/nats-client; 6222 from
    the NATS pods only; 8222 from the NATS pods and pods labelled provault.io/nats-monitor; nothing else."""
    docs = load_all(NATS_NETWORK_POLICY)
    assert docs and all(d["apiVersion"] == "networking.k8s.io/v1" and d["kind"] == "NetworkPolicy" for d in docs)
    nats_pod = {
        "app.kubernetes.io/name": "nats",
        "app.kubernetes.io/instance": CHART_RELEASE,
        "app.kubernetes.io/component": "nats",
    }
    nats_box = {**nats_pod, "app.kubernetes.io/component": "nats-box"}
    ledger = next(
        d for d in kube_documents() if d["kind"] == "Deployment" and d["metadata"]["name"] == "provault-ledger"
    )
    ledger_pod = ledger["spec"]["template"]["metadata"]["labels"]
    provault_ns = {"kubernetes.io/metadata.name": "provault"}
    admitted: dict[int, list[dict[str, Any]]] = {}
    for d in docs:
        assert d["metadata"]["namespace"] == CHART_RELEASE
        assert _selects(d["spec"]["podSelector"], nats_pod) and not _selects(d["spec"]["podSelector"], nats_box)
        assert "Ingress" in d["spec"]["policyTypes"]
        for rule in d["spec"].get("ingress", []):
            assert rule.get("from"), "a rule without `from` admits every source"
            assert rule.get("ports"), "a rule without `ports` admits every port"
            for port in rule["ports"]:
                assert port.get("protocol", "TCP") == "TCP"
                admitted.setdefault(int(port["port"]), []).extend(rule["from"])
    assert set(admitted) == {4222, 6222, 8222}

    def in_namespace(name: str) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": name}

    def admits(port: int, labels: dict[str, str], namespace: dict[str, str]) -> bool:
        """Whether a pod with ``labels`` in a namespace with labels ``namespace`` may reach ``port``."""
        for peer in admitted[port]:
            assert set(peer) <= {"podSelector", "namespaceSelector"}, f"{port}: {peer} (no ipBlock by default)"
            # Without a namespaceSelector, a podSelector means pods of the policy's own namespace.
            in_ns = (
                _selects(peer["namespaceSelector"], namespace)
                if "namespaceSelector" in peer
                else namespace == in_namespace("nats")
            )
            if in_ns and _selects(peer.get("podSelector", {}), labels):
                return True
        return False

    nats_ns, monitoring_ns, agents_ns = in_namespace("nats"), in_namespace("monitoring"), in_namespace("ml")
    agent, monitor, stranger = (
        {"provault.io/nats-client": "true"},
        {"provault.io/nats-monitor": "true"},
        {"app": "anything"},
    )
    assert admits(4222, ledger_pod, provault_ns) and admits(4222, agent, agents_ns)
    assert not admits(4222, stranger, agents_ns) and not admits(4222, ledger_pod, agents_ns)
    assert admits(6222, nats_pod, nats_ns)
    for labels, ns in (
        (ledger_pod, provault_ns),
        (agent, agents_ns),
        (monitor, monitoring_ns),
        (stranger, nats_ns),
        (nats_pod, agents_ns),
        (nats_box, nats_ns),
    ):
        assert not admits(6222, labels, ns), f"6222 from {labels} in {ns}"
    assert admits(8222, nats_pod, nats_ns) and admits(8222, monitor, monitoring_ns)
    for labels, ns in ((ledger_pod, provault_ns), (agent, agents_ns), (stranger, monitoring_ns)):
        assert not admits(8222, labels, ns), f"8222 from {labels} in {ns}"
    # provault's own egress policy reaches these pods on 4222.
    egress = next(
        d for d in kube_documents() if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "provault-egress"
    )
    to_nats = [r for r in egress["spec"]["egress"] if any(p["port"] == 4222 for p in r["ports"])]
    assert to_nats and all(_selects(peer["podSelector"], nats_pod) for r in to_nats for peer in r["to"])


def test_overlay_settings_are_valid_on_top_of_the_base() -> None:
    base = next(d["data"] for d in kube_documents() if d["kind"] == "ConfigMap")
    for overlay in sorted((KUBE / "overlays").iterdir()):
        docs = kube_documents(overlay)
        data = {**base, **{k: v for d in docs if d.get("kind") == "ConfigMap" for k, v in d["data"].items()}}
        load_settings(env=data)
        for c in kube_containers([d for d in docs if "template" in d.get("spec", {})]):
            load_settings(env={**data, **env_values(c.spec.get("env"))})
