"""What other parts of provault contribute to the ``provault`` command, its stack and its schema.

The ledger is the write side and knows neither the read side (``query``) nor the
producers' SDK (``agents``). They contribute through entry point groups declared in
``pyproject.toml``, which the composition root (:mod:`ledger.cli`, :mod:`ledger.launch`,
``provault db migrate``) discovers at run time:

* ``provault.commands``: a module with ``register(subparsers, common)`` adding sub-commands;
* ``provault.stack``: ``start(stack, endpoints) -> Endpoints``, starting services that
  ``provault up`` runs beside the ledger service (each one handed to the stack to stop);
* ``provault.migrations``: ``migrate(dsn) -> list[str]``, applied after the ledger's own schema.

Contributions load in the order of their entry point names.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from ledger.core.errors import ConfigError

COMMANDS = "provault.commands"
STACK = "provault.stack"
MIGRATIONS = "provault.migrations"


def contributions(group: str) -> list[Any]:
    """Every object contributed to ``group``, loaded, ordered by entry point name.

    A group with no entry point means provault's package metadata is missing (a source
    tree that was never installed): that is refused rather than running half a product.
    """
    found = sorted(metadata.entry_points(group=group), key=lambda ep: ep.name)
    if not found:
        raise ConfigError(
            [f"{group}: no entry points found; provault's package metadata is missing"],
            hint="install provault (`pip install -e .` in a source tree) so its commands and services are registered",
        )
    return [ep.load() for ep in found]
