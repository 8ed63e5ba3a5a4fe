"""The stack of ``provault up`` (``ledger.launch``), run inside the demo's process.

``stack.json`` says where everything listens, so the ``provault`` commands
the demo runs find it.  The demo puts gRPC on free loopback ports and fails
with its own error type.
"""

from __future__ import annotations

import dataclasses

from ledger.config import ExplorerSettings, GrpcSettings, MetricsSettings, OpenLineageSettings, Settings
from ledger.core.errors import ProvaultError
from ledger.launch import start_stack
from ledger.stack import Stack, read_stack_file

ANY_PORT = "127.0.0.1:0"


class DemoFailed(ProvaultError):
    """A step of ``provault demo`` did not do what it had to."""

    reason = "demo_failed"


def demo_settings(settings: Settings) -> Settings:
    """``settings`` with the servers (gRPC, OpenLineage, metrics, explorer) on free loopback ports, unless configured.

    The demo is a one-off: it must not collide with a ``provault up`` that
    holds the default ports for another data directory.
    """
    default = GrpcSettings()
    grpc = settings.grpc
    if grpc.ledger_listen == default.ledger_listen:
        grpc = dataclasses.replace(grpc, ledger_listen=ANY_PORT)
    if grpc.query_listen == default.query_listen:
        grpc = dataclasses.replace(grpc, query_listen=ANY_PORT)
    ol = settings.openlineage
    if ol.listen == OpenLineageSettings().listen:
        ol = dataclasses.replace(ol, listen=ANY_PORT)
    exported = settings.metrics
    if exported.ledger_listen == MetricsSettings().ledger_listen:
        exported = dataclasses.replace(exported, ledger_listen=ANY_PORT)
    explorer = settings.explorer
    if explorer.listen == ExplorerSettings().listen:
        explorer = dataclasses.replace(explorer, listen=ANY_PORT)
    return dataclasses.replace(settings, grpc=grpc, openlineage=ol, metrics=exported, explorer=explorer, dev_mode=True)


def refuse_if_up(settings: Settings) -> None:
    info = read_stack_file(settings.data_dir)
    if info is not None:
        raise DemoFailed(
            f"a provault stack (pid {info.get('pid')}) is already running on {settings.data_dir}",
            hint="stop that `provault up` (Ctrl-C) first, or run the demo with another --data-dir",
        )


def check_running(stack: Stack) -> None:
    """Fail clearly when a piece of the stack died under the demo."""
    for svc in stack.services():
        if not svc.running():
            raise DemoFailed(f"{svc.name} stopped unexpectedly", hint=f"see its log: {svc.log}")


__all__ = ["DemoFailed", "check_running", "demo_settings", "refuse_if_up", "start_stack"]
