"""Who is in the demo's story and where it keeps its files: the actors, their keys' rights, the layout."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ._stack import DemoFailed

if TYPE_CHECKING:
    from agents.runs import Run

STEPS = 10
AUDITOR = "provault_auditor"
PREDICTIONS = 300
REQUEST_ROWS = 10
SHOWN_PREDICTION = 42
WAIT_S = 60.0
"""The longest the demo waits for the ledger at any one point."""
DEPLOYMENT = "breast-cancer-prod"
TARGET = "k8s://prod/breast-cancer"
MODEL_NAME = "breast-cancer-logreg"
APPROVAL_COMMENT = "held-out accuracy and the data card reviewed"
QUARANTINE_REASON = "mislabelled rows found in the raw export"


def release_policy(*, with_code: bool) -> str:
    """The release gate of the demo; code is required when the demo could record a commit (git is there)."""
    parts = ", ".join(f'"{p}"' for p in ("data", *(("code",) if with_code else ()), "environment", "params", "author"))
    return (
        "# The demo's release gate (docs/supply-chain.md, Policy)\n"
        "version = 1\n\n"
        f"[rules.provenance]\nrequire = [{parts}]\n\n"
        "[rules.signers]\n\n"
        '[rules.approvals]\ncount = 1\nrole = "ml-lead"\n\n'
        "[rules.quarantine]\n\n"
        '[[rules.metric]]\nname = "accuracy"\nmin = 0.9\n'
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class Actor:
    """A person or service with its own key, producer id and configuration file."""

    name: str
    identity: str
    kinds: str
    roles: str | None = None
    """Duties the admin registers with the key (``keys register --roles``): what gate policies count."""

    @property
    def producer(self) -> str:
        return f"{self.name}@demo"

    @property
    def who(self) -> str:
        return self.identity.partition(":")[2]


ALICE = Actor(name="alice", identity="person:alice@example.com", kinds="run.*,dataset.*,model.*")
BOB = Actor(name="bob", identity="person:bob@example.com", kinds="run.*,dataset.*,model.*")
PIPELINE = Actor(name="pipeline", identity="service:pipeline", kinds="run.*,dataset.*")
SERVING = Actor(name="serving", identity="service:serving", kinds="predictions.logged")
CAROL = Actor(name="carol", identity="person:carol@example.com", kinds="model.approved,quarantine.*", roles="ml-lead")
"""The ML lead: approves releases and quarantines bad data, with her own key."""
ACTORS = (ALICE, BOB, PIPELINE, SERVING, CAROL)
TRAINING = ((ALICE, 0.01), (ALICE, 0.1), (BOB, 0.5), (BOB, 10.0))
"""Who trains with which regularisation strength C."""


class Layout:
    """Where the demo keeps its files: ``<data-dir>/demo``."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "demo"
        self.keys, self.data, self.models, self.code = (self.root / n for n in ("keys", "data", "models", "code"))
        self.raw = self.data / "breast_cancer.csv"
        self.clean = self.data / "breast_cancer_clean.csv"

    def rel(self, path: Path) -> str:
        """A path as the printed commands name it: relative to the demo directory."""
        return os.path.relpath(path, self.root)


@dataclass(frozen=True, slots=True, kw_only=True)
class Trained:
    actor: Actor
    c: float
    run: Run
    accuracy: float
    path: Path
    model_id: str


def wait_until(check: Callable[[], bool], what: str, timeout: float = WAIT_S) -> float:
    """Poll ``check`` until it holds; the seconds it took.  Raises :class:`DemoFailed` after ``timeout``."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            raise DemoFailed(
                f"timed out after {timeout:.0f} s waiting for {what}",
                hint="the stack's services log to stderr; see above",
            )
        time.sleep(0.1)
    return time.monotonic() - start
