"""The environment a run executes in: interpreter, platform, installed distributions, container image."""

from __future__ import annotations

import json
import platform
import re
import socket
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from ledger.core.errors import InvalidArgument, expected_found
from ledger.core.ids import CONTENT_ID_PREFIX, content_id, is_content_id
from ledger.core.vocab import host_id

from ._common import StrPath

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
