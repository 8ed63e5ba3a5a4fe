"""The git state of the code a run uses: commit, branch, remote (without credentials) and a digest of local changes."""

from __future__ import annotations

import dataclasses
import os
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from urllib.parse import urlsplit, urlunsplit

from ledger.core.ids import CONTENT_ID_PREFIX, Sha256Digester, content_id
from ledger.core.vocab import git_id

from ._common import CaptureError, StrPath, log
from .cache import DigestCache
from .digests import _entry_for, _hash_open_file, _hex, _stat, digest_tree, tree_entry

DIRTY_HEADER = b"provault-git-dirty-v1\n"
GIT_TIMEOUT = 10.0


# --- git ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class GitState:
    """The code a process runs: a commit, and whether (and how) the work tree differs from it."""

    commit: str
    branch: str | None
    """None when HEAD is detached."""
    remote: str | None
    """Fetch URL of the branch's remote (else ``origin``, else the first remote), credentials removed."""
    dirty: bool
    diff_digest: str | None
    """``sha256:`` over ``git diff HEAD`` and the untracked files (see :func:`dirty_digest`); None when clean."""
    untracked: int
    root: str
    diff_unknown: str | None = None
    """Why ``diff_digest`` is missing although the tree is dirty (e.g. a timeout)."""

    @property
    def id(self) -> str:
        return git_id(self.commit)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True, slots=True, kw_only=True)
class GitUnknown:
    """No code state could be captured; ``reason`` says why (for logs and the event)."""

    reason: str


class _GitFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


_GIT_ENV = {"GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_PAGER": "cat"}
_DIFF_ARGS = (
    "diff",
    "HEAD",
    "--binary",
    "--full-index",
    "--no-color",
    "--no-ext-diff",
    "--no-textconv",
    "--no-renames",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--diff-algorithm=myers",
    "--unified=3",
)


def _git(
    args: Iterable[str], cwd: str, timeout: float, *, stdout: int = subprocess.PIPE
) -> subprocess.CompletedProcess[bytes]:
    """Run git without prompts or optional locks; raise _GitFailed when it cannot run at all."""
    argv = ["git", "-c", "core.quotePath=true", *args]
    try:
        return subprocess.run(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            stderr=subprocess.PIPE,
            timeout=timeout,
            env={**os.environ, **_GIT_ENV},
            check=False,
        )
    except FileNotFoundError:
        raise _GitFailed("git is not installed (no 'git' on PATH)") from None
    except subprocess.TimeoutExpired:
        raise _GitFailed(f"'git {' '.join(args)}' took longer than {timeout:g} s") from None
    except OSError as e:
        raise _GitFailed(f"cannot run git: {e}") from None


def _git_text(args: list[str], cwd: str, timeout: float) -> str | None:
    """Stripped stdout of a git command, None when it exits non-zero."""
    done = _git(args, cwd, timeout)
    return done.stdout.decode("utf-8", "surrogateescape").strip() if done.returncode == 0 else None


def strip_credentials(url: str) -> str:
    """A remote URL without secrets: ``https://user:token@host/x`` -> ``https://host/x``.

    For http(s), ftp(s) and other URL schemes the whole user-info part goes
    (GitHub-style tokens travel as the user name); for ``ssh://`` only a
    password goes, the login name (``git@``) is kept.  scp-like
    ``git@host:path`` and local paths are returned unchanged.
    """
    if "://" not in url:
        return url
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    if parts.scheme in {"ssh", "git+ssh", "ssh+git"} and ":" not in userinfo:
        return url
    user = userinfo.split(":", 1)[0]
    netloc = f"{user}@{hostport}" if parts.scheme in {"ssh", "git+ssh", "ssh+git"} else hostport
    return urlunsplit(parts._replace(netloc=netloc))


def dirty_digest(diff_sha256_hex: str, untracked_entries: Iterable[bytes]) -> str:
    """Content id of a dirty work tree (encoding version 1)::

        D = "provault-git-dirty-v1\\n" || "d " || hex(SHA-256(diff)) || "\\n" || entries

    where ``diff`` is the byte output of ``git diff HEAD --binary --full-index
    --no-renames --src-prefix=a/ --dst-prefix=b/ --diff-algorithm=myers
    --unified=3`` (no color, no external diff or textconv) and ``entries``
    are the untracked files (``git ls-files --others --exclude-standard``)
    encoded exactly like :func:`digest_tree` entries, paths relative to the
    repository root and sorted bytewise (an untracked nested repository,
    listed as ``dir/``, is entered with ``T`` = ``t`` and its tree digest).
    """
    digester = Sha256Digester(DIRTY_HEADER + b"d " + diff_sha256_hex.encode("ascii") + b"\n")
    for entry in sorted(untracked_entries):
        digester.update(entry)
    return digester.content_id()


