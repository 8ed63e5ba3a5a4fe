"""The model wrapper and the WSGI / ASGI middleware: results untouched, one prediction logged per row / request."""

from __future__ import annotations

import asyncio
import io
import logging
import re
import subprocess
import sys
from pathlib import Path
from wsgiref.util import setup_testing_defaults

import pytest

from agents.serving import AsgiPredictionMiddleware, LoggedModel, PredictionMiddleware
from ledger.core.ids import content_id, parse_uuid7
from tests.agents.test_predictions import RecordingAgent, make_agent, make_logger

DOCS = Path(__file__).resolve().parents[2] / "docs" / "serving.md"


@pytest.fixture
def agent(tmp_path: Path):
    a = make_agent(tmp_path)
    yield a
    a.close(timeout=0.1)


@pytest.fixture
def logger(agent: RecordingAgent):
    lg = make_logger(agent, batch_max=1000, batch_interval_s=60)
    yield lg
    lg.close(timeout=0.1)


def logged_rows(logger, agent: RecordingAgent) -> list[list]:
    logger.flush(timeout=0.1)  # seals; the offline agent cannot deliver
    return agent.rows()


# --- LoggedModel ----------------------------------------------------------------------------


class Doubler:
    """A model that is not scikit-learn: anything with predict()."""

    def __init__(self) -> None:
        self.last = None

    def predict(self, X):
        self.last = [[2 * v for v in row] for row in X]
        return self.last

    classes_ = ("a", "b")


def test_any_object_with_predict_is_wrapped_and_its_result_returned_as_is(logger, agent) -> None:
    np = pytest.importorskip("numpy")
    model = LoggedModel(Doubler(), logger)
    X = [[1.0, 2.0], [3.0, 4.0]]
    result, ids = model.call("predict", X)
    assert result is model.estimator.last, "exactly the estimator's result"
    assert model.classes_ == ("a", "b"), "other attributes pass through"
    rows = logged_rows(logger, agent)
    assert [r[0] for r in rows] == ids and all(parse_uuid7(i) for i in ids)
    assert [r[2] for r in rows] == [content_id(np.asarray(X)[i].tobytes()) for i in range(2)]
    assert [r[3] for r in rows] == [[2.0, 4.0], [6.0, 8.0]]


def test_importing_the_serving_module_imports_no_framework() -> None:
    code = "import sys, agents.serving; print(sorted({'sklearn', 'numpy', 'flask', 'starlette'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "[]"


def test_the_wrapper_refuses_what_cannot_predict(logger) -> None:
    with pytest.raises(TypeError, match="predict"):
        LoggedModel(object(), logger)


def test_a_scikit_learn_model_logs_each_row(logger, agent) -> None:
    np = pytest.importorskip("numpy")
    pytest.importorskip("sklearn")
    from sklearn.datasets import load_iris  # noqa: PLC0415
    from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

    X, y = load_iris(return_X_y=True)
    estimator = LogisticRegression(max_iter=500).fit(X, y)
    model = LoggedModel(estimator, logger, id_fn=lambda X, i: f"iris-{i}")
    sample = X[::30]
    predicted = model.predict(sample)
    assert predicted.dtype == estimator.predict(sample).dtype and np.array_equal(predicted, estimator.predict(sample))
    proba = model.predict_proba(sample)
    assert np.array_equal(proba, estimator.predict_proba(sample))
    rows = logged_rows(logger, agent)
    n = len(sample)
    assert [r[0] for r in rows] == [f"iris-{i}" for i in range(n)] * 2
    assert [r[2] for r in rows[:n]] == [content_id(sample[i].tobytes()) for i in range(n)]
    assert [r[3] for r in rows[:n]] == predicted.tolist()
    assert [r[3] for r in rows[n:]] == proba.tolist()


def test_rows_changed_in_place_after_predict_keep_their_digest(logger, agent) -> None:
    np = pytest.importorskip("numpy")
    X = np.arange(6, dtype=np.float64).reshape(3, 2)
    expected = [content_id(X[i].tobytes()) for i in range(3)]
    LoggedModel(Doubler(), logger).predict(X)
    X[:] = 0  # a serving loop reusing its buffer
    assert [r[2] for r in logged_rows(logger, agent)] == expected


def test_a_logging_failure_never_breaks_predict_unless_strict(logger, caplog) -> None:
    logger.close(timeout=0.1)
    model = LoggedModel(Doubler(), logger)
    with caplog.at_level(logging.WARNING, logger="provault.agent.serving"):
        assert model.predict([[1.0]]) == [[2.0]]
    assert model.failures == 1 and "logging a prediction failed" in caplog.text
    with pytest.raises(Exception, match="closed"):
        LoggedModel(Doubler(), logger, strict=True).predict([[1.0]])


# --- WSGI -----------------------------------------------------------------------------------------


def environ(body: bytes = b"", **extra) -> dict:
    env = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/predict",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        **extra,
    }
    setup_testing_defaults(env)
    return env


class StartResponse:
    def __init__(self) -> None:
        self.status = None
        self.headers: list[tuple[str, str]] = []

    def __call__(self, status, headers, exc_info=None):
        self.status, self.headers = status, headers
        return lambda data: None

    def header(self, name: str) -> str | None:
        return next((v for k, v in self.headers if k.lower() == name.lower()), None)


def shouting_app(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"you said: ", body.upper()]


