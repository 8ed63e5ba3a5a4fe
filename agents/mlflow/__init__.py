"""MLflow integration: store plugins, a webhook receiver, an import and serving, recording into provault.

Put ``provault+`` in front of the tracking URI (``provault+sqlite:///mlflow.db``,
``provault+http://mlflow:5000``) and MLflow's runs, logged models and registry
changes are recorded as signed events while MLflow works as before
(:mod:`.stores`, :mod:`.recorder`).  ``provault mlflow webhook serve``
(:mod:`.webhook`) takes the registry webhooks of servers that cannot load the
plugin, ``provault import mlflow`` (:mod:`.importer`) records what a server
already holds, and :func:`agents.mlflow.serving.serve` loads a registered model
and logs its predictions.  The PROV shape is in :mod:`._mapping`; see
``docs/mlflow.md``.

Nothing here imports MLflow at import time but the modules that need it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["serve"]


def __getattr__(name: str) -> Any:
    if name == "serve":
        from .serving import serve  # noqa: PLC0415 - imports MLflow: only when asked for

        return serve
    raise AttributeError(f"module 'agents.mlflow' has no attribute {name!r}")
