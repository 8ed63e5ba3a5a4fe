"""Small files that provault's commands change and its servers re-read.

The tokens file and the NATS users file are rewritten by CLI commands while
servers (or operators' tools) may read them at any moment: writers hold an
exclusive lock (``<file>.lock``) and replace the file atomically, so a reader
never sees half a file.  Secrets handed to a client (a token, an nkey seed)
are written once to a new file, mode 0600, never over an existing one.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ledger.core.errors import ConfigError


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold the writers' lock of ``path`` (its directory is created, mode 0700)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def replace_atomically(path: Path, body: str, *, mode: int = 0o600) -> None:
    """Write ``body`` to a temporary file beside ``path``, fsync it, and rename it over ``path``."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            os.fchmod(f.fileno(), mode)
            f.write(body)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_new_secret(path: Path, text: str) -> None:
    """Create ``path`` with mode 0600 holding ``text``; FileExistsError when it exists (never overwrite a secret)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def read_registry(path: Path, *, key: str, what: str) -> bytes | None:
    """The bytes of a registry file that servers trust (None when it does not exist).

    ConfigError when it cannot be read, or when others may write it: whoever
    can write it could add ``what`` (a token, a user).
    """
    try:
        st, data = read_checked(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ConfigError([f"{key}: cannot read {path} ({e.strerror})"]) from None
    if st.st_mode & 0o022:
        raise ConfigError(
            [f"{key}: {path} is writable by others (mode {st.st_mode & 0o777:o}): anyone could add {what}"],
            hint=f"chmod 600 {path}",
        )
    return data


def read_checked(path: Path) -> tuple[os.stat_result, bytes]:
    """The status and bytes of one and the same file (fstat of the descriptor read), so a check cannot race a swap."""
    with open(path, "rb") as f:
        return os.fstat(f.fileno()), f.read()
