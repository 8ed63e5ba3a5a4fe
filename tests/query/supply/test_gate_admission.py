"""`provault admission serve` end to end: real AdmissionReview JSON over HTTPS, decided by the real gate on a real
ledger, each decision recorded through NATS and the real ingest (except dry runs)."""

from __future__ import annotations

import copy
import dataclasses
import json
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from ledger.config import Settings
from ledger.core.errors import ConfigError, KeyMaterialError
from query.cli.admission import build_server
from query.supply.policy import PolicyError
from tests.deploy.tlskit import make_tls
from tests.ledgerkit import Ledger
from tests.query.projected import sign_and_project
from tests.query.provstory import Story
from tests.query.supply.gatekit import POLICY, append, approved, logged, quarantine, register_attestor, with_attestor
from tests.query.supply.test_admission import POD_REVIEW
from tests.service.natskit import wait_for

ANNOTATION = "provault.dev/model"


def _review(model: str, *, uid: str, dry_run: bool = False) -> bytes:
    r = copy.deepcopy(POD_REVIEW)
    r["request"]["uid"] = uid
    r["request"]["dryRun"] = dry_run
    r["request"]["object"]["metadata"]["annotations"][ANNOTATION] = model
    return json.dumps(r).encode()


def _post(url: str, body: bytes, context: ssl.SSLContext) -> tuple[int, Any]:
    req = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, context=context, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _server_settings(settings: Settings, tmp_path: Path, ledger: Ledger) -> tuple[Settings, ssl.SSLContext]:
    pki = make_tls(tmp_path / "pki", ["127.0.0.1"])
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    s = with_attestor(settings, tmp_path)
    supply = dataclasses.replace(
        s.supply,
        admission_listen="127.0.0.1:0",
        admission_policy=str(policy),
        tls_cert=str(pki.cert),
        tls_key=str(pki.key),
    )
    s = dataclasses.replace(s, supply=supply, postgres=dataclasses.replace(s.postgres, dsn=ledger.dsn))
    return s, ssl.create_default_context(cafile=str(pki.ca))


@pytest.mark.nats
def test_reviews_are_decided_by_the_gate_and_recorded_except_dry_runs(
    ledger: Ledger, story: Story, ingest, settings: Settings, tmp_path: Path
) -> None:
    i = story.ids
    people = approved(ledger, story)
    s, client = _server_settings(settings, tmp_path, ledger)
    register_attestor(ledger, s)
    sign_and_project(ledger)
    server = build_server(s)
    server.start()
    try:
        status, answer = _post(server.url, _review(i.model, uid="u-1"), client)
        assert status == 200 and answer["response"]["uid"] == "u-1", answer
        assert answer["response"]["allowed"] is True, answer

        status, answer = _post(server.url, _review(i.model, uid="u-2", dry_run=True), client)
        assert (status, answer["response"]["allowed"]) == (200, True)

        unknown = "sha256:" + "ab" * 32
        status, answer = _post(server.url, _review(unknown, uid="u-3"), client)
        response = answer["response"]
        assert (status, response["allowed"], response["status"]["code"]) == (200, False, 403)
        assert response["status"]["message"].startswith(f"provault gate could not decide on {unknown}: no model")

        wait_for(lambda: len(logged(ledger, "gate.decided")) == 1, what="the one recorded decision")
        append(ledger, quarantine(people["sec"], i.dataset, reason="labels leaked"))
        sign_and_project(ledger)

        status, answer = _post(server.url, _review(i.model, uid="u-4"), client)
        response = answer["response"]
        assert (status, response["allowed"]) == (200, False), answer
        assert response["status"]["message"].startswith(f"provault gate denied {i.model} (decision ")
        assert "quarantine: " in response["status"]["message"] and "labels leaked" in response["status"]["message"]
        wait_for(lambda: len(logged(ledger, "gate.decided")) == 2, what="the denial recorded")
        verdicts = [d["verdict"] for _, _, d in logged(ledger, "gate.decided")]
        assert verdicts == ["allow", "deny"], "the dry run and the undecided review recorded nothing"
    finally:
        server.stop()


def test_the_server_refuses_to_start_without_a_usable_policy_or_key(
    ledger: Ledger, story: Story, settings: Settings, tmp_path: Path
) -> None:
    s, _ = _server_settings(settings, tmp_path, ledger)
    with pytest.raises(KeyMaterialError, match="the attestation key .* does not exist"):
        build_server(s)
    unset = dataclasses.replace(s, supply=dataclasses.replace(s.supply, admission_policy=None))
    with pytest.raises(ConfigError, match="supply.admission_policy: unset, and no --policy given"):
        build_server(unset)
    bad = tmp_path / "bad.toml"
    bad.write_text("version = 1\n[rules.approvals]\ncount = 0\nrole = 'ml-lead'\n")
    with pytest.raises(PolicyError, match=r"line 3, rules\.approvals\.count"):
        build_server(s, policy=str(bad))
    missing = dataclasses.replace(s, supply=dataclasses.replace(s.supply, admission_policy=str(tmp_path / "nope.toml")))
    with pytest.raises(ConfigError, match="supply.admission_policy: cannot read"):
        build_server(missing)
