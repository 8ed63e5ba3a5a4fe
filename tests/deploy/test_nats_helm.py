"""deploy/kubernetes/nats-values.yaml, the NATS Helm chart's values: three JetStream servers on volumes, the
users Secret included, TLS first for clients and mutual TLS on the routes, checked on the config as the chart
renders it with a real nats-server."""

from __future__ import annotations

import asyncio
import json
import posixpath
import re
import shutil
from pathlib import Path
from typing import Any

from ledger.config import load_settings
from ledger.embedded import free_port

from .manifests import (
    KUBE,
    load_all,
)
from .natskit import (
    CHART_RELEASE,
    chart_route_hosts,
    connects_only_with_tls_first_and_credentials,
    nats_config_check,
    nats_server,
)
from .tlskit import Tls, make_tls


def test_nats_helm_values_run_three_jetstream_servers_on_volumes() -> None:
    values = load_all(KUBE / "nats-values.yaml")[0]
    assert values["config"]["cluster"]["enabled"] is True and values["config"]["cluster"]["replicas"] == 3
    store = values["config"]["jetstream"]["fileStore"]
    assert values["config"]["jetstream"]["enabled"] and store["enabled"] and store["pvc"]["enabled"]


CHART_CONFIG_DIR = "/etc/nats-config"
"""Where the chart mounts nats.conf; `$include` paths are relative to it (the chart's values.yaml, config.merge)."""


def _chart_tls(values: dict[str, Any], protocol: str) -> dict[str, Any]:
    """A tls block as the chart renders it (files/config/tls.yaml): the Secret's files, the tlsCA's ca_file in
    every block, then the block's merge."""
    tls = values["config"][protocol]["tls"]
    folder = (tls.get("dir") or f"/etc/nats-certs/{protocol}").rstrip("/")
    block: dict[str, Any] = {
        "cert_file": f"{folder}/{tls.get('cert') or 'tls.crt'}",
        "key_file": f"{folder}/{tls.get('key') or 'tls.key'}",
    }
    ca = values.get("tlsCA", {})
    if ca.get("enabled") and (ca.get("secretName") or ca.get("configMapName")):
        block["ca_file"] = f"{(ca.get('dir') or '/etc/nats-ca-cert').rstrip('/')}/{ca.get('key') or 'ca.crt'}"
    return {**block, **tls.get("merge", {})}


def _chart_config(values: dict[str, Any]) -> str:
    """nats.conf as the chart renders it from these values (files/config/config.yaml, cluster.yaml, tls.yaml,
    config.merge with its $include), for the keys the values use; paths as in the pod."""
    config = values["config"]
    cluster = config["cluster"]
    doc: dict[str, Any] = {
        "server_name": "nats-0",
        "port": 4222,
        "tls": _chart_tls(values, "nats"),
        "cluster": {
            "name": CHART_RELEASE,
            "port": 6222,
            "no_advertise": cluster.get("noAdvertise", True),
            "routes": [
                f"{'tls' if cluster['tls']['enabled'] else 'nats'}://{h}:6222" for h in chart_route_hosts(values)
            ],
            **({"tls": _chart_tls(values, "cluster")} if cluster["tls"]["enabled"] else {}),
        },
        "http_port": 8222,
        "jetstream": {"store_dir": config["jetstream"]["fileStore"]["dir"]},
        **{k: v for k, v in config["merge"].items() if not k.endswith("$include")},
    }
    includes = "".join(f"  include {v};\n" for k, v in config["merge"].items() if k.endswith("$include"))
    return json.dumps(doc, indent=2)[:-2] + ",\n" + includes + "}\n"


def _chart_files(values: dict[str, Any], users: dict[str, Path], root: Path) -> tuple[Path, Tls]:
    """The pod's /etc (the chart's config, the Secrets' files) and /data under ``root``: the config file, and the
    certificate it serves (the Service name, the route names, localhost; serverAuth and clientAuth)."""
    etc = root / "etc"
    tls = make_tls(
        root / "pki",
        [f"{CHART_RELEASE}.{CHART_RELEASE}.svc.cluster.local", *chart_route_hosts(values), "localhost"],
        cn="provault-nats",
        client_auth=True,
    )
    text = _chart_config(values)
    for f in re.findall(r'"(/etc/[^"]+)"', text):
        dst = etc / f.removeprefix("/etc/")
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy({"tls.crt": tls.cert, "tls.key": tls.key, "ca.crt": tls.ca}[Path(f).name], dst)
    includes = [v for k, v in values["config"]["merge"].items() if k.endswith("$include")]
    auth = etc / posixpath.normpath(posixpath.join(CHART_CONFIG_DIR, includes[0])).removeprefix("/etc/")
    auth.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(users["auth.conf"], auth)
    config = etc / "nats-config" / "nats.conf"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text(text.replace('"/etc/', f'"{etc}/').replace('"/data"', f'"{root / "data"}"'))
    return config, tls


