"""What the MLflow integration costs: the plugin on an autologged training run, and the import's rate.

::

    python -m bench.mlflow [--runs R] [--rows N] [--import-runs M] [--json]

(a) R autologged scikit-learn training runs (a logistic regression on N rows,
the model logged) through ``provault+sqlite:///`` and, alternating, through
plain ``sqlite:///`` (the baseline, the same process and data): median and p90
wall time of each, and the overhead ratio.  The plugin records with an agent
whose ledger is out of reach, so every event is signed and spooled and none is
waited for: what MLflow's caller pays.  Also: the time after each run's end
until the recorder had spooled everything (digesting the model included), off
MLflow's call path.

(b) M finished runs (params, metrics, tags) written straight into a SQLite
tracking store, then ``provault import mlflow``'s importer over them (runs/s,
signed and spooled), against MLflow's own ``search_runs`` reading the same
runs (the import cannot be faster than reading them).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench import run_in_scratch


def _agent(root: Path, pid: str):
    from agents.runtime import agent_from_settings  # noqa: PLC0415 - heavy imports after argument parsing
    from ledger.config import NatsSettings, Settings  # noqa: PLC0415
    from ledger.core.keys import Ed25519Signer  # noqa: PLC0415

    settings = Settings(data_dir=root / "data", nats=NatsSettings(url="nats://127.0.0.1:9"))
    return agent_from_settings(settings, producer_id=pid, signer=Ed25519Signer.generate())


def _quiet() -> None:
    import logging  # noqa: PLC0415
    import warnings  # noqa: PLC0415

    warnings.filterwarnings("ignore")
    for name in ("mlflow", "provault.agent", "alembic"):
        logging.getLogger(name).setLevel(logging.ERROR)


def bench_plugin(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    import mlflow  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    from agents.mlflow import recorder as recording  # noqa: PLC0415
    from agents.mlflow._marks import Marks  # noqa: PLC0415

    rng = np.random.default_rng(7)
    X = rng.normal(size=(args.rows, 20))
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int)
    agent = _agent(root, "bench@mlflow/plugin")
    rec = recording.Recorder(lambda: (agent, Marks(root / "marks")))
    recording.set_recorder(rec)
    uris = {"plain": f"sqlite:///{root / 'plain.db'}", "plugin": f"provault+sqlite:///{root / 'plugin.db'}"}
    for mode, uri in uris.items():
        mlflow.set_tracking_uri(uri)
        mlflow.set_experiment(experiment_id=mlflow.create_experiment(mode, artifact_location=(root / mode).as_uri()))
    mlflow.sklearn.autolog(silent=True, log_input_examples=False)
    times: dict[str, list[float]] = {"plain": [], "plugin": []}
    settle: list[float] = []

    def one(mode: str) -> None:
        mlflow.set_tracking_uri(uris[mode])
        mlflow.set_experiment(mode)
        started = time.perf_counter()
        with mlflow.start_run():
            LogisticRegression(max_iter=300).fit(X, y)
        times[mode].append(time.perf_counter() - started)
        if mode == "plugin":
            ended = time.perf_counter()
            rec.flush(120)
            settle.append(time.perf_counter() - ended)

    one("plain")  # warm-up: imports, schema creation, first autolog patching
    one("plugin")
    times, settle = {"plain": [], "plugin": []}, []
    for i in range(args.runs):
        for mode in ("plain", "plugin") if i % 2 == 0 else ("plugin", "plain"):
            one(mode)
    mlflow.sklearn.autolog(disable=True)
    rec.close(60)
    recorded = rec.stats.recorded
    agent.close(timeout=0.2)
    med = {m: statistics.median(t) for m, t in times.items()}
    p90 = {m: statistics.quantiles(t, n=10)[-1] if len(t) >= 2 else t[0] for m, t in times.items()}
    return {
        "runs_each": args.runs,
        "rows": args.rows,
        "median_s": med,
        "p90_s": p90,
        "overhead_ratio_median": med["plugin"] / med["plain"],
        "events_recorded": recorded,
        "recorder_settle_after_run_end_median_s": statistics.median(settle),
        "failures": rec.stats.failures,
    }


def _write_history(path: Path, runs: int) -> str:
    """``runs`` finished runs written through MLflow's own SQLite store (10 params, 5 metrics, 3 tags each)."""
    from mlflow.entities import Metric, Param, RunStatus, RunTag  # noqa: PLC0415
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore  # noqa: PLC0415

    uri = f"sqlite:///{path}"
    store = SqlAlchemyStore(uri, (path.parent / "artifacts").as_uri())
    exp = store.create_experiment("history")
    now = int(time.time() * 1000)
    for i in range(runs):
        run = store.create_run(exp, "ada", now + i, [RunTag("mlflow.user", "ada"), RunTag("team", "risk")], f"run-{i}")
        rid = run.info.run_id
        store.log_batch(
            rid,
            metrics=[Metric(f"m{k}", float(i + k), now + i, 0) for k in range(5)],
            params=[Param(f"p{k}", str(k * i)) for k in range(10)],
            tags=[RunTag("mlflow.source.git.commit", f"{i:040x}")],
        )
        store.update_run_info(rid, RunStatus.FINISHED, now + i + 1000, None)
    store.engine.dispose()
    return uri


