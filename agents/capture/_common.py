"""What every capture module shares: the logger, path types and the caller's-mistake errors."""

from __future__ import annotations

import logging
import os

from ledger.core.errors import ProvaultError, expected_found

log = logging.getLogger("provault.agent.capture")

StrPath = str | os.PathLike[str]


class CaptureError(ProvaultError):
    """The caller asked to capture something that cannot be captured (missing or unreadable path)."""

    reason = "capture_error"


def _missing(what: str, path: StrPath) -> CaptureError:
    return CaptureError(
        expected_found(what, "an existing path", f"nothing at {os.fspath(path)!r}"),
        hint=f"check the path (relative paths are resolved from the current directory {os.getcwd()!r})",
    )


def _unreadable(path: StrPath, err: OSError) -> CaptureError:
    return CaptureError(
        f"cannot read {os.fspath(path)!r}: {err.strerror or type(err).__name__}",
        hint="give the process read permission on the data, or digest a readable copy",
    )


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    """What identifies one version of a file for the digest cache: size, modification time, inode."""
    return (st.st_size, st.st_mtime_ns, st.st_ino)
