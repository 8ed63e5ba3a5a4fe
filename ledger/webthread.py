"""An aiohttp application served on its own event loop in a thread, started and stopped like the gRPC services.

The OpenLineage endpoint and the lineage explorer both run this way, so ``provault up`` and the ``serve``
commands hold them as stack pieces: ``start()`` returns once the socket listens (or raises
:class:`ServerStartError` naming the address), ``stop()`` answers what is in flight and closes the loop.
"""

from __future__ import annotations

import asyncio
import signal
import ssl
import threading
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from ledger.core.errors import ConfigError, ProvaultError, ServerStartError
from ledger.credentials import is_loopback

START_TIMEOUT_S = 30.0


def tls_context(cert: str | None, key: str | None, *, keys: str) -> ssl.SSLContext | None:
    """A server TLS context from a certificate and key file, None when neither is set; ``keys`` names the settings."""
    if not cert and not key:
        return None
    if not cert or not key:
        raise ConfigError([f"{keys}: set both (HTTPS) or neither"])
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        ctx.load_cert_chain(Path(cert).expanduser(), Path(key).expanduser())
    except (OSError, ssl.SSLError) as e:
        raise ConfigError([f"{keys}: cannot load {cert}: {e}"]) from None
    return ctx


def refuse_clear_text(listen: str, tls: ssl.SSLContext | None, *, setting: str, tls_setting: str, what: str) -> None:
    """ConfigError when ``listen`` is off loopback and there is no TLS: ``what`` would cross the network in clear."""
    if tls is None and not is_loopback(listen):
        prefix = tls_setting.rsplit("_", 1)[0]
        raise ConfigError(
            [
                f"{setting}: {listen} is not a loopback address and {tls_setting} is unset: {what} would cross the network in clear"
            ],
            hint=f"set {tls_setting} and {prefix}_key, or listen on 127.0.0.1",
        )


class WebServerThread:
    """``make_app()`` served at ``listen`` (HOST:PORT, port 0 for any) over HTTP, or HTTPS with ``tls``."""

    log = Path("(stderr)")
    """Where its failures are written (the process's own log), for the supervisor's messages."""

    def __init__(
        self,
        make_app: Callable[[], web.Application],
        *,
        listen: str,
        tls: ssl.SSLContext | None,
        what: str,
        thread_name: str,
    ) -> None:
        self.make_app = make_app
        self.listen = listen
        self.tls = tls
        self.what = what
        self.thread_name = thread_name
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def base_url(self) -> str:
        """``http(s)://host:port`` of the bound socket."""
        host = self.listen.rsplit(":", 1)[0].strip("[]")
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls else 'http'}://{host}:{self.port}"

    @property
    def address(self) -> str:
        return f"{self.listen.rsplit(':', 1)[0]}:{self.port}"

    def start(self) -> None:
        ready = threading.Event()
        failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, failure), name=self.thread_name, daemon=True)
        self._thread.start()
        if not ready.wait(START_TIMEOUT_S) or failure:
            self.stop()
            cause = failure[0] if failure else TimeoutError(f"no answer within {START_TIMEOUT_S:.0f} s")
            raise ServerStartError(f"{self.what} could not listen on {self.listen}: {cause}") from None

    def _serve(self, ready: threading.Event, failure: list[BaseException]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._open())
        except BaseException as e:
            failure.append(e)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._runner.cleanup())
            loop.close()

    async def _open(self) -> None:
        host, _, port = self.listen.rpartition(":")
        self._runner = web.AppRunner(self.make_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host.strip("[]") or None, int(port), ssl_context=self.tls, backlog=512)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port when listen asked for 0

    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and self._thread is not None and self._thread.is_alive():
            loop.call_soon_threadsafe(loop.stop)
            self._thread.join(START_TIMEOUT_S)


class ServerStopped(ProvaultError):
    """A ``serve`` command's server died on its own (its log says why)."""

    reason = "server_stopped"


def serve_until_signalled(server: WebServerThread, banner: str) -> int:
    """A ``serve`` command's life: start ``server``, print ``banner``, serve until SIGINT or SIGTERM (0), or raise
    :class:`ServerStopped` when it stops by itself; it is stopped and the signal handlers restored either way."""
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        print(banner, flush=True)
        while not stop.wait(0.5):
            if not server.running():
                raise ServerStopped(f"{server.what} stopped unexpectedly")
        return 0
    finally:
        server.stop()
        for s, handler in previous.items():
            signal.signal(s, handler)
