"""The MLflow webhook receiver: deliveries signed by MLflow's own signing code, and every bad one refused."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.webhooks.delivery import _generate_hmac_signature

from agents.mlflow._marks import Marks
from agents.mlflow.webhook import Receiver, Refused, WebhookApp, WebhookServer
from agents.runtime import Agent, agent_from_settings
from agents.spool import Spool
from ledger.config import NatsSettings, Settings
from ledger.core.keys import Ed25519Signer
from ledger.metrics import REGISTRY

SECRET = "s3cret-shared-with-mlflow"


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """A receiver's agent whose ledger is out of reach: what it records stays in its spool, where the test reads it."""
    settings = Settings(data_dir=tmp_path / "data", nats=NatsSettings(url="nats://127.0.0.1:9"))
    a = agent_from_settings(settings, producer_id="mlflow-webhook/test", signer=Ed25519Signer.generate())
    try:
        yield a
    finally:
        a.close(timeout=0.2)


@pytest.fixture
def receiver(agent: Agent, tmp_path: Path) -> Iterator[Receiver]:
    marks = Marks(tmp_path / "marks")
    yield Receiver(agent, marks, secret=SECRET.encode(), window_s=300)
    marks.close()


def spooled(agent: Agent) -> list[dict]:
    """The events the agent spooled (it is closed first: its spool is its own while it is open)."""
    agent.close(timeout=0.2)
    spool = Spool(agent.spool.dir)
    try:
        return [json.loads(base64.b64decode(json.loads(r.envelope)["payload"])) for r in spool.take(100)]
    finally:
        spool.close()


def delivery(event: str, data: dict, *, delivery_id: str = "d-1", stamp: int | None = None, secret: str = SECRET):
    entity, _, action = event.rpartition(".")
    body = json.dumps({"entity": entity, "action": action, "timestamp": "2026-12-07T00:00:00+00:00", "data": data})
    stamp_text = str(int(time.time()) if stamp is None else stamp)
    headers = {
        "X-MLflow-Delivery-Id": delivery_id,
        "X-MLflow-Timestamp": stamp_text,
        "X-MLflow-Signature": _generate_hmac_signature(secret, delivery_id, stamp_text, body),
    }
    return headers, body.encode()


VERSION = {"name": "fraud", "version": "3", "source": "models:/m-abc", "run_id": "r1", "tags": {}, "description": None}


def test_a_signed_version_alias_and_alias_deletion_are_recorded_once_each(receiver: Receiver, agent: Agent) -> None:
    answers = [
        receiver.handle(*delivery("model_version.created", VERSION, delivery_id="d-1")),
        receiver.handle(
            *delivery(
                "model_version_alias.created", {"name": "fraud", "alias": "prod", "version": "3"}, delivery_id="d-2"
            )
        ),
        receiver.handle(
            *delivery("model_version_alias.deleted", {"name": "fraud", "alias": "prod"}, delivery_id="d-3")
        ),
    ]
    assert [a["status"] for a in answers] == ["accepted"] * 3
    events = spooled(agent)
    assert [e["kind"] for e in events] == ["model.registered", "model.deployed", "model.undeployed"]
    version = events[0]["prov"]["entity"]["provault:mlflow/registered/fraud/3"]
    assert version["provault:actorUnknown"] == "MLflow webhooks do not say who made the change"
    assert events[0]["prov"]["wasDerivedFrom"]["_:d1"]["prov:usedEntity"] == "provault:mlflow/model/m-abc"
    deploy = next(iter(events[1]["prov"]["activity"].values()))
    assert deploy["provault:target"] == "models:/fraud@prod"
    assert [a["event_id"] for a in answers] == [e["id"] for e in events]


def test_a_retried_delivery_is_a_duplicate_and_adds_nothing(receiver: Receiver, agent: Agent) -> None:
    first = receiver.handle(*delivery("model_version.created", VERSION, delivery_id="same"))
    again = receiver.handle(*delivery("model_version.created", VERSION, delivery_id="same"))
    assert again == {"status": "duplicate", "delivery": "same", "event_id": first["event_id"]}
    assert len(spooled(agent)) == 1