def test_nats_helm_values_include_the_users_secret_and_serve_tls(users: dict[str, Path], tmp_path: Path) -> None:
    """The chart's conventions: `config.merge` keys ending in $include become include directives, relative to
    /etc/nats-config; extra volumes come through `podTemplate.patch` and `container.patch` (JSON patches); the
    config reloader gets every nats mount under /etc/ and watches included files."""
    values = load_all(KUBE / "nats-values.yaml")[0]
    includes = [v for k, v in values["config"]["merge"].items() if k.endswith("$include")]
    assert len(includes) == 1
    target = posixpath.normpath(posixpath.join(CHART_CONFIG_DIR, includes[0]))
    mounts = [
        op["value"] for op in values["container"]["patch"] if op["op"] == "add" and op["path"] == "/volumeMounts/-"
    ]
    volumes = {
        op["value"]["name"]: op["value"]
        for op in values["podTemplate"]["patch"]
        if op["op"] == "add" and op["path"] == "/spec/volumes/-"
    }
    mount = next(m for m in mounts if target.startswith(m["mountPath"].rstrip("/") + "/"))
    assert volumes[mount["name"]]["secret"]["secretName"] == "nats-auth"
    assert mount["mountPath"].startswith("/etc/") and not mount["mountPath"].startswith(CHART_CONFIG_DIR + "/")
    assert values["config"]["cluster"].get("noAdvertise", True) is True
    assert values["natsBox"]["enabled"] is False, "nats-box has no NATS user"
    # The include as the chart renders it, with a users file from the CLI: nats-server accepts the whole config.
    config, _ = _chart_files(values, users, tmp_path)
    res = nats_config_check(config, tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_nats_helm_values_serve_tls_first_and_mutual_tls_on_the_routes(users: dict[str, Path], tmp_path: Path) -> None:
    """Clients: TLS first (handshake_first true, not a duration).  Routes: TLS with the servers' Secret, the CA from
    tlsCA (which the chart adds as ca_file), verify.  The chart's probes use the monitoring port over plain http,
    so TLS first on 4222 leaves them alone.  A server running the config as the chart renders it (its route peers
    unreachable) admits the ledger's user over TLS first, though the client port's block now has a ca_file too."""
    values = load_all(KUBE / "nats-values.yaml")[0]
    nats_tls, cluster = values["config"]["nats"]["tls"], values["config"]["cluster"]
    assert nats_tls["enabled"] is True and nats_tls["secretName"] == "nats-server-tls"
    assert nats_tls["merge"]["handshake_first"] is True
    assert cluster["tls"]["enabled"] is True and cluster["tls"]["secretName"] == "nats-server-tls"
    assert cluster["tls"]["merge"]["verify"] is True
    assert values["tlsCA"]["enabled"] is True and values["tlsCA"]["secretName"] == "nats-ca"
    assert not values["config"]["monitor"].get("tls", {}).get("enabled"), "the chart's httpGet probes stay plain http"
    assert not cluster.get("routeURLs", {}).get("user"), "routes authenticate with certificates, not a shared password"
    rendered = json.loads(_chart_config(values).split("  include ")[0].rstrip().rstrip(",") + "}")
    assert rendered["cluster"]["tls"] == {
        "cert_file": "/etc/nats-certs/cluster/tls.crt",
        "key_file": "/etc/nats-certs/cluster/tls.key",
        "ca_file": "/etc/nats-ca-cert/ca.crt",
        "verify": True,
    }
    assert rendered["cluster"]["routes"] == [f"tls://nats-{i}.nats-headless:6222" for i in range(3)]
    config, tls = _chart_files(values, users, tmp_path)
    port, http, route = free_port(), free_port(), free_port()
    text = config.read_text()
    for old, new in (
        ('"port": 4222', f'"listen": "127.0.0.1:{port}"'),
        ('"http_port": 8222', f'"http": "127.0.0.1:{http}"'),
        ('"port": 6222', f'"listen": "127.0.0.1:{route}"'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    config.write_text(text)
    settings = load_settings(
        env={"PROVAULT_NATS_NKEY_SEED_FILE": str(users["ledger"]), "PROVAULT_NATS_TLS_CA": str(tls.ca)}
    )
    with nats_server(config, tmp_path / "nats.log"):
        asyncio.run(connects_only_with_tls_first_and_credentials(f"nats://localhost:{port}", settings))