def test_wsgi_logs_one_prediction_with_body_digests_and_returns_the_id(logger, agent) -> None:
    app = PredictionMiddleware(shouting_app, logger)
    sr = StartResponse()
    result = app(environ(b"hello"), sr)
    body = b"".join(result)
    result.close()
    assert body == b"you said: HELLO" and sr.status == "200 OK"
    pid = sr.header("X-Prediction-Id")
    parse_uuid7(pid)
    assert logged_rows(logger, agent) == [[pid, agent.rows()[0][1], content_id(b"hello"), content_id(body)]]


def test_wsgi_uses_the_clients_id_and_digests_a_body_the_app_never_read(logger, agent) -> None:
    def lazy_app(environ, start_response):
        start_response("204 No Content", [])
        return []

    sr = StartResponse()
    result = PredictionMiddleware(lazy_app, logger)(environ(b"unread body", HTTP_X_PREDICTION_ID="req-42"), sr)
    assert list(result) == []
    result.close()
    assert sr.header("X-Prediction-Id") == "req-42"
    (row,) = logged_rows(logger, agent)
    assert row[0] == "req-42" and row[2] == content_id(b"unread body") and row[3] == content_id(b"")


def test_wsgi_streams_the_response_without_buffering_it(logger, agent) -> None:
    produced = []

    def streaming_app(environ, start_response):
        start_response("200 OK", [("X-Prediction-Id", "app-chosen-7")])
        for part in (b"one ", b"two ", b"three"):
            produced.append(part)
            yield part

    result = PredictionMiddleware(streaming_app, logger)(environ(), StartResponse())
    chunks = iter(result)
    assert next(chunks) == b"one " and produced == [b"one "], "the first chunk passes before the next is made"
    assert not agent.rows() and logger.pending == 0, "nothing logged before the body is complete"
    assert list(chunks) == [b"two ", b"three"]
    result.close()
    (row,) = logged_rows(logger, agent)
    assert row[0] == "app-chosen-7", "an id the application set is the prediction id"
    assert row[3] == content_id(b"one two three")


def test_wsgi_failures_are_the_apps_own_and_health_checks_are_skipped(logger, agent) -> None:
    def broken(environ, start_response):
        raise RuntimeError("model crashed")

    with pytest.raises(RuntimeError, match="model crashed"):
        PredictionMiddleware(broken, logger)(environ(b"x"), StartResponse())
    app = PredictionMiddleware(shouting_app, logger, should_log=lambda env: env["PATH_INFO"] != "/healthz")
    sr = StartResponse()
    assert b"".join(app(environ(b"ok", PATH_INFO="/healthz"), sr)) == b"you said: OK"
    assert sr.header("X-Prediction-Id") is None
    assert logged_rows(logger, agent) == []


def test_wsgi_keeps_serving_when_logging_fails(logger, caplog) -> None:
    logger.close(timeout=0.1)
    app = PredictionMiddleware(shouting_app, logger)
    with caplog.at_level(logging.WARNING, logger="provault.agent.serving"):
        result = app(environ(b"still"), StartResponse())
        assert b"".join(result) == b"you said: STILL"
        result.close()
    assert app.failures == 1 and "closed" in caplog.text


# --- ASGI -------------------------------------------------------------------------------------------


async def echo_app(scope, receive, send):
    if scope["type"] != "http":
        scope["seen"] = True
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"echo: ", "more_body": True})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def drive(app, *, parts=(b"ab", b"cd"), headers=()) -> list[dict]:
    scope = {"type": "http", "method": "POST", "path": "/predict", "headers": list(headers)}
    inbox = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


def test_asgi_logs_one_prediction_per_request_and_passes_every_message_on(logger, agent) -> None:
    sent = drive(AsgiPredictionMiddleware(echo_app, logger))
    assert [m["type"] for m in sent] == ["http.response.start", "http.response.body", "http.response.body"]
    assert [m["body"] for m in sent[1:]] == [b"echo: ", b"abcd"], "streamed chunk by chunk"
    headers = dict(sent[0]["headers"])
    pid = headers[b"x-prediction-id"].decode()
    parse_uuid7(pid)
    assert headers[b"content-type"] == b"text/plain"
    (row,) = logged_rows(logger, agent)
    assert row[0] == pid and row[2] == content_id(b"abcd") and row[3] == content_id(b"echo: abcd")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", row[1])


def test_asgi_takes_the_clients_id_and_leaves_other_scopes_alone(logger, agent) -> None:
    sent = drive(AsgiPredictionMiddleware(echo_app, logger), headers=[(b"X-Prediction-Id", b"req-9")])
    assert dict(sent[0]["headers"])[b"x-prediction-id"] == b"req-9"
    lifespan = {"type": "lifespan"}
    asyncio.run(AsgiPredictionMiddleware(echo_app, logger)(lifespan, None, None))
    assert lifespan.get("seen") is True, "the very same scope reached the app"
    assert [r[0] for r in logged_rows(logger, agent)] == ["req-9"]


def test_asgi_keeps_serving_when_logging_fails(logger) -> None:
    logger.close(timeout=0.1)
    app = AsgiPredictionMiddleware(echo_app, logger)
    assert [m.get("body") for m in drive(app)[1:]] == [b"echo: ", b"abcd"]
    assert app.failures == 1


# --- docs/serving.md runs ---------------------------------------------------------------------------


def test_the_serving_guide_examples_run() -> None:
    pytest.importorskip("sklearn")
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```$", text, re.S | re.M)
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "docs_serving"}
    try:
        for i, code in enumerate(blocks):
            exec(compile(code, f"<docs/serving.md block {i}>", "exec"), namespace)
    finally:
        for name in ("logger", "agent"):
            if hasattr(namespace.get(name), "close"):
                namespace[name].close(timeout=0.1)