def test_events_provault_does_not_record_are_ignored_but_answered(receiver: Receiver, agent: Agent) -> None:
    answer = receiver.handle(
        *delivery("model_version_tag.set", {"name": "fraud", "version": "3", "key": "k", "value": "v"})
    )
    assert answer["status"] == "ignored" and answer["event"] == "model_version_tag.set"
    assert spooled(agent) == []


def _tampered_signature():
    headers, body = delivery("model_version.created", VERSION)
    return headers, body.replace(b'"3"', b'"4"')


def _without(header: str):
    headers, body = delivery("model_version.created", VERSION)
    del headers[header]
    return headers, body


def _with(header: str, value: str):
    headers, body = delivery("model_version.created", VERSION)
    headers[header] = value
    return headers, body


BAD = {
    "no signature": (
        _without("X-MLflow-Signature"),
        401,
        "unsigned delivery: the header(s) X-MLflow-Signature are missing",
    ),
    "no timestamp": (
        _without("X-MLflow-Timestamp"),
        401,
        "unsigned delivery: the header(s) X-MLflow-Timestamp are missing",
    ),
    "no delivery id": (
        _without("X-MLflow-Delivery-Id"),
        401,
        "unsigned delivery: the header(s) X-MLflow-Delivery-Id are missing",
    ),
    "another version": (
        _with("X-MLflow-Signature", "v2,AAAA"),
        401,
        "X-MLflow-Signature: expected 'v1,<base64 HMAC-SHA256>', found 'v2,AAAA'",
    ),
    "not base64": (_with("X-MLflow-Signature", "v1,!!!"), 401, "X-MLflow-Signature: the signature is not base64"),
    "timestamp not a number": (
        _with("X-MLflow-Timestamp", "yesterday"),
        401,
        "X-MLflow-Timestamp: expected Unix seconds, found 'yesterday'",
    ),
    "tampered body": (_tampered_signature(), 401, "the signature does not match this body under the receiver's secret"),
    "another secret": (
        delivery("model_version.created", VERSION, secret="guess"),
        401,
        "the signature does not match this body under the receiver's secret",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_unsigned_or_forged_delivery_is_refused_with_its_reason_and_nothing_is_recorded(
    receiver: Receiver, agent: Agent, case: str
) -> None:
    (headers, body), status, message = BAD[case]
    with pytest.raises(Refused) as refused:
        receiver.handle(headers, body)
    assert (refused.value.status, refused.value.message) == (status, message)
    assert spooled(agent) == []


@pytest.mark.parametrize("offset", [-301, 301])
def test_a_delivery_outside_the_replay_window_is_refused(receiver: Receiver, agent: Agent, offset: int) -> None:
    now = 1_800_000_000
    headers, body = delivery("model_version.created", VERSION, stamp=now + offset)
    with pytest.raises(Refused) as refused:
        receiver.handle(headers, body, now=now)
    assert refused.value.status == 401
    assert refused.value.message == (
        "X-MLflow-Timestamp is 301 s from the receiver's clock (at most 300 s): a replay or a stale delivery"
    )
    assert spooled(agent) == []


def _signed_raw(body: bytes) -> tuple[dict, bytes]:
    stamp = str(int(time.time()))
    signature = _generate_hmac_signature(SECRET, "raw", stamp, body.decode("utf-8", "replace"))
    return {"X-MLflow-Delivery-Id": "raw", "X-MLflow-Timestamp": stamp, "X-MLflow-Signature": signature}, body


MALFORMED = {
    "not JSON": (
        b"{not json",
        "the body is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)",
    ),
    "an array": (b"[]", "the body must be a JSON object, found list"),
    "no entity": (
        b'{"action": "created", "data": {}}',
        "the body must have the string members 'entity' and 'action' (MLflow's webhook payload)",
    ),
    "data not an object": (
        b'{"entity": "model_version", "action": "created", "data": 3}',
        "model_version.created: 'data' must be an object, found int",
    ),
    "no name": (
        b'{"entity": "model_version", "action": "created", "data": {"version": "1"}}',
        "model_version.created: data.name must be a non-empty string, found None",
    ),
    "no version": (
        b'{"entity": "model_version", "action": "created", "data": {"name": "m"}}',
        "model_version.created: data.version must be a non-empty string, found None",
    ),
    "alias without alias": (
        b'{"entity": "model_version_alias", "action": "created", "data": {"name": "m", "version": "1"}}',
        "model_version_alias.created: data.alias must be a non-empty string, found None",
    ),
    "source not a string": (
        b'{"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1", "source": 5}}',
        "model_version.created: data.source must be a string or null, found 5",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_each_malformed_but_signed_body_is_a_400_naming_the_member(receiver: Receiver, agent: Agent, case: str) -> None:
    body, message = MALFORMED[case]
    with pytest.raises(Refused) as refused:
        receiver.handle(*_signed_raw(body))
    assert (refused.value.status, refused.value.message) == (400, message)
    assert spooled(agent) == []


def test_the_http_receiver_answers_with_the_statuses_of_docs_mlflow(receiver: Receiver, agent: Agent) -> None:
    def count(outcome: str) -> float:
        return REGISTRY.get_sample_value("provault_mlflow_webhook_deliveries_total", {"outcome": outcome}) or 0.0

    before = {o: count(o) for o in ("accepted", "401", "413", "400")}
    server = WebhookServer(WebhookApp(receiver, max_body_bytes=2048), listen="127.0.0.1:0", tls=None)
    server.start()
    try:

        def post(headers: dict, body: bytes) -> tuple[int, dict]:
            request = urllib.request.Request(
                server.url, data=body, method="POST", headers={"Content-Type": "application/json", **headers}
            )
            try:
                with urllib.request.urlopen(request, timeout=10) as response:
                    return response.status, json.loads(response.read())
            except urllib.error.HTTPError as e:
                return e.code, json.loads(e.read())

        assert post(*delivery("model_version.created", VERSION))[0] == 200
        status, answer = post(*_without("X-MLflow-Signature"))
        assert (status, answer["message"]) == (401, "unsigned delivery: the header(s) X-MLflow-Signature are missing")
        status, answer = post(*_signed_raw(b"x" * 4096))
        assert (status, answer["message"]) == (413, "the body is over the limit of 2048 bytes (mlflow.max_body_bytes)")
        status, answer = post(*_signed_raw(b"[]"))
        assert (status, answer["message"]) == (400, "the body must be a JSON object, found list")
    finally:
        server.stop()
    assert [e["kind"] for e in spooled(agent)] == ["model.registered"]
    assert {o: count(o) - n for o, n in before.items()} == {"accepted": 1, "401": 1, "413": 1, "400": 1}


def test_a_non_loopback_listener_without_tls_is_refused(receiver: Receiver) -> None:
    from ledger.core.errors import ConfigError  # noqa: PLC0415

    with pytest.raises(ConfigError, match=r"mlflow.webhook_listen: 0.0.0.0:9450 is not a loopback address"):
        WebhookServer(WebhookApp(receiver, max_body_bytes=2048), listen="0.0.0.0:9450", tls=None)


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        (None, "mlflow.webhook_secret_file is unset: the receiver refuses to accept unsigned webhooks"),
        ("", "is empty"),
        ("missing", "cannot read"),
    ],
)
def test_the_receiver_does_not_start_without_a_secret(tmp_path: Path, capsys, secret: str | None, message: str) -> None:
    from ledger.cli import main  # noqa: PLC0415

    args = ["mlflow", "webhook", "serve", "--data-dir", str(tmp_path / "data")]
    if secret is not None:
        path = tmp_path / "secret"
        if secret != "missing":
            path.write_text(secret)
        args += ["--secret-file", str(path)]
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0 and message in err and "config" in err
