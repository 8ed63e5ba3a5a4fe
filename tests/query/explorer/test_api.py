"""The explorer's HTTP side on a real ledger: who may look, what each answer holds, every bad input's reply."""

from __future__ import annotations

import base64
import json

import pytest

from ledger.core import merkle
from query.bundle_verify import decode_bundle, verify_bundle
from tests.ledgerkit import Ledger
from tests.query.explorer.conftest import HOSTILE_ID, HOSTILE_LABEL
from tests.query.explorer.explorerkit import Browserless, Running, serving
from tests.query.provstory import Story

pytestmark = pytest.mark.postgres


def signed_in(explorer: Running, role: str = "auditor") -> Browserless:
    b = Browserless(explorer.base)
    reply = b.sign_in(explorer.token(role))
    assert (reply.status, reply.headers["Location"]) == (303, "/"), reply
    return b


# --- who may look ------------------------------------------------------------------------------


def test_nothing_is_shown_to_a_browser_that_has_not_signed_in(explorer: Running) -> None:
    b = Browserless(explorer.base)
    page = b.request("/")
    assert (page.status, page.headers["Location"]) == (303, "/login")
    for name in ("whoami", "search", "graph", "impact", "entry", "bundle"):
        reply = b.api(name, id="x", seq="0")
        assert reply.status == 401, name
        assert reply.json() == {
            "code": 401,
            "message": "sign in with an auditor token first (the session is missing or has expired)",
        }
    assert b.request("/login").status == 200  # the sign-in page itself is public, and holds no data


def test_sign_in_refuses_bad_tokens_and_producer_roles_with_fixed_codes(explorer: Running) -> None:
    b = Browserless(explorer.base)
    for token, code in (("", "token"), ("pvt_nonsense", "token"), (explorer.token("producer"), "role")):
        reply = b.sign_in(token)
        assert (reply.status, reply.headers["Location"]) == (303, f"/login?error={code}")
        assert not list(b.cookies)
    assert b.api("whoami").status == 401


def test_bearer_tokens_are_checked_per_request(explorer: Running) -> None:
    b = Browserless(explorer.base)
    assert b.request("/api/whoami", headers={"Authorization": "Basic abc"}).json() == {
        "code": 401,
        "message": "Authorization: expected 'Bearer <token>'",
    }
    assert b.request("/api/whoami", headers={"Authorization": "Bearer pvt_nope"}).json() == {
        "code": 401,
        "message": "the token is not valid (unknown, revoked or mistyped)",
    }
    producer = b.request("/api/whoami", headers={"Authorization": f"Bearer {explorer.token('producer')}"})
    assert producer.status == 403
    assert producer.json()["message"].endswith("has the roles ['producer']; the explorer needs auditor")
    auditor = b.request("/api/whoami", headers={"Authorization": f"Bearer {explorer.token('auditor')}"})
    assert auditor.status == 200 and auditor.json()["max_nodes"] == 1000


def test_a_revoked_token_signs_its_sessions_out_at_once(explorer: Running) -> None:
    b = Browserless(explorer.base)
    token, entry = explorer.tokens.create(role="auditor", name="to revoke")
    assert b.sign_in(token).status == 303
    assert b.api("whoami").status == 200
    explorer.tokens.revoke(entry.id)
    assert b.api("whoami").json() == {
        "code": 401,
        "message": "the token behind this session was revoked: sign in again",
    }
    assert b.api("whoami").status == 401  # the session is gone, not just refused once
    assert b.request("/").status == 303


def test_sign_out_ends_the_session(explorer: Running) -> None:
    b = signed_in(explorer)
    reply = b.request("/logout", form={})
    assert (reply.status, reply.headers["Location"]) == (303, "/login")
    assert b.api("whoami").status == 401


def test_a_dev_mode_link_signs_in_only_with_its_key(ledger: Ledger, world: Story, tmp_path) -> None:
    with serving(ledger.dsn, tmp_path, dev_link_key="k" * 32) as running:
        assert running.server.url == f"{running.base}/login/link?key={'k' * 32}"
        b = Browserless(running.base)
        wrong = b.request("/login/link", params={"key": "k" * 31})
        assert wrong.headers["Location"] == "/login?error=link" and b.api("whoami").status == 401
        assert b.request("/login/link", params={"key": "k" * 32}).headers["Location"] == "/"
        assert b.api("whoami").json()["subject"] == "dev-mode"
        # Tokens mean nothing in dev mode: the link is the only way in.
        assert Browserless(running.base).sign_in("pvt_anything").headers["Location"] == "/login?error=token"


