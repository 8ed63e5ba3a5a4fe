"""What an agent records about data, code, environment and people.

A caller's mistake (a missing path, a bad argument) raises :class:`CaptureError` or
:class:`~ledger.core.errors.InvalidArgument`; anything else (no ``git``, a truncated cache, no container
trace) is recorded as unknown with a reason and logged, never raised into the host program.
Content ids and the tree encoding: docs/agents.md.
"""

from __future__ import annotations

from ._common import CaptureError
from .cache import DigestCache
from .digests import CHUNK_SIZE, DEFAULT_EXCLUDE, Digest, digest_file, digest_path, digest_tree, tree_entry
from .environment import Environment, environment, installed_distributions
from .git import GitState, GitUnknown, dirty_digest, git_state, inspect_git, strip_credentials
from .identity import Author, author

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_EXCLUDE",
    "Author",
    "CaptureError",
    "Digest",
    "DigestCache",
    "Environment",
    "GitState",
    "GitUnknown",
    "author",
    "digest_file",
    "digest_path",
    "digest_tree",
    "dirty_digest",
    "environment",
    "git_state",
    "inspect_git",
    "installed_distributions",
    "strip_credentials",
    "tree_entry",
]
