"""Who runs: the author from an explicit name, git's configuration or the OS user."""

from __future__ import annotations

import getpass
import os
import socket
from dataclasses import dataclass
from typing import Literal

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.vocab import person_id

from ._common import StrPath, log
from .git import GIT_TIMEOUT, _git_text, _GitFailed, _working_dir

# --- identity ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Author:
    """The person a capture is attributed to."""

    id: str
    """``provault:person/<who>`` (``ledger.core.vocab.person_id``)."""
    who: str
    name: str | None
    source: Literal["argument", "git", "os"]


def _os_user() -> str:
    try:
        user = getpass.getuser()
    except (OSError, KeyError, ImportError):  # no USER/LOGNAME and no passwd entry (common in containers)
        user = f"uid{os.getuid()}" if hasattr(os, "getuid") else "unknown"
    return f"{user}@{socket.gethostname()}"


def _git_identity(cwd: str) -> tuple[str | None, str | None]:
    try:
        email = _git_text(["config", "--get", "user.email"], cwd, GIT_TIMEOUT)
        name = _git_text(["config", "--get", "user.name"], cwd, GIT_TIMEOUT)
    except _GitFailed as e:
        log.info("no git identity: %s", e.reason)
        return None, None
    return email or None, name or None


def author(who: str | None = None, *, name: str | None = None, path: StrPath = ".") -> Author:
    """Who is running this: ``who`` when given, else git's ``user.email``, else ``user@hostname``.

    Git configuration is read as seen from ``path`` (so repository-local
    settings count).  ``name`` (a display name) falls back to git's
    ``user.name``.
    """
    if who is not None:
        if not who.strip():
            raise InvalidArgument(expected_found("author", "a non-empty identity such as an e-mail address", repr(who)))
        return Author(id=person_id(who.strip()), who=who.strip(), name=name, source="argument")
    email, git_name = _git_identity(_working_dir(path))
    if email:
        return Author(id=person_id(email), who=email, name=name or git_name, source="git")
    fallback = _os_user()
    return Author(id=person_id(fallback), who=fallback, name=name or git_name, source="os")
