"""The entry points MLflow loads (``pyproject.toml``): thin builders that import the stores when first called.

MLflow loads its plugins while its own store modules are still being
imported, so this module imports nothing of MLflow; :mod:`.stores` does, on
the first store built.
"""

from __future__ import annotations

from typing import Any


def tracking_store(store_uri: str, artifact_uri: str | None = None, **kwargs: Any) -> Any:
    """``mlflow.tracking_store`` for ``provault+<URI>``."""
    from . import stores  # noqa: PLC0415 - MLflow is still importing itself when it loads this module

    return stores.tracking_store(store_uri, artifact_uri, **kwargs)


def registry_store(store_uri: str, tracking_uri: str | None = None, **kwargs: Any) -> Any:
    """``mlflow.model_registry_store`` for ``provault+<URI>``."""
    from . import stores  # noqa: PLC0415 - as above

    return stores.registry_store(store_uri, tracking_uri, **kwargs)


def artifacts_repository(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None) -> Any:
    """``mlflow.artifact_repository`` for ``mlflow-artifacts:``: MLflow's own, resolved without ``provault+``."""
    from . import stores  # noqa: PLC0415 - as above

    return stores.ArtifactsRepository(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
