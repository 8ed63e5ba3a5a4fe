"""Options and helpers shared by every command."""

from __future__ import annotations

import argparse
from importlib import metadata


def version() -> str:
    try:
        return metadata.version("provault")
    except metadata.PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def common_options() -> argparse.ArgumentParser:
    """Options every sub-command accepts (after its name)."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--config", metavar="FILE", help="TOML configuration file (default: $PROVAULT_CONFIG)")
    p.add_argument(
        "--data-dir", metavar="DIR", help="where provault keeps its state (default: the user's state directory)"
    )
    return p
