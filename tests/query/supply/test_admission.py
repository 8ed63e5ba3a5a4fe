"""The admission endpoint reads real AdmissionReview v1 JSON and answers as Kubernetes expects.

These tests drive the review handling and the HTTPS server with a decider written here (a function of the
model digest); the gate behind the real decider is tested end to end in test_gate_admission.py.
"""

from __future__ import annotations

import copy
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ledger.core.errors import ConfigError
from query.supply.admission import (
    ANNOTATION,
    AdmissionApp,
    AdmissionServer,
    MalformedReview,
    Verdict,
    review,
)
from tests.deploy.tlskit import make_tls

GOOD = "sha256:" + "22" * 32
BAD = "sha256:" + "33" * 32

# As the API server sends it for `kubectl apply` of a Pod (admission.k8s.io/v1, abridged to what matters).
POD_REVIEW: dict[str, Any] = {
    "apiVersion": "admission.k8s.io/v1",
    "kind": "AdmissionReview",
    "request": {
        "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
        "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "name": "sentiment-7d9f",
        "namespace": "serving",
        "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": []},
        "object": {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "sentiment-7d9f",
                "namespace": "serving",
                "annotations": {ANNOTATION: GOOD, "other": "x"},
            },
            "spec": {"containers": [{"name": "model", "image": "registry.example/sentiment:1"}]},
        },
        "oldObject": None,
        "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    },
}


def _deployment_review(annotations: dict[str, Any]) -> dict[str, Any]:
    r = copy.deepcopy(POD_REVIEW)
    r["request"]["kind"] = {"group": "apps", "version": "v1", "kind": "Deployment"}
    r["request"]["object"] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "sentiment", "annotations": {ANNOTATION: BAD}},  # the Deployment's own: not its pods'
        "spec": {
            "replicas": 2,
            "template": {"metadata": {"labels": {"app": "s"}, "annotations": annotations}, "spec": {"containers": []}},
        },
    }
    return r


