"""Capture: content digests, the digest cache, git state, environment and author."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import tracemalloc
from pathlib import Path

import pytest

from agents.capture import (
    CaptureError,
    DigestCache,
    GitUnknown,
    author,
    digest_file,
    digest_path,
    digest_tree,
    environment,
    git_state,
    inspect_git,
    strip_credentials,
)
from ledger.core.errors import InvalidArgument

OLD_NS = 1_600_000_000 * 10**9  # a modification time far from "now", so the cache may keep it
HAS_GIT = shutil.which("git") is not None
needs_git = pytest.mark.skipif(not HAS_GIT, reason="git is not installed")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def entry(kind: bytes, hexdigest: str, rel: bytes) -> bytes:
    """The documented tree entry encoding, written out independently of the module."""
    return kind + b" " + hexdigest.encode() + b" " + rel + b"\0"


def make_tree(root: Path, order: tuple[str, ...] = ("a.txt", "sub/b.bin", "run.sh")) -> Path:
    files = {"a.txt": b"alpha\n", "sub/b.bin": bytes(range(256)), "run.sh": b"#!/bin/sh\necho hi\n"}
    for rel in order:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(files[rel])
    (root / "run.sh").chmod(0o755)
    (root / "link").symlink_to("a.txt")
    return root


# --- files and trees ------------------------------------------------------------


def test_file_digest_is_sha256_of_its_bytes(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_bytes(b"hello\n")
    d = digest_file(path)
    assert (d.id, d.size, d.path, d.kind) == ("sha256:" + sha(b"hello\n"), 6, str(path), "file")
    (tmp_path / "empty").write_bytes(b"")
    assert digest_file(tmp_path / "empty").id == "sha256:" + sha(b"")


def test_missing_path_and_wrong_type_are_caller_errors(tmp_path: Path) -> None:
    with pytest.raises(CaptureError, match="expected an existing path"):
        digest_file(tmp_path / "nope")
    with pytest.raises(CaptureError, match="expected a regular file, found a directory"):
        digest_file(tmp_path)
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(CaptureError, match="expected a directory"):
        digest_tree(tmp_path / "f")
    with pytest.raises(CaptureError):
        digest_path(tmp_path / "nope")


def test_tree_digest_follows_the_documented_encoding(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    manifest = b"provault-tree-v1\n" + b"".join(  # entries in bytewise path order
        [
            entry(b"f", sha(b"alpha\n"), b"a.txt"),
            entry(b"l", sha(b"a.txt"), b"link"),
            entry(b"x", sha(b"#!/bin/sh\necho hi\n"), b"run.sh"),
            entry(b"f", sha(bytes(range(256))), b"sub/b.bin"),
        ]
    )
    d = digest_tree(root)
    assert d.id == "sha256:" + sha(manifest)
    assert (d.kind, d.files, d.size) == ("tree", 4, 6 + 256 + 18)
    assert digest_path(root) == d
    assert digest_tree(tmp_path / "t" / "sub").id == "sha256:" + sha(
        b"provault-tree-v1\n" + entry(b"f", sha(bytes(range(256))), b"b.bin")
    )


def test_empty_tree(tmp_path: Path) -> None:
    assert digest_tree(tmp_path).id == "sha256:" + sha(b"provault-tree-v1\n")


def test_tree_id_ignores_order_mtime_and_location(tmp_path: Path) -> None:
    one = make_tree(tmp_path / "one")
    two = make_tree(tmp_path / "elsewhere" / "two", order=("run.sh", "sub/b.bin", "a.txt"))
    os.utime(two / "a.txt", ns=(OLD_NS, OLD_NS))
    (two / "empty-dir").mkdir()
    assert digest_tree(one).id == digest_tree(two).id


def test_exec_bit_changes_the_tree_id(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    before = digest_tree(root).id
    (root / "a.txt").chmod(0o744)
    after = digest_tree(root).id
    assert after != before
    (root / "a.txt").chmod(0o644)
    (root / "a.txt").chmod(0o664)  # group/other bits do not count
    assert digest_tree(root).id == before


def test_symlinks_are_recorded_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data").write_bytes(b"v1")
    root = tmp_path / "t"
    root.mkdir()
    (root / "to-file").symlink_to(outside / "data")
    (root / "to-dir").symlink_to(outside)
    before = digest_tree(root)
    assert before.files == 2 and before.size == 0
    (outside / "data").write_bytes(b"v2 is longer")
    assert digest_tree(root).id == before.id
    (root / "to-file").unlink()
    (root / "to-file").symlink_to("elsewhere")
    assert digest_tree(root).id != before.id


def test_default_and_custom_excludes(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    base = digest_tree(root).id
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_bytes(b"ref: refs/heads/main\n")
    (root / "sub" / "__pycache__").mkdir()
    (root / "sub" / "__pycache__" / "x.pyc").write_bytes(b"\0")
    assert digest_tree(root).id == base
    (root / "sub" / "scratch.tmp").write_bytes(b"junk")
    assert digest_tree(root).id != base
    assert digest_tree(root, exclude=(".git", "__pycache__", "*.tmp")).id == base


def test_large_file_is_streamed_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "sparse.bin"
    size = 64 << 20
    with path.open("wb") as f:
        f.truncate(size)
    expected = hashlib.sha256()
    zeros = bytes(1 << 20)
    for _ in range(64):
        expected.update(zeros)
    del zeros
    tracemalloc.start()
    try:
        d = digest_file(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert d.id == "sha256:" + expected.hexdigest() and d.size == size
    assert peak < 8 << 20, f"peak traced memory {peak} bytes"


# --- the cache -----------------------------------------------------------------


def old_file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    os.utime(path, ns=(OLD_NS, OLD_NS))
    return path


def test_cache_hit_does_not_read_the_file_and_change_is_detected(tmp_path: Path) -> None:
    data = old_file(tmp_path / "data.bin", b"A" * 1000)
    cache_file = tmp_path / "cache" / "digests.json"
    first = DigestCache(cache_file)
    assert digest_file(data, cache=first).id == "sha256:" + sha(b"A" * 1000)
    assert (first.hits, first.misses) == (0, 1) and cache_file.exists()

    # Same size, same inode, same mtime, different bytes: a cache hit proves nothing was read.
    with data.open("r+b") as f:
        f.write(b"B" * 1000)
    os.utime(data, ns=(OLD_NS, OLD_NS))
    second = DigestCache(cache_file)
    assert digest_file(data, cache=second).id == "sha256:" + sha(b"A" * 1000)
    assert (second.hits, second.misses) == (1, 0)

    os.utime(data, ns=(OLD_NS + 1, OLD_NS + 1))  # a real edit moves the mtime
    assert digest_file(data, cache=second).id == "sha256:" + sha(b"B" * 1000)
    old_file(data, b"short")  # and a size change is seen even with the old mtime
    assert digest_file(data, cache=second).id == "sha256:" + sha(b"short")
    assert second.misses == 2


def test_recently_modified_files_are_not_cached(tmp_path: Path) -> None:
    data = tmp_path / "fresh"
    data.write_bytes(b"just written")
    cache_file = tmp_path / "digests.json"
    digest_file(data, cache=DigestCache(cache_file))
    again = DigestCache(cache_file)
    digest_file(data, cache=again)
    assert again.hits == 0


def test_tree_uses_the_cache_and_skips_the_cache_file(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "t")
    for p in root.rglob("*"):
        os.utime(p, ns=(OLD_NS, OLD_NS), follow_symlinks=False)
    plain = digest_tree(root).id
    cache = DigestCache(root / "digests.json")
    assert digest_tree(root, cache=cache).id == plain
    reused = DigestCache(root / "digests.json")
    assert digest_tree(root, cache=reused).id == plain
    assert (reused.hits, reused.misses) == (3, 0)


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"", b"[1, 2]", b'{"format": "other", "entries": {}}', b"\xff\xfe\x00garbage"],
)
def test_corrupt_cache_is_ignored_with_a_warning_and_rebuilt(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes
) -> None:
    data = old_file(tmp_path / "data", b"payload")
    cache_file = tmp_path / "digests.json"
    cache_file.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="agents.capture"):
        cache = DigestCache(cache_file)
    assert "ignoring digest cache" in caplog.text
    assert digest_file(data, cache=cache).id == "sha256:" + sha(b"payload")
    doc = json.loads(cache_file.read_text())
    assert doc["entries"][str(data)][3] == "sha256:" + sha(b"payload")


def test_malformed_entries_are_dropped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = old_file(tmp_path / "data", b"payload")
    st = data.stat()
    bad = {
        "format": "provault-digest-cache/1",
        "entries": {str(data): [st.st_size, st.st_mtime_ns, st.st_ino, "sha256:zz"]},
    }
    (tmp_path / "c.json").write_text(json.dumps(bad))
    with caplog.at_level(logging.WARNING, logger="agents.capture"):
        cache = DigestCache(tmp_path / "c.json")
    assert "malformed entries dropped" in caplog.text
    assert digest_file(data, cache=cache).id == "sha256:" + sha(b"payload") and cache.misses == 1


def test_concurrent_writers_merge_instead_of_clobbering(tmp_path: Path) -> None:
    a, b = old_file(tmp_path / "a", b"a"), old_file(tmp_path / "b", b"b")
    cache_file = tmp_path / "digests.json"
    one, two = DigestCache(cache_file), DigestCache(cache_file)  # both loaded an empty cache
    digest_file(a, cache=one)
    digest_file(b, cache=two)
    assert set(json.loads(cache_file.read_text())["entries"]) == {str(a), str(b)}
    assert list(tmp_path.glob(".digests.json.*")) == []  # no temporary files left behind


def test_unwritable_cache_location_only_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_bytes(b"")
    data = old_file(tmp_path / "data", b"x")
    with caplog.at_level(logging.WARNING, logger="agents.capture"):
        assert digest_file(data, cache=DigestCache(blocker / "digests.json")).id == "sha256:" + sha(b"x")
    assert "cannot write digest cache" in caplog.text


# --- git -----------------------------------------------------------------------


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    if not HAS_GIT:
        pytest.skip("git is not installed")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.delenv("GIT_CONFIG_GLOBAL", raising=False)
    root = tmp_path / "repo"
    root.mkdir()
    git(root, "init", "-q", "-b", "main")
    git(root, "config", "user.email", "ada@example.org")
    git(root, "config", "user.name", "Ada Lovelace")
    (root / "train.py").write_text("print('train')\n")
    (root / "weights.bin").write_bytes(bytes(range(256)))
    git(root, "add", ".")
    git(root, "commit", "-q", "-m", "first")
    return root


def test_clean_repository(repo: Path) -> None:
    state = git_state(repo / "train.py")
    assert state is not None
    assert state.commit == git(repo, "rev-parse", "HEAD")
    assert state.id == f"provault:git/{state.commit}"
    assert (state.branch, state.remote, state.dirty, state.diff_digest, state.untracked) == (
        "main",
        None,
        False,
        None,
        0,
    )
    assert state.root == str(repo)


def test_dirty_diff_has_a_stable_digest_that_tracks_the_change(repo: Path) -> None:
    (repo / "train.py").write_text("print('train harder')\n")
    first, second = git_state(repo), git_state(repo)
    assert first is not None and second is not None
    assert first.dirty and first.diff_digest is not None and first.diff_digest == second.diff_digest
    (repo / "train.py").write_text("print('train less')\n")
    third = git_state(repo)
    assert third is not None and third.diff_digest not in (None, first.diff_digest)
    (repo / "weights.bin").write_bytes(bytes(range(255, -1, -1)))  # binary change
    fourth = git_state(repo)
    assert fourth is not None and fourth.diff_digest not in (None, third.diff_digest)


def test_untracked_files_are_folded_in_per_the_documented_encoding(repo: Path) -> None:
    (repo / "notes.txt").write_bytes(b"untracked\n")
    state = git_state(repo)
    assert state is not None and state.dirty and state.untracked == 1
    expected = b"provault-git-dirty-v1\nd " + sha(b"").encode() + b"\n" + entry(b"f", sha(b"untracked\n"), b"notes.txt")
    assert state.diff_digest == "sha256:" + sha(expected)
    (repo / "notes.txt").write_bytes(b"changed\n")
    changed = git_state(repo)
    assert changed is not None and changed.diff_digest != state.diff_digest


def test_remote_credentials_are_stripped(repo: Path) -> None:
    git(repo, "remote", "add", "origin", "https://ada:ghp_secret@git.example.com:8443/ml/train.git")
    state = git_state(repo)
    assert state is not None and state.remote == "https://git.example.com:8443/ml/train.git"


@pytest.mark.parametrize(
    ("url", "clean"),
    [
        ("https://user:token@host/org/r.git", "https://host/org/r.git"),
        ("https://x-access-token@github.com/o/r", "https://github.com/o/r"),
        ("http://u:p@[::1]:8080/r", "http://[::1]:8080/r"),
        ("ssh://git@host/r.git", "ssh://git@host/r.git"),
        ("ssh://git:pw@host/r.git", "ssh://git@host/r.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        ("/srv/git/r.git", "/srv/git/r.git"),
    ],
)
def test_strip_credentials(url: str, clean: str) -> None:
    assert strip_credentials(url) == clean


def test_not_a_repository_and_no_commits_are_unknown(tmp_path: Path) -> None:
    if not HAS_GIT:
        pytest.skip("git is not installed")
    plain = tmp_path / "plain"
    plain.mkdir()
    assert git_state(plain) is None
    unknown = inspect_git(plain)
    assert isinstance(unknown, GitUnknown) and "not in a git work tree" in unknown.reason
    subprocess.run(["git", "init", "-q", str(tmp_path / "fresh")], check=True)
    fresh = inspect_git(tmp_path / "fresh")
    assert isinstance(fresh, GitUnknown) and "no commits" in fresh.reason


def test_missing_git_is_unknown_not_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    state = inspect_git(tmp_path)
    assert isinstance(state, GitUnknown) and "not installed" in state.reason
    assert git_state(tmp_path) is None
    with pytest.raises(CaptureError):
        git_state(tmp_path / "no-such-dir")


# --- environment and author ------------------------------------------------------


def test_environment_is_stable_and_named_by_its_canonical_json() -> None:
    one, two = environment(), environment()
    assert one == two and one.content_id == two.content_id
    raw = one.to_json()
    assert one.content_id == "sha256:" + sha(raw)
    doc = json.loads(raw)
    assert raw == json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    assert "hostname" not in doc and one.host_id.startswith("provault:host/")
    assert list(one.distributions) == sorted(one.distributions)
    assert any(d.startswith("pytest==") for d in one.distributions)
    assert one.distributions_digest == "sha256:" + sha("".join(f"{d}\n" for d in one.distributions).encode())


def test_image_digest_explicit_or_from_podman(tmp_path: Path) -> None:
    image = "sha256:" + "ab" * 32
    assert environment(image_digest=image, root=tmp_path).image_digest == image
    with pytest.raises(InvalidArgument, match="image_digest"):
        environment(image_digest="latest")
    assert environment(root=tmp_path).image_digest is None
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / ".containerenv").write_text(
        f'engine="podman-5.0"\nimage="docker.io/x:1"\nimageid="{"cd" * 32}"\n'
    )
    env = environment(root=tmp_path)
    assert (env.image_digest, env.container) == ("sha256:" + "cd" * 32, "podman")
    assert env.content_id != environment(root=tmp_path / "run").content_id


def test_author_explicit_then_git_then_os(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert author("bob@example.org").id == "provault:person/bob@example.org"
    with pytest.raises(InvalidArgument):
        author("  ")
    from_git = author(path=repo)
    assert (from_git.id, from_git.name, from_git.source) == ("provault:person/ada@example.org", "Ada Lovelace", "git")
    monkeypatch.setenv("PATH", str(repo / "no-bin"))
    from_os = author(path=repo)
    assert from_os.source == "os" and "@" in from_os.who and from_os.id.startswith("provault:person/")
