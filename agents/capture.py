"""What an agent records about data, code, environment and people.

Agents run inside other people's training jobs, so this module separates two
kinds of trouble:

* a mistake of the caller (a path that does not exist, an argument that is not
  what it must be) raises :class:`CaptureError` or :class:`InvalidArgument`
  with what was expected, what was found and what to do;
* anything else (no ``git`` on the host, a repository without commits, a
  cache file someone truncated, a container engine that left no trace) is
  recorded as unknown with a reason and logged, never raised into the host
  program.

Content ids follow ``ledger.core.vocab``: ``sha256:<hex>`` for files, trees and
environment descriptions, ``provault:git/<commit>`` for code, person and host
ids for agents.  The tree encoding is documented on :func:`digest_tree` so
another implementation can reproduce every id.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fnmatch
import getpass
import json
import logging
import os
import platform
import re
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

from ledger.core.errors import InvalidArgument, ProvaultError, expected_found
from ledger.core.ids import CONTENT_ID_PREFIX, Sha256Digester, content_id, is_content_id
from ledger.core.vocab import git_id, host_id, person_id

log = logging.getLogger(__name__)

StrPath = str | os.PathLike[str]

CHUNK_SIZE = 1 << 20
"""Bytes read per step while digesting; memory stays at one chunk whatever the file size."""

TREE_HEADER = b"provault-tree-v1\n"
DIRTY_HEADER = b"provault-git-dirty-v1\n"
DEFAULT_EXCLUDE = (".git", ".hg", ".svn", "__pycache__", ".DS_Store")
"""Names skipped in trees by default: VCS metadata and caches that differ between copies of the same data."""

GIT_TIMEOUT = 10.0


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


# --- content digests --------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    """The content id of a file or directory tree, with where and how big it was."""

    id: str
    size: int
    """Bytes of content: the file's size, or the sum of the regular files' sizes in a tree."""
    path: str
    """Absolute path as digested (an attribute, never part of the id)."""
    kind: Literal["file", "tree"]
    files: int
    """Entries that contributed (1 for a file; regular files and links for a tree)."""


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ino)


def _hash_open_file(fd: int) -> tuple[str, int]:
    """Stream an open file descriptor through SHA-256 with one reusable buffer."""
    digester = Sha256Digester()
    buffer = bytearray(CHUNK_SIZE)
    view = memoryview(buffer)
    size = 0
    with open(fd, "rb", buffering=0, closefd=False) as stream:
        while n := stream.readinto(buffer):
            digester.update(view[:n])  # type: ignore[arg-type]  # any buffer works
            size += n
    return digester.content_id(), size


_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NONBLOCK", 0)
"""O_NONBLOCK: a FIFO swapped in after the type check must not hang the host program."""


def _hash_regular_file(path: str, attempts: int = 3) -> tuple[str, os.stat_result]:
    """Digest ``path``, retrying while it changes under us; raise when it never holds still."""
    for _ in range(attempts):
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except FileNotFoundError:
            raise _missing("file", path) from None
        except OSError as e:
            raise _unreadable(path, e) from None
        try:
            before = os.fstat(fd)
            if not stat.S_ISREG(before.st_mode):
                raise CaptureError(expected_found(f"type of {path!r}", "a regular file", _type_name(before.st_mode)))
            digest, size = _hash_open_file(fd)
            after = os.fstat(fd)
        except OSError as e:
            raise _unreadable(path, e) from None
        finally:
            os.close(fd)
        if _stat_key(before) == _stat_key(after) and size == after.st_size:
            return digest, after
    raise CaptureError(
        f"{path!r} kept changing while it was digested ({attempts} attempts)",
        hint="digest the file after the writer has finished with it",
    )


def _type_name(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device or other special file"


def _file_id(path: str, st: os.stat_result, cache: DigestCache | None) -> str:
    """Content id of a regular file, from the cache when its stat signature is unchanged."""
    if cache is not None and (hit := cache.get(path, st)) is not None:
        return hit
    digest, st_now = _hash_regular_file(path)
    if cache is not None:
        cache.put(path, st_now, digest)
    return digest


def digest_file(path: StrPath, *, cache: DigestCache | None = None) -> Digest:
    """Content id of one regular file (symbolic links to files are followed), read in chunks.

    The id is ``sha256:`` and the SHA-256 of the file's bytes, the same id
    :func:`ledger.core.ids.content_id` gives for those bytes held in memory.
    """
    abspath = os.path.abspath(path)
    st = _stat(abspath, follow=True)
    if not stat.S_ISREG(st.st_mode):
        raise CaptureError(
            expected_found(f"type of {abspath!r}", "a regular file", _type_name(st.st_mode)),
            hint="use digest_tree (or digest_path) for a directory",
        )
    try:
        digest = _file_id(abspath, st, cache)
    finally:
        if cache is not None:
            cache.save()
    return Digest(id=digest, size=st.st_size, path=abspath, kind="file", files=1)


def _stat(path: str, *, follow: bool) -> os.stat_result:
    try:
        return os.stat(path, follow_symlinks=follow)
    except FileNotFoundError:
        raise _missing("path", path) from None
    except OSError as e:
        raise _unreadable(path, e) from None


def tree_entry(kind: bytes, hex_digest: str, relpath: bytes) -> bytes:
    """One entry of the canonical tree encoding (see :func:`digest_tree`)."""
    return kind + b" " + hex_digest.encode("ascii") + b" " + relpath + b"\0"


def _hex(cid: str) -> str:
    return cid[len(CONTENT_ID_PREFIX) :]


def _excluded(name: str, exclude: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude)


def _walk(
    root: str, prefix: bytes, exclude: tuple[str, ...], skip: frozenset[str]
) -> Iterator[tuple[str, bytes, os.stat_result]]:
    """Yield (absolute path, relative path bytes, lstat) of every non-directory under ``root``."""
    try:
        entries = list(os.scandir(root))
    except OSError as e:
        raise _unreadable(root, e) from None
    for entry in entries:
        if _excluded(entry.name, exclude) or entry.path in skip:
            continue
        rel = prefix + os.fsencode(entry.name)
        try:
            st = entry.stat(follow_symlinks=False)
        except FileNotFoundError:
            raise CaptureError(
                f"{entry.path!r} disappeared while its tree was digested",
                hint="digest the tree after the writer has finished",
            ) from None
        if stat.S_ISDIR(st.st_mode):
            yield from _walk(entry.path, rel + b"/", exclude, skip)
        else:
            yield entry.path, rel, st


def _entry_for(path: str, rel: bytes, st: os.stat_result, cache: DigestCache | None) -> bytes | None:
    """The encoded entry for one non-directory, or None for a special file (skipped)."""
    if stat.S_ISLNK(st.st_mode):
        try:
            target = os.readlink(os.fsencode(path))
        except OSError as e:
            raise _unreadable(path, e) from None
        return tree_entry(b"l", _hex(content_id(target)), rel)
    if stat.S_ISREG(st.st_mode):
        kind = b"x" if st.st_mode & stat.S_IXUSR else b"f"
        return tree_entry(kind, _hex(_file_id(path, st, cache)), rel)
    log.warning("skipping %s in a tree digest: it is %s", path, _type_name(st.st_mode))
    return None


def digest_tree(path: StrPath, *, cache: DigestCache | None = None, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> Digest:
    """Content id of a directory tree, the same on every machine that holds the same files.

    Canonical encoding (version 1).  The id is ``sha256:`` + hex(SHA-256(M)) with::

        M     = "provault-tree-v1\\n" || entry_1 || entry_2 || ...
        entry = T || " " || H || " " || P || NUL

    * ``T`` is one ASCII byte: ``f`` a regular file, ``x`` a regular file
      whose owner-execute bit (``0o100``) is set, ``l`` a symbolic link;
    * ``H`` is 64 lowercase ASCII hex digits: the SHA-256 of the file's
      bytes (``f``, ``x``) or of the link's target text exactly as
      ``readlink`` returns it (``l``; links are never followed);
    * ``P`` is the path relative to the tree root, components joined by
      ``/``, as the file system's bytes (no leading ``/`` or ``./``);
    * entries are sorted by ``P`` compared bytewise;
    * directories contribute only through what they contain (an empty
      directory adds nothing); FIFOs, sockets and devices are skipped with a
      warning; any entry whose *name* matches an ``exclude`` pattern
      (``fnmatch``, case-sensitive) is skipped, a matching directory with
      everything below it.

    Timestamps, owners, other permission bits, the order the file system
    lists entries in and the tree's absolute location do not enter the id.
    The default ``exclude`` is part of the scheme: agents that must agree on
    an id must use the same patterns.  The cache file, when it lies inside the
    tree, is skipped.
    """
    abspath = os.path.abspath(path)
    st = _stat(abspath, follow=True)
    if not stat.S_ISDIR(st.st_mode):
        raise CaptureError(
            expected_found(f"type of {abspath!r}", "a directory", _type_name(st.st_mode)),
            hint="use digest_file (or digest_path) for a single file",
        )
    skip = cache.own_files() if cache is not None else frozenset()
    entries: list[tuple[bytes, bytes]] = []
    size = 0
    try:
        for full, rel, lst in _walk(abspath, b"", tuple(exclude), skip):
            if (encoded := _entry_for(full, rel, lst, cache)) is not None:
                entries.append((rel, encoded))
                size += lst.st_size if stat.S_ISREG(lst.st_mode) else 0
    finally:
        if cache is not None:
            cache.save()
    entries.sort()
    digester = Sha256Digester(TREE_HEADER)
    for _, encoded in entries:
        digester.update(encoded)
    return Digest(id=digester.content_id(), size=size, path=abspath, kind="tree", files=len(entries))


def digest_path(path: StrPath, *, cache: DigestCache | None = None, exclude: Iterable[str] = DEFAULT_EXCLUDE) -> Digest:
    """:func:`digest_tree` for a directory, :func:`digest_file` for anything else."""
    st = _stat(os.path.abspath(path), follow=True)
    if stat.S_ISDIR(st.st_mode):
        return digest_tree(path, cache=cache, exclude=exclude)
    return digest_file(path, cache=cache)


# --- the digest cache ---------------------------------------------------------

CACHE_FORMAT = "provault-digest-cache/1"


class DigestCache:
    """Remembers file digests by (absolute path, size, mtime_ns, inode) in a small JSON file.

    A file whose signature is unchanged is not read again, so re-digesting an
    unchanged 10 GB file costs one ``stat``.  Files modified within
    ``racy_seconds`` of being digested are not remembered: a write in the
    same timestamp tick could otherwise go unseen (git's "racily clean" case).

    The file is replaced atomically (temporary file + rename) after merging
    with what is on disk, so concurrent writers can lose each other's
    entries (a later miss) but never leave a torn file.  A corrupt or
    unreadable cache file is ignored with a warning and rebuilt.  ``hits`` and
    ``misses`` count lookups in this process.
    """

    def __init__(self, path: StrPath, *, max_entries: int = 100_000, racy_seconds: float = 2.0) -> None:
        self.path = os.path.abspath(path)
        self.max_entries = max_entries
        self.racy_ns = int(racy_seconds * 1e9)
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._entries = self._load(warn=True)
        self._new: dict[str, list[int | str]] = {}

    @classmethod
    def default(cls) -> DigestCache:
        """The per-user cache (``digests.json`` in the platform's user cache directory)."""
        from platformdirs import user_cache_dir  # noqa: PLC0415 - only needed here

        return cls(Path(user_cache_dir("provault")) / "digests.json")

    def own_files(self) -> frozenset[str]:
        return frozenset({self.path})

    def get(self, path: str, st: os.stat_result) -> str | None:
        with self._lock:
            entry = self._entries.get(path)
            if entry is not None and tuple(entry[:3]) == _stat_key(st):
                self.hits += 1
                return str(entry[3])
            self.misses += 1
            return None

    def put(self, path: str, st: os.stat_result, digest: str) -> None:
        if time.time_ns() - st.st_mtime_ns < self.racy_ns:
            return
        with self._lock:
            value: list[int | str] = [*_stat_key(st), digest]
            self._entries.pop(path, None)
            self._entries[path] = value
            self._new[path] = value

    def save(self) -> None:
        """Merge new entries into the file on disk; a failure to write is logged, never raised."""
        with self._lock:
            if not self._new:
                return
            merged = self._load(warn=False)
            for key, value in self._new.items():
                merged.pop(key, None)
                merged[key] = value
            while len(merged) > self.max_entries:
                del merged[next(iter(merged))]
            try:
                self._write(merged)
            except OSError as e:
                log.warning(
                    "cannot write digest cache %s (%s); digests are still correct, only slower next time", self.path, e
                )
                return
            self._entries, self._new = merged, {}

    def _write(self, entries: dict[str, list[int | str]]) -> None:
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(self.path)}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump({"format": CACHE_FORMAT, "entries": entries}, out, separators=(",", ":"))
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _load(self, *, warn: bool) -> dict[str, list[int | str]]:
        try:
            with open(self.path, encoding="utf-8") as f:
                doc = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            return self._corrupt(f"{type(e).__name__}: {e}", warn)
        if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT or not isinstance(doc.get("entries"), dict):
            found = repr(doc.get("format")) if isinstance(doc, dict) else type(doc).__name__
            return self._corrupt(expected_found("format", CACHE_FORMAT, found), warn)
        entries = {k: v for k, v in doc["entries"].items() if _valid_entry(v)}
        if len(entries) != len(doc["entries"]):
            self._corrupt(f"{len(doc['entries']) - len(entries)} malformed entries dropped", warn)
        return entries

    def _corrupt(self, why: str, warn: bool) -> dict[str, list[int | str]]:
        if warn:
            log.warning("ignoring digest cache %s (%s); it will be rebuilt", self.path, why)
        return {}


def _valid_entry(value: object) -> bool:
    return (
        isinstance(value, list)
        and len(value) == 4
        and all(isinstance(n, int) and not isinstance(n, bool) for n in value[:3])
        and is_content_id(value[3])
    )


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


# --- environment -------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Environment:
    """The software a process runs on, named by the content id of its canonical JSON.

    The id covers the Python implementation and version, operating system,
    machine, C library, installed distributions and container image, so
    identical environments on different machines share one id.  ``hostname``
    and ``kernel`` describe where this capture happened; they are kept out of
    the id on purpose (the host is its own PROV agent, see :attr:`host_id`).
    """

    python_implementation: str
    python_version: str
    system: str
    machine: str
    libc: str
    distributions: tuple[str, ...]
    """Sorted ``name==version`` lines, names normalized per PEP 503."""
    distributions_digest: str
    """``sha256:`` of the lines joined by ``\\n`` with a final ``\\n``."""
    image_digest: str | None
    container: str | None
    """Engine evidence found (``podman``, ``docker``, ``kubernetes``, ``container``) or None; not in the id."""
    hostname: str
    kernel: str

    def to_json(self) -> bytes:
        """Canonical JSON (sorted keys, compact, UTF-8) of the identifying fields."""
        doc = {
            "distributions": list(self.distributions),
            "distributions_digest": self.distributions_digest,
            "image_digest": self.image_digest,
            "libc": self.libc,
            "machine": self.machine,
            "python_implementation": self.python_implementation,
            "python_version": self.python_version,
            "system": self.system,
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")

    @property
    def content_id(self) -> str:
        return content_id(self.to_json())

    @property
    def host_id(self) -> str:
        return host_id(self.hostname)


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def installed_distributions() -> tuple[str, ...]:
    """Sorted ``name==version`` of every importable distribution (the first on ``sys.path`` wins)."""
    found: dict[str, str] = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"] if dist.metadata else None
        if not name:
            continue  # a broken install without metadata names nothing
        found.setdefault(_normalize(name), dist.version)
    return tuple(sorted(f"{n}=={v}" for n, v in found.items()))


def _containerenv(root: Path) -> dict[str, str]:
    """Key/value pairs podman writes to ``/run/.containerenv`` (empty when absent or unreadable)."""
    try:
        text = (root / "run/.containerenv").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines())
    return {k.strip(): v.strip().strip('"') for k, sep, v in pairs if sep}


def _container(root: Path, podman: dict[str, str]) -> str | None:
    if podman or (root / "run/.containerenv").exists():
        return "podman"
    if (root / ".dockerenv").exists():
        return "docker"
    if (root / "var/run/secrets/kubernetes.io").exists():
        return "kubernetes"
    try:
        cgroup = (root / "proc/self/cgroup").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    for marker in ("docker", "kubepods", "containerd", "libpod", "lxc"):
        if marker in cgroup:
            return "kubernetes" if marker == "kubepods" else "container"
    return None


def _image_digest(explicit: str | None, podman: dict[str, str]) -> str | None:
    if explicit is not None:
        if not is_content_id(explicit):
            raise InvalidArgument(
                expected_found("image_digest", "'sha256:' and 64 lowercase hex digits", repr(explicit[:80])),
                hint="pass the image digest as printed by 'docker inspect --format {{.Id}}' or 'podman image inspect'",
            )
        return explicit
    image_id = podman.get("imageid", "").lower()
    image_id = image_id[len(CONTENT_ID_PREFIX) :] if image_id.startswith(CONTENT_ID_PREFIX) else image_id
    return CONTENT_ID_PREFIX + image_id if is_content_id(CONTENT_ID_PREFIX + image_id) else None


def environment(*, image_digest: str | None = None, root: StrPath = "/") -> Environment:
    """Capture the running environment.

    The container image digest is ``image_digest`` when given (it must be a
    ``sha256:<hex>`` id), otherwise the ``imageid`` podman writes to
    ``/run/.containerenv`` (the image's config digest), otherwise unknown
    (None): Docker and Kubernetes expose no image digest inside a container,
    so pass it explicitly there (for instance from the Downward API).
    ``root`` is the file system root to look for these signals under (tests).
    """
    base = Path(root)
    podman = _containerenv(base)
    dists = installed_distributions()
    return Environment(
        python_implementation=platform.python_implementation(),
        python_version=platform.python_version(),
        system=platform.system(),
        machine=platform.machine(),
        libc=" ".join(filter(None, platform.libc_ver())) or "unknown",
        distributions=dists,
        distributions_digest=content_id("".join(f"{d}\n" for d in dists).encode("utf-8")),
        image_digest=_image_digest(image_digest, podman),
        container=_container(base, podman),
        hostname=socket.gethostname(),
        kernel=platform.release(),
    )


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
