"""Query benchmark: traceback latency, impact cost, inclusion proofs, export and projector rebuild rates.

    python -m bench.query [--predictions 100000] [--edges 1000000] [--leaves 1000000] [--full]
                          [--requests 300] [--small 0.1] [--batch-rows 100] [--rebuild-events 6000] [--json]

``--full`` is the issue's scale: 1M predictions, 10M edges, 10M Merkle leaves
(expect tens of minutes and ~10 GB of disk).  The defaults are a tenth of it.

The graph is **generated directly, not ingested** (``bench.ingest`` measures
ingest): a synthetic ML history -- teams registering sharded datasets,
pipeline steps deriving datasets from datasets (chains up to 8 deep),
training runs (some fine-tuning earlier models), deployments, and
prediction batches -- is written as PROV documents of the kinds the agents
emit, mapped to rows by a fast mapper that is checked against the
projector's own ``query._mapping.map_event`` on a sample of entries, and
bulk-COPYed as superuser into ``prov.entries``, ``prov.nodes``,
``prov.node_versions``, ``prov.edges``, ``prov.predictions`` and
``prov.position`` (foreign-key triggers off during the load, secondary
indexes built after it, then VACUUM ANALYZE).  The Merkle tree is random
leaf hashes folded by ``ledger.core.frontier.append_leaves`` in chunks and
COPYed into ``ledger.merkle_nodes`` / ``ledger.log_state``;
``ledger.entries`` stays empty.  Hub nodes are real: ten popular datasets,
and a fixed staff (50 people, 20 hosts, 10 servers) whatever the scale, so
they accumulate mentions as the ledger grows.

Two databases are built in the same run, one at ``--small`` (a tenth) of
the size and one at the full size, on one embedded PostgreSQL (fsync on)
that the benchmark starts and stops.  Each figure comes with a baseline
measured in the same run:

a. **traceback** -- ``QueryService.Trace`` upstream from random prediction
   ids over a real gRPC channel to a ``QueryGrpcService`` on 127.0.0.1:0 per
   database, requests to the two alternating (p50 / p99; target p99 <= 10 ms
   and flat between the scales).  Baseline: a gRPC health check round trip.
b. **impact** -- ``query.traverse.trace`` downstream from datasets (the
   hubs, random raw and random derived ones): time per node returned; and
   every page of the largest hub's answer through gRPC.
c. **inclusion proofs** -- ``ledger.store.log.inclusion_proof`` of random
   leaves at both leaf counts.  Baseline: a one-row primary-key SELECT of a
   Merkle node.
d. **export** -- N-Triples of the whole small graph through
   ``query.export.export_stream``.  Baseline: ``COPY prov.edges TO STDOUT``.
e. **rebuild** -- real signed events (``tests/query/provstory.py``'s
   shapes) appended with ``ledger.store.log.append_batch``, then
   ``query.projector.rebuild``.  Baseline: ``ledger.store.entries.iter_entries``
   over the same entries.

Nothing here is a pass/fail test.

The modules: ``workload`` (the synthetic history), ``rows`` (its rows, as the projector would write
them), ``load`` (bulk loading into a fresh database), ``scenarios`` (the measured figures a to e),
``report`` (the text report) and ``cli`` (options and the run; ``python -m bench.query``).
"""
