"""The synthetic ML history the query benchmark measures on: teams registering sharded datasets, pipeline
steps deriving datasets from datasets, training runs, deployments and prediction batches, in log order."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ledger.core.keyring import KEY_REGISTERED, KeyRegistration
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain
from ledger.core.vocab import (
    deploy_activity_id,
    deployment_id,
    git_id,
    host_id,
    person_id,
    predict_batch_id,
    run_id,
    service_id,
)
from query._mapping import RELATION_ENDS

PEOPLE, HOSTS, SERVERS, HUBS = 50, 20, 10, 10
MAX_CHAIN = 8
T0 = 1_704_067_200  # 2024-01-01T00:00:00Z: entry k happens T0 + k seconds


def stamp(seq: int) -> str:
    """Entry ``seq``'s time, RFC 3339 to the second."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(T0 + seq))


@dataclass(frozen=True, slots=True, kw_only=True)
class Item:
    """One log entry of the synthetic history: a PROV document of one of the agents' kinds."""

    seq: int
    kind: str
    producer: str
    doc: dict[str, Any]
    data: dict[str, Any] | None = None


@dataclass(slots=True)
class Workload:
    """An ML organisation's history in log order, until ``edges`` edges and ``predictions`` predictions."""

    edges: int
    predictions: int
    batch_rows: int
    seed: int
    rng: random.Random = field(init=False)
    made_edges: int = 0
    seq: int = 0
    batches: int = 0
    raw: list[str] = field(default_factory=list)
    derived: list[tuple[str, int, str]] = field(default_factory=list)
    """(dataset, chain depth, the run that made it)"""
    models: list[str] = field(default_factory=list)
    commits: list[str] = field(default_factory=list)
    deployments: list[tuple[str, str]] = field(default_factory=list)
    keys: dict[str, Ed25519Signer] = field(default_factory=dict)
    """producer id -> its key"""

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.keys = {p: Ed25519Signer.generate() for p in _producers()}

    # -- helpers --
    def _hex(self, bits: int = 256) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    def _uuid(self) -> str:
        h = self._hex(128)
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:]}"

    def _recent(self, pool: list, window: int = 200) -> Any:
        return pool[-self.rng.randint(1, min(len(pool), window))]

    def _item(self, kind: str, producer: str, doc: dict, data: dict | None = None) -> Item:
        self.made_edges += sum(len(doc[r]) for r in RELATION_ENDS if r in doc)
        item = Item(seq=self.seq, kind=kind, producer=producer, doc=doc, data=data)
        self.seq += 1
        return item

    # -- the history --
    def __iter__(self) -> Iterator[Item]:
        admin = ProducerChain("admin/bench", Ed25519Signer.generate())
        for producer, key in self.keys.items():
            yield self._registration(admin, producer, key)
        steps: tuple[tuple[Callable[[], Iterator[Item]], float], ...] = (
            (self._raw_dataset, 1.0),
            (self._pipeline_step, 4.0),
            (self._training, 3.0),
            (self._deployment, 0.6),
        )
        makers, weights = zip(*steps, strict=True)
        while self.made_edges < self.edges or self.batches * self.batch_rows < self.predictions:
            owed = self.batches * self.batch_rows < self.predictions
            if (
                owed
                and self.deployments
                and self.batches * self.batch_rows * self.edges <= self.predictions * self.made_edges
            ):
                yield self._batch()
                continue
            if self.made_edges >= self.edges:  # predictions still owed, but nothing deployed yet
                yield from self._deployment()
                continue
            yield from self.rng.choices(makers, weights)[0]()

    def _registration(self, admin: ProducerChain, producer: str, key: Ed25519Signer) -> Item:
        name = producer.split("@")[0]
        reg = KeyRegistration(
            keyid=key.keyid,
            public_key=key.public_key,
            role="producer",
            identity={"type": "service", "name": name},
            kinds=("*",),
            producers=(producer,),
        )
        return self._item(KEY_REGISTERED, admin.producer_id, {"agent": {service_id(name): {}}}, reg.to_data())

    def _person(self) -> str:
        return person_id(f"user{self.rng.randrange(PEOPLE)}@example.com")

    def _raw_dataset(self) -> Iterator[Item]:
        ds, n = "sha256:" + self._hex(), len(self.raw)
        shards = {
            "sha256:" + self._hex(): {"provault:bytes": self.rng.randrange(1 << 20, 1 << 30)}
            for _ in range(self.rng.randint(4, 24))
        }
        doc = {
            "entity": {
                ds: {"prov:type": "provault:Dataset", "prov:label": f"raw-{n}", "provault:uri": f"s3://lake/raw/{n}/"},
                **shards,
            },
            "wasAttributedTo": {"_:a1": {"prov:entity": ds, "prov:agent": self._person()}},
            "hadMember": {f"_:m{j}": {"prov:collection": ds, "prov:entity": s} for j, s in enumerate(shards)},
        }
        self.raw.append(ds)
        yield self._item("dataset.registered", "registrar@data-1", doc)

    def _dataset_input(self, derived_share: float) -> tuple[str, int, str | None]:
        r = self.rng.random()
        if r < 0.15:
            return self.raw[self.rng.randrange(min(HUBS, len(self.raw)))], 0, None
        if self.derived and r < 0.15 + derived_share:
            ds, depth, run = self._recent(self.derived)
            if depth < MAX_CHAIN:
                return ds, depth, run
        return self._recent(self.raw), 0, None

    def _run_start(self, run: str, host: str, inputs: list[str], informant: str | None) -> dict:
        doc: dict[str, Any] = {
            "activity": {run: {"prov:startTime": stamp(self.seq), "provault:name": f"step-{self.seq}"}},
            "used": {f"_:u{j}": {"prov:activity": run, "prov:entity": e} for j, e in enumerate(inputs)},
            "wasAssociatedWith": {
                "_:w1": {"prov:activity": run, "prov:agent": self._person()},
                "_:w2": {"prov:activity": run, "prov:agent": host},
            },
        }
        if informant:
            doc["wasInformedBy"] = {"_:i1": {"prov:informed": run, "prov:informant": informant}}
        return doc

    def _pipeline_step(self) -> Iterator[Item]:
        if not self.raw:
            yield from self._raw_dataset()
            return
        parents = {self._dataset_input(0.6) for _ in range(1 if self.rng.random() < 0.8 else 2)}
        run, out, h = run_id(self._uuid()), "sha256:" + self._hex(), self.rng.randrange(HOSTS)
        depth = 1 + max(d for _, d, _ in parents)
        informant = next((r for _, _, r in parents if r), None)
        start = self._run_start(run, host_id(f"gpu-{h:02d}"), sorted(p for p, _, _ in parents), informant)
        yield self._item("run.started", f"trainer@gpu-{h:02d}", start)
        doc = {
            "activity": {run: {"prov:endTime": stamp(self.seq)}},
            "entity": {out: {"prov:type": "provault:Dataset", "prov:label": f"derived-{len(self.derived)}"}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": out, "prov:activity": run, "prov:time": stamp(self.seq)}},
            "wasDerivedFrom": {
                f"_:d{j}": {"prov:generatedEntity": out, "prov:usedEntity": p, "prov:activity": run}
                for j, (p, _, _) in enumerate(sorted(parents))
            },
        }
        self.derived.append((out, depth, run))
        yield self._item("run.completed", f"trainer@gpu-{h:02d}", doc)

    def _training(self) -> Iterator[Item]:
        if not self.raw:
            yield from self._raw_dataset()
            return
        data = sorted({self._dataset_input(0.8)[0] for _ in range(self.rng.randint(1, 3))})
        if not self.commits or self.rng.random() < 0.3:
            self.commits.append(git_id(self._hex(160)))
        base = self._recent(self.models, 50) if self.models and self.rng.random() < 0.15 else None
        run, model, h = run_id(self._uuid()), "sha256:" + self._hex(), self.rng.randrange(HOSTS)
        producer, inputs = f"trainer@gpu-{h:02d}", [*data, self._recent(self.commits, 20), *([base] if base else [])]
        yield self._item("run.started", producer, self._run_start(run, host_id(f"gpu-{h:02d}"), inputs, None))
        sources = [*data, *([base] if base else [])]
        done = {
            "activity": {run: {"prov:endTime": stamp(self.seq), "provault:metrics": '{"f1": 0.9}'}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": model, "prov:activity": run, "prov:time": stamp(self.seq)}},
            "wasDerivedFrom": {
                f"_:d{j}": {"prov:generatedEntity": model, "prov:usedEntity": s, "prov:activity": run}
                for j, s in enumerate(sources)
            },
        }
        yield self._item("run.completed", producer, done)
        reg = {
            "entity": {
                model: {
                    "prov:type": "provault:Model",
                    "prov:label": f"model-{len(self.models)}",
                    "provault:version": "1",
                }
            },
            "wasGeneratedBy": {"_:g1": {"prov:entity": model, "prov:activity": run}},
            "wasAttributedTo": {"_:a1": {"prov:entity": model, "prov:agent": self._person()}},
        }
        self.models.append(model)
        yield self._item("model.registered", producer, reg)

    def _deployment(self) -> Iterator[Item]:
        if not self.models:
            yield from self._training()
            return
        model, u = self._recent(self.models, 50), self._uuid()
        deploy, deployment = deploy_activity_id(u), deployment_id(f"svc-{len(self.deployments) % 40}", u)
        doc = {
            "activity": {deploy: {"prov:startTime": stamp(self.seq)}},
            "entity": {
                deployment: {"prov:type": "provault:Deployment", "prov:label": f"svc-{len(self.deployments) % 40}"}
            },
            "used": {"_:u1": {"prov:activity": deploy, "prov:entity": model}},
            "wasGeneratedBy": {"_:g1": {"prov:entity": deployment, "prov:activity": deploy}},
            "wasDerivedFrom": {"_:d1": {"prov:generatedEntity": deployment, "prov:usedEntity": model}},
            "wasAssociatedWith": {
                "_:w1": {"prov:activity": deploy, "prov:agent": self._person()},
                "_:w2": {"prov:activity": deploy, "prov:agent": self._person(), "prov:role": "provault:approver"},
            },
        }
        self.deployments.append((deployment, model))
        yield self._item("model.deployed", "deployer@ci", doc)

    def _batch(self) -> Item:
        deployment, model = self._recent(self.deployments, 20)
        batch, s, b, when = predict_batch_id(self._uuid()), self.rng.randrange(SERVERS), self.batches, stamp(self.seq)
        doc = {
            "activity": {batch: {"prov:startTime": when, "prov:endTime": when}},
            "used": {
                "_:u1": {"prov:activity": batch, "prov:entity": deployment},
                "_:u2": {"prov:activity": batch, "prov:entity": model},
            },
            "wasAssociatedWith": {"_:w1": {"prov:activity": batch, "prov:agent": service_id(f"serving-{s}")}},
        }
        row_time = when[:-1] + ".000000Z"  # format_time's spelling, so rows compare equal with the projector's
        rows = [
            [f"req-{b}-{j}", row_time, f"sha256:{b * self.batch_rows + j:064x}", "pos" if j & 1 else "neg"]
            for j in range(self.batch_rows)
        ]
        self.batches += 1
        data = {"deployment": deployment, "model": model, "columns": ["id", "time", "input", "output"], "rows": rows}
        return self._item("predictions.logged", f"server@serving-{s}", doc, data)

    def prediction_ids(self, n: int) -> list[str]:
        """``n`` random prediction ids (raw, as a client would pass them)."""
        return [f"req-{self.rng.randrange(self.batches)}-{self.rng.randrange(self.batch_rows)}" for _ in range(n)]


def _producers() -> list[str]:
    return [
        "registrar@data-1",
        "deployer@ci",
        *(f"trainer@gpu-{h:02d}" for h in range(HOSTS)),
        *(f"server@serving-{s}" for s in range(SERVERS)),
    ]
