"""Instrumenting a model server: a scikit-learn style wrapper and WSGI / ASGI middleware.

All three log through a :class:`agents.predictions.PredictionLogger` and add
nothing to the request path beyond an O(1) ``log()`` per prediction (and, for
the middleware, an incremental SHA-256 of the request and response bodies as
they stream past: nothing is buffered).

None of them lets logging break the application: an error while logging is
counted in ``failures`` and warned about (the first and every 1000th), and the
application's own result is returned unchanged.  Pass ``strict=True`` to
:class:`LoggedModel` to have logging errors raised instead.

Nothing here imports scikit-learn or a web framework: the wrapper needs an
object with ``predict``; the middleware speak plain WSGI (PEP 3333) and ASGI 3.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ledger.core.ids import CONTENT_ID_PREFIX, new_event_id

from .predictions import PredictionLogger

log = logging.getLogger("provault.agent.serving")

WARN_EVERY = 1000
MAX_HEADER_ID = 200
DRAIN_CHUNK = 64 * 1024


class _Failures:
    """Counts logging failures and warns on the first and every WARN_EVERY-th."""

    def __init__(self, what: str) -> None:
        self.what = what
        self.count = 0
        self._lock = threading.Lock()

    def note(self, e: BaseException) -> None:
        with self._lock:
            self.count += 1
            n = self.count
        if n == 1 or n % WARN_EVERY == 0:
            log.warning(
                "%s: logging a prediction failed (%s: %s); the result was returned unchanged; %d failure(s) so far",
                self.what,
                type(e).__name__,
                e,
                n,
            )


def _header_id(value: str | None) -> str | None:
    """A client-supplied prediction id, if usable (visible ASCII, 1..MAX_HEADER_ID characters)."""
    if value and len(value) <= MAX_HEADER_ID and value.isascii() and value.isprintable() and " " not in value:
        return value
    return None


# --- scikit-learn style models ------------------------------------------------------------


def _as_rows(X: Any, snapshot: bool) -> Any:
    """Something whose ``[i]`` is row i and whose rows have ``tobytes`` where possible."""
    if hasattr(X, "to_numpy"):  # pandas
        return X.to_numpy(copy=snapshot)
    if hasattr(X, "tocsr"):  # scipy.sparse
        return X.tocsr(copy=snapshot)
    if hasattr(X, "shape") and hasattr(X, "tobytes"):
        return X.copy() if snapshot else X
    try:
        import numpy  # noqa: PLC0415 - optional: lists become arrays when numpy is there

        return numpy.asarray(X)
    except ImportError:
        return X
    except ValueError:  # ragged rows: digest them as JSON
        return X


class LoggedModel:
    """Wraps an estimator: ``predict`` / ``predict_proba`` log one prediction per row.

    The result is exactly the estimator's.  Each row's id comes from
    ``id_fn(X, i)`` or is a fresh UUIDv7; its input digest is the ``sha256:``
    of the row's bytes (``row.tobytes()``, computed later on the logger's
    thread; ``snapshot=True`` copies ``X`` once per call so rows changed in
    place afterwards cannot change the digest); its output is the row's
    result as a short JSON value.  Other attributes pass through to the
    estimator, unlogged.
    """

    def __init__(
        self,
        estimator: Any,
        logger: PredictionLogger,
        id_fn: Callable[[Any, int], str] | None = None,
        *,
        snapshot: bool = True,
        strict: bool = False,
    ) -> None:
        if not callable(getattr(estimator, "predict", None)):
            raise TypeError(f"expected an estimator with a predict method, found {type(estimator).__name__}")
        self.estimator = estimator
        self.logger = logger
        self.id_fn = id_fn
        self.snapshot = snapshot
        self.strict = strict
        self._failures = _Failures(f"LoggedModel({type(estimator).__name__})")

    @property
    def failures(self) -> int:
        return self._failures.count

    def predict(self, X: Any, *args: Any, **kwargs: Any) -> Any:
        return self.call("predict", X, *args, **kwargs)[0]

    def predict_proba(self, X: Any, *args: Any, **kwargs: Any) -> Any:
        return self.call("predict_proba", X, *args, **kwargs)[0]

    def call(self, method: str, X: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
        """``estimator.<method>(X, ...)`` and the prediction ids logged for its rows."""
        result = getattr(self.estimator, method)(X, *args, **kwargs)
        try:
            ids = self._log_rows(X, result)
        except Exception as e:
            if self.strict:
                raise
            self._failures.note(e)
            ids = []
        return result, ids

    def _log_rows(self, X: Any, result: Any) -> list[str]:
        rows = _as_rows(X, self.snapshot)
        n = len(result)
        count = rows.shape[0] if hasattr(rows, "shape") else len(rows)
        if count != n:
            raise ValueError(f"the estimator returned {n} results for {count} input rows")
        id_fn, log_one = self.id_fn, self.logger.log
        ids = [id_fn(X, i) for i in range(n)] if id_fn else [new_event_id() for _ in range(n)]
        for i in range(n):
            log_one(ids[i], rows[i], result[i])
        return ids

    def __getattr__(self, name: str) -> Any:
        if name == "estimator":  # not set yet (during unpickling): no recursion
            raise AttributeError(name)
        return getattr(self.estimator, name)


# --- WSGI ---------------------------------------------------------------------------------


class _HashingInput:
    """``wsgi.input`` that hashes what the application reads, and can read (and hash) the rest."""

    def __init__(self, stream: Any, length: int | None) -> None:
        self._stream = stream
        self._left = length  # None: read to EOF (wsgi.input_terminated)
        self.hash = hashlib.sha256()

    def _limit(self, size: int | None) -> int | None:
        if self._left is None:
            return size if size is not None and size >= 0 else None
        return self._left if size is None or size < 0 else min(size, self._left)

    def _seen(self, data: bytes) -> bytes:
        self.hash.update(data)
        if self._left is not None:
            self._left -= len(data)
        return data

    def read(self, size: int | None = -1) -> bytes:
        n = self._limit(size)
        if n == 0:
            return b""
        return self._seen(self._stream.read() if n is None else self._stream.read(n))

    def readline(self, size: int | None = -1) -> bytes:
        n = self._limit(size)
        if n == 0:
            return b""
        return self._seen(self._stream.readline() if n is None else self._stream.readline(n))

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines, total = [], 0
        while line := self.readline():
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def digest(self) -> str:
        """The content id of the whole body: what is left is read (and discarded) first."""
        while self.read(DRAIN_CHUNK):
            pass
        return CONTENT_ID_PREFIX + self.hash.hexdigest()


class _LoggedResponse:
    """The application's iterable, passed through chunk by chunk while hashed.

    Once the body was iterated to its end the prediction is logged (once);
    ``close()`` closes the application's iterable as PEP 3333 requires.
    """

    def __init__(self, result: Iterable[bytes], out: Any, done: Callable[[], None]) -> None:
        self._result = result
        self._out = out
        self._done = done
        self._complete = False
        self._logged = False

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._result:
            self._out.update(chunk)
            yield chunk
        self._complete = True
        self._log()

    def _log(self) -> None:
        if self._complete and not self._logged:
            self._logged = True
            self._done()

    def close(self) -> None:
        try:
            close = getattr(self._result, "close", None)
            if close is not None:
                close()
        finally:
            self._log()


class PredictionMiddleware:
    """WSGI middleware: one prediction per request.

    The id is the request's ``id_header`` (when usable) or a fresh UUIDv7, returned
    in the same response header (unless the application set it, in which case
    the application's value is the id) and put in ``environ['provault.prediction_id']``.
    Input: ``sha256:`` of the request body; output: ``sha256:`` of the response
    body.  ``should_log(environ)`` can exclude requests (health checks).
    A request whose application raises is not logged.
    """

    def __init__(
        self,
        app: Callable,
        logger: PredictionLogger,
        id_header: str = "X-Prediction-Id",
        *,
        should_log: Callable[[dict], bool] | None = None,
    ) -> None:
        self.app = app
        self.logger = logger
        self.id_header = id_header
        self.should_log = should_log
        self._environ_key = "HTTP_" + id_header.upper().replace("-", "_")
        self._failures = _Failures(f"PredictionMiddleware({getattr(app, '__name__', type(app).__name__)})")

    @property
    def failures(self) -> int:
        return self._failures.count

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        if self.should_log is not None and not self.should_log(environ):
            return self.app(environ, start_response)
        try:
            pid = _header_id(environ.get(self._environ_key)) or new_event_id()
            body = _HashingInput(environ["wsgi.input"], _content_length(environ))
            environ["wsgi.input"] = body
            environ["provault.prediction_id"] = pid
        except Exception as e:
            self._failures.note(e)
            return self.app(environ, start_response)
        state = {"id": pid}
        out = hashlib.sha256()
        name = self.id_header.lower()

        def _start_response(status: str, headers: list, exc_info: Any = None) -> Callable:
            try:
                given = next((v for k, v in headers if k.lower() == name), None)
                if given is None:
                    headers = [*headers, (self.id_header, pid)]
                elif _header_id(given):
                    state["id"] = given
            except Exception as e:
                self._failures.note(e)
            write = start_response(status, headers, exc_info) if exc_info else start_response(status, headers)

            def _write(data: bytes) -> None:
                out.update(data)
                write(data)

            return _write

        def _done() -> None:
            try:
                self.logger.log(state["id"], None, CONTENT_ID_PREFIX + out.hexdigest(), input_digest=body.digest())
            except Exception as e:
                self._failures.note(e)

        return _LoggedResponse(self.app(environ, _start_response), out, _done)


def _content_length(environ: dict) -> int | None:
    if environ.get("wsgi.input_terminated"):
        return None
    try:
        return max(int(environ.get("CONTENT_LENGTH") or 0), 0)
    except ValueError:
        return 0


# --- ASGI ---------------------------------------------------------------------------------


class AsgiPredictionMiddleware:
    """ASGI 3 middleware: one prediction per HTTP request (other scopes pass through).

    Same ids, header and digests as :class:`PredictionMiddleware`; the input
    digest covers the body the application received (all of it, for any
    application that reads its request).  The prediction is logged after the
    last body chunk was sent.  With ``backpressure='block'`` and a full buffer
    the wait happens in a worker thread, never on the event loop.
    """

    def __init__(
        self,
        app: Callable,
        logger: PredictionLogger,
        id_header: str = "X-Prediction-Id",
        *,
        should_log: Callable[[dict], bool] | None = None,
    ) -> None:
        self.app = app
        self.logger = logger
        self.id_header = id_header
        self.should_log = should_log
        self._name = id_header.lower().encode("latin-1")
        self._failures = _Failures(f"AsgiPredictionMiddleware({getattr(app, '__name__', type(app).__name__)})")

    @property
    def failures(self) -> int:
        return self._failures.count

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope.get("type") != "http" or (self.should_log is not None and not self.should_log(scope)):
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope.get("headers", ()) if k.lower() == self._name), None)
        pid = _header_id(given.decode("latin-1") if given is not None else None) or new_event_id()
        scope = {**scope, "provault.prediction_id": pid}
        request, response = hashlib.sha256(), hashlib.sha256()
        state = {"id": pid}

        async def _receive() -> dict:
            message = await receive()
            if message.get("type") == "http.request":
                request.update(message.get("body", b""))
            return message

        async def _send(message: dict) -> None:
            kind = message.get("type")
            if kind == "http.response.start":
                message = self._with_header(message, state)
            elif kind == "http.response.body":
                response.update(message.get("body", b""))
            await send(message)
            if kind == "http.response.body" and not message.get("more_body", False):
                await self._log(state["id"], request, response)

        await self.app(scope, _receive, _send)

    def _with_header(self, message: dict, state: dict) -> dict:
        try:
            headers = list(message.get("headers", ()))
            given = next((v for k, v in headers if k.lower() == self._name), None)
            if given is None:
                headers.append((self._name, state["id"].encode("latin-1")))
                return {**message, "headers": headers}
            if _header_id(given.decode("latin-1")):
                state["id"] = given.decode("latin-1")
        except Exception as e:
            self._failures.note(e)
        return message

    async def _log(self, pid: str, request: Any, response: Any) -> None:
        args = (pid, None, CONTENT_ID_PREFIX + response.hexdigest())
        kwargs = {"input_digest": CONTENT_ID_PREFIX + request.hexdigest()}
        try:
            if self.logger.would_block:
                await asyncio.to_thread(self.logger.log, *args, **kwargs)
            else:
                self.logger.log(*args, **kwargs)
        except Exception as e:
            self._failures.note(e)