def test_every_response_carries_the_headers_that_keep_event_text_inert(explorer: Running) -> None:
    b = Browserless(explorer.base)
    for reply in (b.request("/login"), b.api("whoami"), b.request("/static/app.js"), b.request("/nope")):
        assert reply.headers["Content-Security-Policy"].startswith(
            "default-src 'none'; script-src 'self'; worker-src 'self';"
        )
        assert "unsafe" not in reply.headers["Content-Security-Policy"]
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
        assert reply.headers["X-Frame-Options"] == "DENY"
    assert b.request("/nope").json() == {"code": 404, "message": "Not Found"}
    assert b.request("/static/../explorer/_app.py").status == 404


def test_an_oversized_sign_in_form_is_refused(explorer: Running) -> None:
    reply = Browserless(explorer.base).sign_in("x" * 10_000)
    assert reply.status == 413
    assert reply.json() == {"code": 413, "message": "the request body is over 8192 bytes"}


# --- what it answers --------------------------------------------------------------------------


def test_search_finds_nodes_and_keeps_event_text_as_data(explorer: Running, world: Story) -> None:
    b = signed_in(explorer)
    found = b.api("search", q="reviews").json()
    assert [n["id"] for n in found["nodes"]] == [world.ids.dataset]
    assert found["nodes"][0] == {
        "id": world.ids.dataset,
        "type": "entity",
        "kind": "provault:Dataset",
        "label": "reviews v1",
        "first_seq": 3,
    }
    hostile = b.api("search", q="script").json()["nodes"]
    assert [(n["id"], n["label"]) for n in hostile] == [(HOSTILE_ID, HOSTILE_LABEL)]
    assert b.api("search", type="agent", limit="1").json()["limits"] == [
        "showing the first 1 matches: narrow the search"
    ]


def test_a_graph_upstream_of_the_model_names_its_run_data_and_signers(explorer: Running, world: Story) -> None:
    i = world.ids
    g = signed_in(explorer).api("graph", id=i.model, depth="5").json()
    ids = {n["id"] for n in g["nodes"]}
    assert {i.model, i.run, i.dataset, i.code, i.author} <= ids
    assert g["start"] == i.model and g["as_of_seq"] == 9 and g["limits"] == []
    assert {(e["from"], e["relation"], e["to"]) for e in g["edges"]} >= {
        (i.model, "wasGeneratedBy", i.run),
        (i.run, "used", i.dataset),
    }
    model = next(n for n in g["nodes"] if n["id"] == i.model)
    signer = g["signers"][str(model["first_seq"])]
    assert g["keys"][signer]["name"] == "alice"


def test_a_prediction_opens_as_its_traceback_to_data_and_people(explorer: Running, world: Story) -> None:
    i = world.ids
    g = signed_in(explorer).api("graph", id=i.predictions[0], depth="6").json()
    assert g["prediction"] is not None and g["start"] == f"provault:prediction/{i.predictions[0]}"
    ids = {n["id"] for n in g["nodes"]}
    assert {i.batch, i.deployment, i.model, i.run, i.dataset, i.author} <= ids


def test_a_signing_key_opens_as_everything_it_signed(explorer: Running, world: Story, ledger: Ledger) -> None:
    keyid = world.trainer.signer.keyid
    r = signed_in(explorer).api("impact", id=keyid).json()
    reached = {n["id"] for n in r["nodes"]}
    assert {world.ids.dataset, world.ids.run, world.ids.model, HOSTILE_ID} <= reached


def test_as_of_shows_the_graph_as_it_was(explorer: Running, world: Story) -> None:
    b = signed_in(explorer)
    assert b.api("graph", id=world.ids.model, as_of="8").json()["as_of_seq"] == 8
    before = b.api("graph", id=world.ids.model, as_of="4")
    assert before.status == 404
    assert world.ids.model in before.json()["message"]
    early = b.api("graph", id=world.ids.model, as_of="2020-01-01T00:00:00Z")
    assert early.json() == {
        "code": 404,
        "message": "as_of 2020-01-01T00:00:00+00:00 is before the first entry of the log: nothing existed yet",
    }


def test_the_node_limit_cuts_a_graph_and_says_so(ledger: Ledger, world: Story, tmp_path) -> None:
    with serving(ledger.dsn, tmp_path, max_nodes=2) as running:
        g = signed_in(running).api("graph", id=world.ids.model, depth="5").json()
        assert len(g["nodes"]) == 2
        assert g["limits"] == [
            "showing the first 2 nodes (explorer.max_nodes): lower the depth, or export the full answer with "
            "`provault export`"
        ]
        too_many = signed_in(running).api("graph", id=world.ids.model, max_nodes="3")
        assert too_many.status == 400
        assert too_many.json()["message"] == "max_nodes: expected an integer in 1..2, found '3'"


