"""provault agents: record runs, pipelines, datasets, models and deployments from where they happen.

::

    import agents

    with agents.run("train-fraud", params={"C": 1.0}) as run:
        run.use("data/train.csv")
        ...
        run.metric("accuracy", acc)
        run.produce("model.pkl", kind="model")

Names are imported on first use, so ``import agents`` stays cheap in the
host program.  See ``docs/agents.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .assets import deploy_model, register_dataset, register_model
    from .pipeline import Step, step
    from .predictions import PredictionLogger
    from .runs import Artifact, Run, current_run, run
    from .runtime import Agent, agent_from_settings, default_agent

_EXPORTS = {
    "run": ".runs",
    "Run": ".runs",
    "Artifact": ".runs",
    "current_run": ".runs",
    "step": ".pipeline",
    "Step": ".pipeline",
    "register_dataset": ".assets",
    "register_model": ".assets",
    "deploy_model": ".assets",
    "Agent": ".runtime",
    "agent_from_settings": ".runtime",
    "default_agent": ".runtime",
    "PredictionLogger": ".predictions",
}

__all__ = [
    "Agent",
    "Artifact",
    "PredictionLogger",
    "Run",
    "Step",
    "agent_from_settings",
    "current_run",
    "default_agent",
    "deploy_model",
    "register_dataset",
    "register_model",
    "run",
    "step",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'agents' has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
