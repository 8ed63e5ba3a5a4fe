"""Lineage benchmark: provault and Google ML Metadata on one MLMD-shaped workload, side by side.

    python -m bench.lineage [--scales 1,10] [--no-mlmd] [--mlmd-venv DIR] [--json]

The workload (``shape``) is the one ML metadata stores are judged on: raw
datasets, code, authors and projects; preprocessing runs turning raw data
into feature sets; training runs turning feature sets and code into models;
deployments serving the models and the predictions they made.  provault
loads it the way users do (``provault_side``: the agents SDK through NATS,
the ledger and the projector of a real ``provault up`` stack) and is
measured over gRPC; the baseline is ML Metadata 1.17.1 on SQLite
(``mlmd_side``, in a virtualenv of its own), loaded and walked in the same
run on the same machine.  Reported per scale: upstream trace from a random
prediction and downstream impact from a random raw dataset (p50 / p99 and
answer sizes), database size (provault's split into the ledger's envelopes
and Merkle tree, and the projection), load time, and the ratios.

Nothing here is a pass/fail test.
"""