def test_impact_of_the_dataset_counts_models_and_predictions(explorer: Running, world: Story) -> None:
    i = world.ids
    r = signed_in(explorer).api("impact", id=i.dataset).json()
    assert r["start"] == i.dataset
    reached = {n["id"] for n in r["nodes"]}
    assert {i.run, i.model} <= reached and i.dataset not in reached
    assert r["counts"]["nodes"] == len(r["nodes"])
    assert r["counts"]["predictions"] == len(r["predictions"]) > 0
    assert {"type": "entity", "kind": "provault:Model", "count": 1} in r["counts"]["by_kind"]


def test_an_entry_carries_what_the_browser_needs_to_check_its_proof(explorer: Running, ledger: Ledger) -> None:
    e = signed_in(explorer).api("entry", seq="5").json()
    envelope = base64.b64decode(e["envelope_b64"])
    leaf = merkle.leaf_hash(envelope)
    assert leaf.hex() == e["leaf_hash"] and e["unproven"] is False
    assert e["checkpoint"]["tree_size"] == e["proof"]["tree_size"] == 10 and e["proof"]["leaf_index"] == 5
    proof = [bytes.fromhex(h) for h in e["proof"]["hashes"]]
    merkle.verify_inclusion(leaf, 5, 10, proof, bytes.fromhex(e["checkpoint"]["root_hash"]))  # raises if not
    assert e["verifier_key"]["public_key_b64"] == base64.b64encode(ledger.checkpoint_key.public_key).decode()
    assert e["kind"] == "run.completed" and e["statement"] == json.loads(
        base64.b64decode(json.loads(envelope)["payload"])
    )


def test_the_bundle_download_verifies_offline(explorer: Running, world: Story) -> None:
    reply = signed_in(explorer).api("bundle", id=world.ids.model, depth="5")
    assert reply.status == 200
    assert reply.headers["Content-Disposition"] == 'attachment; filename="provault-bundle-9.json"'
    bundle = decode_bundle(reply.body)
    report = verify_bundle(bundle)
    assert report.node_id == world.ids.model and report.tree_size == 10
    assert world.ids.dataset in {n.id for n in bundle.nodes}


# --- bad input: each kind, its status and its words ---------------------------------------------


BAD = [
    ("graph", {}, 400, "id: expected a value, found none"),
    ("graph", {"id": "sha256:" + "99" * 32}, 404, None),
    ("graph", {"id": "x", "depth": "0"}, 400, "depth: expected an integer in 1..50, found '0'"),
    ("graph", {"id": "x", "depth": "ten"}, 400, "depth: expected an integer in 1..50, found 'ten'"),
    (
        "graph",
        {"id": "x", "direction": "sideways"},
        400,
        "direction: expected one of upstream, downstream, both, found 'sideways'",
    ),
    (
        "graph",
        {"id": "x", "as_of": "yesterday"},
        400,
        "as_of: expected a seq or an ISO 8601 time with its offset (…Z or …+02:00), found 'yesterday'",
    ),
    (
        "graph",
        {"id": "x", "as_of": "2026-01-01T00:00:00"},
        400,
        "as_of: expected a seq or an ISO 8601 time with its offset (…Z or …+02:00), found '2026-01-01T00:00:00'",
    ),
    ("graph", {"id": "x" * 1025}, 400, "id: expected at most 1024 characters, found 1025"),
    ("graph", {"id": "a\x00b"}, 400, "id: NUL characters are not allowed"),
    ("search", {"type": "plan"}, 400, "type: expected one of entity, activity, agent, found 'plan'"),
    ("search", {"limit": "201"}, 400, "limit: expected an integer in 1..200, found '201'"),
    ("impact", {"id": "x", "depth": "51"}, 400, "depth: expected an integer in 1..50, found '51'"),
    ("entry", {"seq": "-1"}, 400, "seq: expected a log seq (an integer >= 0), found '-1'"),
    ("entry", {"seq": "999"}, 404, "no log entry at seq 999 (the log holds 10)"),
    ("bundle", {"id": "sha256:" + "99" * 32}, 404, None),
]


@pytest.mark.parametrize(("name", "params", "status", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)])
def test_bad_input_gets_its_status_and_message(explorer: Running, name, params, status, message) -> None:
    reply = signed_in(explorer).api(name, **params)
    assert reply.status == status, reply.body
    body = reply.json()
    assert body["code"] == status
    if message is None:
        assert "sha256:" + "99" * 32 in body["message"]
    else:
        assert body["message"] == message


def test_answers_are_json_even_when_event_text_is_markup(explorer: Running) -> None:
    reply = signed_in(explorer).api("graph", id=HOSTILE_ID)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert json.loads(reply.body)["nodes"][0]["label"] == HOSTILE_LABEL
