"""The baseline: the same workload in Google ML Metadata on SQLite, measured the same way.

Run by ``bench.lineage`` inside a virtualenv of its own (ml-metadata pins a
protobuf that provault's grpcio does not share), as
``python mlmd_side.py SHAPE.json WORKDIR``; prints one JSON object.  Only the
standard library and ``ml_metadata`` are imported.

The mapping is MLMD's usual one: datasets, code, feature sets, models and
predictions are artifacts; preprocessing runs, training runs and deployments
are executions, each stored with its input and output events in one
``put_execution`` call (as TFX does); authors and projects are contexts the
executions are associated with.  A trace is a breadth-first walk over the
events (``get_events_by_artifact_ids`` / ``get_events_by_execution_ids``)
that then reads every node it reached and the contexts of its executions:
what provault's Trace returns.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time

from ml_metadata import errors, metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

INPUT, OUTPUT = pb.Event.INPUT, pb.Event.OUTPUT


def _store(path: str) -> metadata_store.MetadataStore:
    config = pb.ConnectionConfig()
    config.sqlite.filename_uri = path
    config.sqlite.connection_mode = pb.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    return metadata_store.MetadataStore(config)


def _types(store):
    art = {n: store.put_artifact_type(pb.ArtifactType(name=n)) for n in ("Dataset", "Code", "Model", "Prediction")}
    exe = {n: store.put_execution_type(pb.ExecutionType(name=n)) for n in ("Preprocess", "Train", "Deploy")}
    ctx = {n: store.put_context_type(pb.ContextType(name=n)) for n in ("Author", "Project")}
    return art, exe, ctx


def _artifact(type_id: int, name: str) -> pb.Artifact:
    return pb.Artifact(type_id=type_id, name=name, uri=f"file:///bench/{name}", state=pb.Artifact.LIVE)


def _run(store, type_id, name, inputs, outputs, contexts):
    """One execution with its events in one call; the new output artifacts' ids."""
    ex = pb.Execution(type_id=type_id, name=name, last_known_state=pb.Execution.COMPLETE)
    pairs = [(pb.Artifact(id=a), pb.Event(type=INPUT)) for a in inputs]
    pairs += [(art, pb.Event(type=OUTPUT)) for art in outputs]
    _, artifact_ids, _ = store.put_execution(ex, pairs, contexts)
    return artifact_ids[len(inputs) :]


def load(shape: dict, store) -> dict:
    art, exe, ctx = _types(store)
    raw = store.put_artifacts([_artifact(art["Dataset"], f"raw-{i}") for i in range(shape["raw"])])
    code = store.put_artifacts([_artifact(art["Code"], f"code-{i}") for i in range(shape["code"])])
    authors = [pb.Context(type_id=ctx["Author"], name=f"author-{i}") for i in range(shape["authors"])]
    projects = [pb.Context(type_id=ctx["Project"], name=f"project-{i}") for i in range(shape["projects"])]
    for c, cid in zip(authors + projects, store.put_contexts(authors + projects), strict=True):
        c.id = cid
    feats = []
    for i, (a, b) in enumerate(shape["prep"]):
        out = _run(
            store,
            exe["Preprocess"],
            f"prep-{i}",
            [raw[a], raw[b]],
            [_artifact(art["Dataset"], f"features-{i}")],
            [authors[i % len(authors)]],
        )
        feats.extend(out)
    models = []
    for j, (fs, c, author, project) in enumerate(shape["train"]):
        out = _run(
            store,
            exe["Train"],
            f"train-{j}",
            [feats[f] for f in fs] + [code[c]],
            [_artifact(art["Model"], f"model-{j}")],
            [authors[author], projects[project]],
        )
        models.extend(out)
    predictions = []
    for d, m in enumerate(shape["deploy"]):
        outs = [_artifact(art["Prediction"], f"req-{d}-{k}") for k in range(shape["predictions_per_deployment"])]
        predictions.extend(_run(store, exe["Deploy"], f"service-{d}", [models[m]], outs, []))
    return {"raw": raw, "predictions": predictions}


def walk(store, start: int, upstream: bool) -> int:
    """Nodes reached from artifact ``start``, read as the answer would carry them; their count."""
    arts, execs, frontier = {start}, set(), [start]
    into, out_of = (OUTPUT, INPUT) if upstream else (INPUT, OUTPUT)
    while frontier:
        ex = {e.execution_id for e in store.get_events_by_artifact_ids(frontier) if e.type == into} - execs
        if not ex:
            break
        execs |= ex
        nxt = {e.artifact_id for e in store.get_events_by_execution_ids(list(ex)) if e.type == out_of} - arts
        arts |= nxt
        frontier = list(nxt)
    found = store.get_artifacts_by_id(list(arts)) + store.get_executions_by_id(list(execs))
    contexts = {c.id for e in execs for c in _contexts(store, e)}
    return len(found) + len(contexts)


def _contexts(store, execution_id: int) -> list:
    try:
        return store.get_contexts_by_execution(execution_id)
    except errors.NotFoundError:  # a deployment belongs to no author or project
        return []


def _pct(xs, q):
    return sorted(xs)[min(int(len(xs) * q), len(xs) - 1)]


def main() -> None:
    shape, work = json.load(open(sys.argv[1], encoding="utf-8")), sys.argv[2]
    path = os.path.join(work, "mlmd.sqlite")
    store = _store(path)
    t0 = time.perf_counter()
    ids = load(shape, store)
    loaded = time.perf_counter() - t0
    rng = random.Random(shape["scale"])
    up, down, n_up, n_down = [], [], [], []
    for i in range(320):
        pid, raw = rng.choice(ids["predictions"]), rng.choice(ids["raw"])
        t0 = time.perf_counter()
        a = walk(store, pid, upstream=True)
        t1 = time.perf_counter()
        b = walk(store, raw, upstream=False)
        t2 = time.perf_counter()
        if i >= 20:
            up.append(t1 - t0)
            down.append(t2 - t1)
            n_up.append(a)
            n_down.append(b)
    print(
        json.dumps(
            {
                "load_s": loaded,
                "db_bytes": os.path.getsize(path),
                "trace_p50_ms": _pct(up, 0.5) * 1e3,
                "trace_p99_ms": _pct(up, 0.99) * 1e3,
                "trace_nodes": sum(n_up) / len(n_up),
                "impact_p50_ms": _pct(down, 0.5) * 1e3,
                "impact_p99_ms": _pct(down, 0.99) * 1e3,
                "impact_nodes": sum(n_down) / len(n_down),
            }
        )
    )


if __name__ == "__main__":
    main()
