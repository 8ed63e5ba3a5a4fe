"""``provault import mlflow`` (backfill) and ``provault mlflow webhook serve`` (the registry webhook receiver)."""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from ledger.config import Settings, settings_from
from ledger.core.errors import ProvaultError

from ..runtime import agent_from_settings, default_producer_id


class ImportFailed(ProvaultError):
    reason = "import_failed"


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    imp = sub.add_parser(
        "import", help="record what another tool already holds (MLflow runs and registry history)"
    ).add_subparsers(dest="import_command", metavar="SOURCE", required=True)
    p = imp.add_parser(
        "mlflow",
        parents=[common],
        help="record an MLflow tracking server's finished runs, logged models and registry, idempotently",
        description=(
            "Read the tracking server at --tracking-uri (any URI MLflow takes: sqlite:///mlflow.db, "
            "http://mlflow:5000, file:///mlruns) and record every finished run (params, metrics, tags, input "
            "datasets, author, code commit), its logged models (their artifacts digested), every registered "
            "version and each version's current aliases and stage. What an earlier import, the store plugin or "
            "the webhook receiver on this data directory recorded is skipped, so a second import adds nothing. "
            "Runs still running are left for a later import. See docs/mlflow.md."
        ),
    )
    p.add_argument("--tracking-uri", required=True, metavar="URI", help="the MLflow tracking URI to read")
    p.add_argument("--experiment", metavar="NAME", help="only this experiment's runs and models (default: all)")
    p.add_argument("--registry-uri", metavar="URI", help="the model registry URI (default: the tracking URI)")
    p.add_argument("--no-registry", action="store_true", help="leave the model registry out")
    p.set_defaults(run=run_import)

    ml = sub.add_parser("mlflow", help="MLflow integration: the registry webhook receiver").add_subparsers(
        dest="mlflow_command", metavar="ACTION", required=True
    )
    hooks = ml.add_parser("webhook", help="MLflow registry webhooks").add_subparsers(
        dest="webhook_command", metavar="ACTION", required=True
    )
    p = hooks.add_parser(
        "serve",
        parents=[common],
        help="receive MLflow registry webhooks (POST /mlflow/webhook) until Ctrl-C or SIGTERM",
        description=(
            "Take MLflow's model registry webhooks (model_version.created, model_version_alias.created / .deleted) "
            "and record them as model.registered, model.deployed and model.undeployed events signed by the "
            "receiver's key (mlflow.key_file). Every delivery must be signed with the shared secret "
            "(X-MLflow-Signature) and fresh (X-MLflow-Timestamp within mlflow.replay_window_s); a delivery id is "
            "recorded once. See docs/mlflow.md."
        ),
    )
    p.add_argument("--listen", metavar="HOST:PORT", help="where to listen (default: mlflow.webhook_listen)")
    p.add_argument(
        "--secret-file", metavar="FILE", help="the webhook secret's file (default: mlflow.webhook_secret_file)"
    )
    p.set_defaults(run=run_webhook)


# --- import ----------------------------------------------------------------------------------


def importer_settings(settings: Settings) -> Settings:
    """The import's producer: the agent's id with ``/mlflow-import``, its own spool, the agent's key."""
    pid = f"{settings.agent.producer_id or default_producer_id()}/mlflow-import"
    return dataclasses.replace(settings, agent=dataclasses.replace(settings.agent, producer_id=pid, spool_dir=None))


def run_import(args: argparse.Namespace) -> int:
    try:
        import mlflow  # noqa: PLC0415, F401 - the optional extra; a clear error when it is missing
    except ImportError:
        raise ImportFailed(
            "MLflow is not installed", hint="install the integration: pip install 'provault[mlflow]'"
        ) from None
    from mlflow import MlflowClient  # noqa: PLC0415

    from ._facts import clean_uri, inner_uri  # noqa: PLC0415 - with MLflow only
    from ._marks import Marks  # noqa: PLC0415
    from .importer import Importer  # noqa: PLC0415

    settings = importer_settings(settings_from(args))
    tracking = inner_uri(args.tracking_uri)
    for uri in (tracking, inner_uri(args.registry_uri)):
        missing = _missing_sqlite(uri)
        if missing is not None:
            raise ImportFailed(f"no MLflow database at {missing} (from {uri}): MLflow would create an empty one")
    started = time.monotonic()
    agent = agent_from_settings(settings)  # the producer key is checked before MLflow is touched
    client = MlflowClient(tracking_uri=tracking, registry_uri=inner_uri(args.registry_uri) or tracking)
    marks = Marks(settings.data_dir / "producers")
    importer = Importer(client, marks, agent.emit, tracking=tracking)
    try:
        try:
            experiments = importer.experiments(args.experiment)
        except LookupError as e:
            raise ImportFailed(str(e)) from None
        except Exception as e:
            raise ImportFailed(
                f"cannot read the tracking server {clean_uri(tracking)}: {type(e).__name__}: {e}"
            ) from None
        for experiment in experiments:
            importer.import_experiment(experiment)
        if not args.no_registry:
            importer.import_registry()
        agent.spool.sync()
    finally:
        marks.close()
        delivered = agent.close(timeout=settings.agent.publish_timeout_s)
    r = importer.report
    pending = (
        "" if delivered else f"; {agent.pending()} event(s) still spooled, sent by the next agent with this producer id"
    )
    print(
        f"recorded {r.runs} run(s), {r.models} logged model(s), {r.versions} version(s), {r.aliases} alias(es), "
        f"{r.stages} stage(s) in {time.monotonic() - started:.1f} s; {r.skipped} already recorded, "
        f"{r.unfinished} run(s) still running{pending}",
        flush=True,
    )
    for problem in r.problems:
        print(f"warning: {problem}", flush=True)
    return 0


def _missing_sqlite(uri: str | None) -> str | None:
    """The path of a ``sqlite:///`` URI's database when that file does not exist."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = uri[len("sqlite:///") :].split("?", 1)[0]
    return None if path == ":memory:" or Path(path).exists() else path


# --- the webhook receiver ----------------------------------------------------------------------


def run_webhook(args: argparse.Namespace) -> int:
    from .webhook import (  # noqa: PLC0415 - aiohttp only here
        build_server,
        load_key,
        producer_id,
        read_secret,
        serve_until_signalled,
    )

    settings = settings_from(args)
    if args.secret_file:
        settings = dataclasses.replace(
            settings, mlflow=dataclasses.replace(settings.mlflow, webhook_secret_file=args.secret_file)
        )
    read_secret(settings)  # the secret first: without it nothing else matters
    server = build_server(settings, signer=load_key(settings), listen=args.listen)
    banner = f"mlflow webhook receiver listening on {server.url} (producer {producer_id(settings)})"
    return serve_until_signalled(server, banner)