class Gate:
    """Allows GOOD, denies everything else; remembers what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[str, bool]] = []

    def __call__(self, model: str, dry_run: bool) -> Verdict:
        self.asked.append((model, dry_run))
        if model == GOOD:
            return Verdict(allowed=True, message=f"provault gate allowed {model}")
        return Verdict(allowed=False, message=f"provault gate denied {model}: approvals: 0 of 2 approvals")


def test_an_annotated_pod_is_decided_by_the_gate_and_the_uid_echoed() -> None:
    gate = Gate()
    answer = review(POD_REVIEW, gate)
    assert answer == {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": "705ab4f5-6393-11e8-b7cc-42010a800002", "allowed": True},
    }
    assert gate.asked == [(GOOD, False)]


def test_a_denied_model_is_refused_with_403_and_the_failed_rules() -> None:
    r = copy.deepcopy(POD_REVIEW)
    r["request"]["object"]["metadata"]["annotations"][ANNOTATION] = BAD
    r["request"]["dryRun"] = True
    gate = Gate()
    response = review(r, gate)["response"]
    assert response["allowed"] is False
    assert response["status"] == {
        "code": 403,
        "reason": "Forbidden",
        "message": f"provault gate denied {BAD}: approvals: 0 of 2 approvals",
    }
    assert gate.asked == [(BAD, True)], "a dry-run review is decided but not recorded"


@pytest.mark.parametrize(
    ("kind", "path"),
    [
        ("Deployment", ("spec", "template")),
        ("StatefulSet", ("spec", "template")),
        ("Job", ("spec", "template")),
        ("CronJob", ("spec", "jobTemplate", "spec", "template")),
    ],
)
def test_workloads_are_gated_by_their_pod_templates_annotation(kind: str, path: tuple[str, ...]) -> None:
    r = _deployment_review({ANNOTATION: GOOD})
    obj = r["request"]["object"]
    template = obj["spec"].pop("template")
    obj["kind"] = kind
    node = obj
    for part in path[:-1]:
        node = node.setdefault(part, {})
    node[path[-1]] = template
    gate = Gate()
    assert review(r, gate)["response"]["allowed"] is True
    assert gate.asked == [(GOOD, False)]


def test_objects_without_the_annotation_pass_with_a_warning_unless_one_is_required() -> None:
    r = _deployment_review({})
    gate = Gate()
    response = review(r, gate)["response"]
    assert response["allowed"] is True and response["warnings"] == [f"no {ANNOTATION} annotation: not gated"]
    required = review(r, gate, require_annotation=True)["response"]
    assert required["allowed"] is False
    assert required["status"]["message"] == f"no {ANNOTATION} annotation names the model it serves"
    assert gate.asked == []


def test_a_delete_carries_no_object_and_is_allowed_even_when_annotations_are_required() -> None:
    r = copy.deepcopy(POD_REVIEW)
    r["request"]["operation"] = "DELETE"
    r["request"]["oldObject"], r["request"]["object"] = r["request"]["object"], None
    assert review(r, Gate(), require_annotation=True)["response"]["allowed"] is True


def test_kinds_that_run_no_pods_are_not_gated() -> None:
    r = copy.deepcopy(POD_REVIEW)
    r["request"]["object"] = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"annotations": {ANNOTATION: BAD}}}
    assert review(r, Gate())["response"]["allowed"] is True


@pytest.mark.parametrize("value", ["sha256:" + "22" * 31, "GOOD", 42, "sha256:" + "AB" * 32])
def test_a_malformed_model_annotation_refuses_the_object_not_the_review(value: Any) -> None:
    r = copy.deepcopy(POD_REVIEW)
    r["request"]["object"]["metadata"]["annotations"][ANNOTATION] = value
    gate = Gate()
    response = review(r, gate)["response"]
    assert response["allowed"] is False and response["uid"] == POD_REVIEW["request"]["uid"]
    assert response["status"]["message"].startswith(f"annotation {ANNOTATION}: expected a model digest")
    assert gate.asked == []


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    r = copy.deepcopy(POD_REVIEW)
    node = r
    for part in path[:-1]:
        node = node[part]
    del node[path[-1]]
    return r


def _with(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    r = copy.deepcopy(POD_REVIEW)
    node = r
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return r


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ([], "body: expected a JSON object, found list"),
        (_without(("apiVersion",)), "review.apiVersion: missing"),
        (_with(("apiVersion",), "admission.k8s.io/v1beta1"), "review.apiVersion: expected admission.k8s.io/v1"),
        (_with(("kind",), "Pod"), "review.kind: expected AdmissionReview"),
        (_without(("request",)), "review.request: missing"),
        (_with(("request",), "x"), "review.request: expected Mapping, found str"),
        (_without(("request", "uid")), "review.request.uid: missing"),
        (_with(("request", "uid"), ""), "review.request.uid: empty"),
        (_with(("request", "object"), [1]), "request.object: expected an object, found list"),
        (
            _with(("request", "object", "metadata", "annotations"), ["a"]),
            "request.object.metadata.annotations: expected an object",
        ),
    ],
)
def test_a_malformed_review_is_refused_naming_the_member(body: Any, message: str) -> None:
    gate = Gate()
    with pytest.raises(MalformedReview) as raised:
        review(body, gate)
    assert raised.value.message.startswith(message)
    assert gate.asked == []


# --- over HTTPS --------------------------------------------------------------------------------


def _post(url: str, body: bytes, context: ssl.SSLContext, content_type: str = "application/json") -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(req, context=context, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_the_endpoint_answers_reviews_over_https_and_refuses_bad_bodies(tmp_path: Path) -> None:
    pki = make_tls(tmp_path, ["127.0.0.1"])
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.cert, pki.key)
    gate = Gate()
    server = AdmissionServer(AdmissionApp(gate), listen="127.0.0.1:0", tls=tls)
    server.start()
    try:
        assert server.url.startswith("https://127.0.0.1:") and server.url.endswith("/validate")
        client = ssl.create_default_context(cafile=str(pki.ca))
        status, answer = _post(server.url, json.dumps(POD_REVIEW).encode(), client)
        assert (status, answer["response"]["allowed"], answer["response"]["uid"]) == (
            200,
            True,
            POD_REVIEW["request"]["uid"],
        )
        status, error = _post(server.url, b"{not json", client)
        assert status == 400 and error["message"].startswith("the body is not JSON")
        status, error = _post(server.url, b"{}", client)
        assert (status, error["message"]) == (400, "review.apiVersion: missing")
        status, error = _post(server.url, b"{}", client, content_type="text/plain")
        assert status == 415 and "Content-Type" in error["message"]
        assert gate.asked == [(GOOD, False)]
    finally:
        server.stop()


def test_the_endpoint_refuses_to_listen_off_loopback_without_tls() -> None:
    with pytest.raises(ConfigError, match="supply.admission_listen: 0.0.0.0:9443 is not a loopback address"):
        AdmissionServer(AdmissionApp(Gate()), listen="0.0.0.0:9443", tls=None)


def _update(old_model: str | None, new_model: str) -> dict[str, Any]:
    r = _deployment_review({ANNOTATION: new_model})
    r["request"]["operation"] = "UPDATE"
    old = copy.deepcopy(r["request"]["object"])
    old["spec"]["replicas"] = 5
    old["spec"]["template"]["metadata"]["annotations"] = {ANNOTATION: old_model} if old_model else {}
    r["request"]["oldObject"] = old
    return r


def test_an_update_that_keeps_the_model_is_not_gated_again_so_a_denied_workload_can_be_drained() -> None:
    gate = Gate()
    response = review(_update(BAD, BAD), gate)["response"]
    assert response["allowed"] is True and response["warnings"] == [
        f"{ANNOTATION} unchanged by this update: not gated again"
    ]
    assert gate.asked == [], "a scale-down of a workload whose model is now denied goes through"


@pytest.mark.parametrize("old", [GOOD, None])
def test_an_update_that_changes_or_adds_the_model_is_gated(old: str | None) -> None:
    gate = Gate()
    response = review(_update(old, BAD), gate)["response"]
    assert response["allowed"] is False and gate.asked == [(BAD, False)]
