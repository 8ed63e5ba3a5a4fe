"""``provault demo``: the whole product in under a minute, on a real stack.

:func:`run_demo` starts the stack exactly as ``provault up`` builds it, tells
a story in ten numbered steps -- each in plain words and with the commands a
user would type to do it themselves -- and stops the stack again, leaving the
data:

1. start the stack (refused while a ``provault up`` holds the data directory);
2. keys for three people (alice, bob, and carol, the ML lead, registered with
   the role ``ml-lead``) and two services (pipeline, serving), registered by
   the admin key, under ``<data-dir>/demo/keys``;
3. the raw breast-cancer dataset from scikit-learn (v1) and a pipeline step
   that standardises it (v2, derived from v1);
4. four training runs by alice and bob, each with parameters, code commit,
   environment, held-out accuracy and model file;
5. the best model registered, approved by carol with her own key, and deployed;
6. a few hundred predictions served through ``LoggedModel``;
7. bounded waits until every event is committed, checkpointed and projected;
8. the release: ``provault gate`` decides on the model from its verified evidence
   and records the decision; ``provault attest`` writes an in-toto attestation,
   verified offline;
9. the incident: the trace of one prediction, the impact of v1, carol's
   quarantine of v1 and the gate now refusing the model, the full
   ``provault verify`` audit, and an audit bundle verified offline;
10. where the data is and what to run next.

Run twice on one data directory, the demo reuses its keys (registered once)
and adds a new round of runs, models and predictions to the same ledger.
Files live in ``<data-dir>/demo`` (see :class:`~query.demo._story.Layout`);
the training code is ``query/demo/_train.py``, committed into a git
repository there when ``git`` is available.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

from ledger.config import Settings
from ledger.core.errors import ProvaultError
from ledger.stack import Stack

from ._cast import SHOWN_PREDICTION
from ._narrate import Narrator
from ._stack import DemoFailed, demo_settings, refuse_if_up
from ._story import Demo

CLOSE_TIMEOUT_S = 5.0
log = logging.getLogger("provault.demo")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _sigterm_interrupts() -> Iterator[None]:
    """SIGTERM unwinds like Ctrl-C, so the stack is stopped on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(
    settings: Settings, *, config: str | None = None, out: TextIO | None = None, started: float | None = None
) -> int:
    """Tell the story on ``settings.data_dir``; 0 on success, raises :class:`DemoFailed` (or another error) if not.

    ``config`` is passed on to the ``provault`` commands the demo runs;
    ``started`` (a ``time.monotonic()`` value) is when the user's command
    started, for the time the last step reports.  Whatever happens, every
    process and thread the demo started is stopped before it returns or
    raises.
    """
    settings = demo_settings(settings)
    say = Narrator(out or sys.stdout)
    demo = Demo(settings, out=say, config=config, started=started)
    say.title("provault demo: one model's provenance, from raw data to a production prediction, on a real ledger.")
    say.title(
        f"Data directory {settings.data_dir}; the demo's own files go to {demo.paths.root}, and the commands "
        "shown are meant to be run there (step 10 says how)."
    )
    refuse_if_up(settings)  # before the try: stopping a stack that never started removes stack.json
    for path in (demo.paths.keys, demo.paths.data, demo.paths.models):
        path.mkdir(parents=True, exist_ok=True)
    stack = Stack(settings)
    with _sigterm_interrupts():
        try:
            demo.start(stack)
            demo.keys()
            v1 = demo.datasets()[0]
            best, deployment = demo.deploy(demo.train())
            prediction = demo.serve(best, deployment)[SHOWN_PREDICTION - 1]
            demo.settle(stack)
            demo.release(best.model_id)
            demo.incident(prediction, v1, best.model_id, stack)
        except (ProvaultError, KeyboardInterrupt):
            raise
        except Exception as e:
            number, text = say.current
            log.exception("provault demo: step %d failed", number)
            hint = f"the traceback is above; the stack was stopped, the data kept in {settings.data_dir}"
            raise DemoFailed(f"step {number} failed ({text.split(':')[0]}): {type(e).__name__}: {e}", hint=hint) from e
        finally:
            for agent in demo.agents.values():
                agent.close(timeout=CLOSE_TIMEOUT_S)
            stack.stop()
    demo.explore(prediction)
    return 0


__all__ = ["DemoFailed", "run_demo"]
