"""``provault admission serve``: the deployment gate as a Kubernetes validating admission webhook.

It reads the gate policy once, at start (a malformed one stops it before it listens), and the database
as ``provault_auditor``; each decision is recorded with the attestation key (``supply.key_file``), except
for dry-run reviews.  See docs/supply-chain.md, "Kubernetes admission".
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from ledger.config import Settings, settings_from
from ledger.core.errors import ConfigError
from ledger.stack import resolve_postgres_dsn
from ledger.webthread import serve_until_signalled, tls_context
from query.cli.bundle import AUDITOR_ROLE


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    adm = sub.add_parser("admission", help="the deployment gate as a Kubernetes admission webhook").add_subparsers(
        dest="admission_command", metavar="ACTION", required=True
    )
    p = adm.add_parser(
        "serve",
        parents=[common],
        help="answer Kubernetes AdmissionReview requests (POST /validate) until Ctrl-C or SIGTERM",
        description=(
            "Answer admission.k8s.io/v1 AdmissionReview requests for pods and the workloads that make them: "
            "an object whose pods carry the annotation provault.dev/model (a model digest) is allowed only when "
            "the deployment gate allows that model under the policy. Each decision is recorded as gate.decided, "
            "signed by the attestation key (supply.key_file), except for dry-run reviews. HTTPS with "
            "supply.tls_cert / supply.tls_key; off loopback it refuses to listen without them. "
            "See docs/supply-chain.md."
        ),
    )
    p.add_argument("--policy", metavar="FILE", help="the gate policy, TOML (default: supply.admission_policy)")
    p.add_argument("--listen", metavar="HOST:PORT", help="where to listen (default: supply.admission_listen)")
    p.add_argument(
        "--require-annotation",
        action="store_true",
        help="refuse pods that name no model, instead of letting them through with a warning "
        "(also the policy's [admission] require_annotation = true)",
    )
    p.set_defaults(run=run_serve)


def _policy_text(settings: Settings, given: str | None) -> tuple[Path, str]:
    where = given or settings.supply.admission_policy
    if not where:
        raise ConfigError(
            ["supply.admission_policy: unset, and no --policy given: the endpoint needs a gate policy to decide with"],
            hint="write one (docs/supply-chain.md, Policy) and pass --policy FILE",
        )
    path = Path(where).expanduser()
    try:
        return path, path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([f"supply.admission_policy: cannot read {path}: {e}"]) from None


def build_server(settings: Settings, *, policy: str | None = None, listen: str | None = None, require: bool = False):
    """The admission endpoint as the settings say, its policy checked and its key loaded (not started)."""
    from query.supply import signer  # noqa: PLC0415 - aiohttp and the gate only here
    from query.supply.admission import AdmissionApp, AdmissionServer, gate_decider  # noqa: PLC0415
    from query.supply.policy import parse_policy  # noqa: PLC0415

    path, text = _policy_text(settings, policy)
    parsed = parse_policy(text, source=str(path))
    key = signer.load_key(settings)  # a missing key stops it here, not at the first review
    tls = tls_context(settings.supply.tls_cert, settings.supply.tls_key, keys="supply.tls_cert / supply.tls_key")
    decide = gate_decider(
        settings, resolve_postgres_dsn(settings), text, role=AUDITOR_ROLE, source=str(path), signer=key
    )
    app = AdmissionApp(decide, require_annotation=require or parsed.require_annotation)
    return AdmissionServer(app, listen=listen or settings.supply.admission_listen, tls=tls)


def run_serve(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    if args.policy:
        settings = dataclasses.replace(
            settings, supply=dataclasses.replace(settings.supply, admission_policy=args.policy)
        )
    server = build_server(settings, listen=args.listen, require=args.require_annotation)
    return serve_until_signalled(
        server, f"admission webhook listening on {server.url} (policy {settings.supply.admission_policy})"
    )