def bench_import(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    from mlflow import MlflowClient  # noqa: PLC0415
    from mlflow.entities import ViewType  # noqa: PLC0415

    from agents.mlflow._marks import Marks  # noqa: PLC0415
    from agents.mlflow.importer import Importer  # noqa: PLC0415

    started = time.perf_counter()
    uri = _write_history(root / "history.db", args.import_runs)
    written_s = time.perf_counter() - started
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    exp = client.get_experiment_by_name("history")

    started, read, token = time.perf_counter(), 0, None
    while True:
        page = client.search_runs([exp.experiment_id], run_view_type=ViewType.ALL, max_results=1000, page_token=token)
        read += len(page)
        token = page.token
        if not token:
            break
    search_s = time.perf_counter() - started

    agent = _agent(root, "bench@mlflow/import")
    marks = Marks(root / "import-marks")
    importer = Importer(client, marks, agent.emit, tracking=uri)
    started = time.perf_counter()
    importer.import_experiment(exp)
    agent.spool.sync()
    import_s = time.perf_counter() - started
    again = Importer(client, marks, agent.emit, tracking=uri)
    started = time.perf_counter()
    again.import_experiment(exp)
    second_s = time.perf_counter() - started
    marks.close()
    agent.close(timeout=0.2)
    return {
        "runs": args.import_runs,
        "write_history_s": written_s,
        "search_runs_s": search_s,
        "search_runs_per_s": read / search_s,
        "import_s": import_s,
        "import_runs_per_s": importer.report.runs / import_s,
        "import_to_search_ratio": search_s / import_s,
        "second_import_s": second_s,
        "second_import_recorded": again.report.recorded,
        "second_import_skipped": again.report.skipped,
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    _quiet()
    return {"plugin": bench_plugin(args, root), "import": bench_import(args, root)}


def report(r: dict[str, Any]) -> None:
    p, i = r["plugin"], r["import"]
    print(f"(a) autologged LogisticRegression on {p['rows']} rows x 20, {p['runs_each']} runs each, alternating")
    print(
        f"    plain sqlite:           median {p['median_s']['plain'] * 1000:8.1f} ms  p90 {p['p90_s']['plain'] * 1000:8.1f} ms"
    )
    print(
        f"    provault+sqlite plugin: median {p['median_s']['plugin'] * 1000:8.1f} ms  p90 {p['p90_s']['plugin'] * 1000:8.1f} ms"
    )
    print(
        f"    overhead ratio (median): {p['overhead_ratio_median']:.3f}  ({(p['overhead_ratio_median'] - 1) * 100:+.1f} %)"
    )
    print(
        f"    {p['events_recorded']} events recorded, {p['failures']} failures; recorder done "
        f"{p['recorder_settle_after_run_end_median_s'] * 1000:.1f} ms (median) after each run's end, off MLflow's path"
    )
    print(f"(b) import of {i['runs']} finished runs (history written in {i['write_history_s']:.1f} s)")
    print(f"    MLflow search_runs alone: {i['search_runs_s']:6.2f} s  ({i['search_runs_per_s']:8.0f} runs/s)")
    print(f"    import (signed, spooled): {i['import_s']:6.2f} s  ({i['import_runs_per_s']:8.0f} runs/s)")
    print(f"    ratio import / search:    {i['import_to_search_ratio']:.2f}")
    print(
        f"    second import: {i['second_import_s']:.2f} s, {i['second_import_recorded']} recorded, "
        f"{i['second_import_skipped']} already recorded"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.mlflow", description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20, help="autologged runs per mode (default 20)")
    ap.add_argument("--rows", type=int, default=50_000, help="training rows per run (default 50,000)")
    ap.add_argument("--import-runs", type=int, default=10_000, help="finished runs the import reads (default 10,000)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    return run_in_scratch(args, "provault-bench-mlflow-", run, report)


if __name__ == "__main__":
    sys.exit(main())
