"""Content digests of files and trees (``sha256:<hex>``), reproducible by another implementation."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from ledger.core.errors import expected_found
from ledger.core.ids import CONTENT_ID_PREFIX, Sha256Digester, content_id

from ._common import CaptureError, StrPath, _missing, _stat_key, _unreadable, log
from .cache import DigestCache

CHUNK_SIZE = 1 << 20
"""Bytes read per step while digesting; memory stays at one chunk whatever the file size."""

TREE_HEADER = b"provault-tree-v1\n"
DEFAULT_EXCLUDE = (".git", ".hg", ".svn", "__pycache__", ".DS_Store")
"""Names skipped in trees by default: VCS metadata and caches that differ between copies of the same data."""

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