def _diff_hex(root: str, timeout: float) -> str:
    """SHA-256 hex of ``git diff HEAD`` streamed through a temporary file (bounded memory)."""
    with tempfile.TemporaryFile() as out:
        done = _git(_DIFF_ARGS, root, timeout, stdout=out.fileno())
        if done.returncode != 0:
            raise _GitFailed(f"'git diff HEAD' failed: {_first_line(done.stderr)}")
        out.seek(0)
        return _hash_open_file(out.fileno())[0][len(CONTENT_ID_PREFIX) :]


def _untracked_entries(root: str, timeout: float, cache: DigestCache | None) -> list[bytes]:
    done = _git(["ls-files", "--others", "--exclude-standard", "-z"], root, timeout)
    if done.returncode != 0:
        raise _GitFailed(f"'git ls-files' failed: {_first_line(done.stderr)}")
    entries = []
    for rel in filter(None, done.stdout.split(b"\0")):
        full = os.path.join(root, os.fsdecode(rel.rstrip(b"/")))
        try:
            if rel.endswith(b"/"):
                entries.append(tree_entry(b"t", _hex(digest_tree(full, cache=cache).id), rel))
                continue
            encoded = _entry_for(full, rel, os.lstat(full), cache)
        except FileNotFoundError:
            continue  # deleted since git listed it: it is not part of the tree any more
        except (CaptureError, OSError) as e:
            raise _GitFailed(f"cannot digest untracked file {rel.decode('utf-8', 'replace')!r}: {e}") from None
        if encoded is not None:
            entries.append(encoded)
    return entries


def _first_line(stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    return text.splitlines()[0] if text else "no message"


def _remote(root: str, branch: str | None, timeout: float) -> str | None:
    names = (_git_text(["remote"], root, timeout) or "").split()
    preferred = _git_text(["config", "--get", f"branch.{branch}.remote"], root, timeout) if branch else None
    for name in (preferred, "origin", *names):
        if name and name in names:
            url = _git_text(["remote", "get-url", name], root, timeout)
            return strip_credentials(url) if url else None
    return None


def _working_dir(path: StrPath) -> str:
    abspath = os.path.abspath(path)
    st = _stat(abspath, follow=True)
    return abspath if stat.S_ISDIR(st.st_mode) else os.path.dirname(abspath)


def inspect_git(
    path: StrPath = ".", *, timeout: float = GIT_TIMEOUT, cache: DigestCache | None = None
) -> GitState | GitUnknown:
    """The git state of the repository containing ``path``, or why there is none.

    Raises :class:`CaptureError` only when ``path`` does not exist.
    """
    cwd = _working_dir(path)
    try:
        top = _git(["rev-parse", "--show-toplevel"], cwd, timeout)
        if top.returncode != 0:
            return GitUnknown(reason=f"{cwd} is not in a git work tree: {_first_line(top.stderr)}")
        root = top.stdout.decode("utf-8", "surrogateescape").strip()
        commit = _git_text(["rev-parse", "--verify", "-q", "HEAD^{commit}"], root, timeout)
        if not commit:
            return GitUnknown(reason=f"the repository at {root} has no commits yet")
        branch = _git_text(["symbolic-ref", "-q", "--short", "HEAD"], root, timeout)
        remote = _remote(root, branch, timeout)
        clean = GitState(
            commit=commit, branch=branch or None, remote=remote, dirty=False, diff_digest=None, untracked=0, root=root
        )
        return _with_diff(clean, timeout, cache)
    except _GitFailed as e:
        return GitUnknown(reason=e.reason)


def _with_diff(state: GitState, timeout: float, cache: DigestCache | None) -> GitState:
    """``state`` with its dirty flag and digest; a failure leaves the commit and explains the gap."""
    try:
        diff_hex = _diff_hex(state.root, timeout)
        untracked = _untracked_entries(state.root, timeout, cache)
    except _GitFailed as e:
        return dataclasses.replace(state, dirty=True, diff_unknown=e.reason)
    if diff_hex == _EMPTY_SHA256 and not untracked:
        return state
    return dataclasses.replace(
        state, dirty=True, diff_digest=dirty_digest(diff_hex, untracked), untracked=len(untracked)
    )


_EMPTY_SHA256 = _hex(content_id(b""))


def git_state(
    path: StrPath = ".", *, timeout: float = GIT_TIMEOUT, cache: DigestCache | None = None
) -> GitState | None:
    """Like :func:`inspect_git`, but None (the reason logged at INFO) when there is no git state."""
    state = inspect_git(path, timeout=timeout, cache=cache)
    if isinstance(state, GitUnknown):
        log.info("no git state recorded: %s", state.reason)
        return None
    return state
