"""``provault demo``: the whole story on a real stack, in under a minute (see :mod:`query.demo`)."""

from __future__ import annotations

import argparse
import time

from ledger import logs
from ledger.config import LogSettings, settings_from


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="a one-minute tour: train, deploy, serve and trace a model on a real stack, then audit it",
        description=(
            "Start the stack as `provault up` does (embedded PostgreSQL and NATS in the data directory), then tell "
            "a story step by step, each step with the command to do it yourself: signing keys for two people and "
            "two services, a dataset and a pipeline step, four training runs, a deployment approved by a second "
            "person, a few hundred logged predictions, and the incident -- the trace of one prediction, the "
            "impact of the raw data, the full `provault verify` audit and an audit bundle verified offline. "
            "The stack is stopped at the end; the data stays (files under <data-dir>/demo). Running it again "
            "adds another round to the same ledger."
        ),
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    started = time.monotonic()
    from query.demo import run_demo  # noqa: PLC0415 - loads scikit-learn; keep `provault --help` fast

    settings = settings_from(args, dev_mode=True)
    if settings.log.level == LogSettings().level:  # a tour, not a server log: only warnings, unless asked
        logs.configure(settings.log.format, "warning")
    return run_demo(settings, config=args.config, started=started)
