"""Bad input to `provault report`: unknown models, bad times, limits hit, and event text that tries to be markup."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest

from query.report import extract_evidence
from query.report.verify import _cells
from tests.ledgerkit import Ledger
from tests.query.provstory import Story

from .conftest import Cli, sign_and_project

pytestmark = pytest.mark.postgres

EVIL = '<script>alert("pwned")</script>\u202e'


def test_an_unknown_model_is_exit_1_with_what_to_do(story: Story, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    code, _, err = cli("report", "model", "nosuch", "-o", out)
    assert code == 1 and not out.exists()
    assert err == (
        "provault: error [not_found]: no model labelled 'nosuch' in the ledger as of seq 8\n"
        "  hint: name the model by its label (prov:label) or its digest sha256:<hex>\n"
    )
    code, _, err = cli("report", "model", "sha256:" + "99" * 32, "-o", out)
    assert code == 1 and err.startswith(
        f"provault: error [not_found]: no model sha256:{'99' * 32} in the ledger as of seq 8\n"
    )
    code, _, err = cli("report", "model", story.ids.dataset, "-o", out)
    assert code == 1 and err.startswith(
        f"provault: error [not_found]: {story.ids.dataset} is a provault:Dataset, not a model (provault:Model), as of seq 8\n"
    )


def test_two_models_with_one_label_must_be_named_by_digest(
    story: Story, ledger: Ledger, cli: Cli, tmp_path: Path
) -> None:
    other = "sha256:" + "33" * 32
    ledger.append(
        story.trainer.emit(
            "model.registered",
            {"entity": {other: {"prov:type": "provault:Model", "prov:label": "sentiment", "provault:version": "2"}}},
        )
    )
    sign_and_project(ledger)
    code, _, err = cli("report", "model", "sentiment", "-o", tmp_path / "r.html")
    assert code == 1
    assert err == (
        "provault: error [not_found]: 2 models are labelled 'sentiment' as of seq 9: "
        f"{story.ids.model} (version 1), {other} (version 2)\n  hint: name one by its digest\n"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--from", "yesterday", "--to", "2025-03-03"],
            "argument --from: expected an RFC 3339 time like 2025-03-02T10:00:00Z or a date like 2025-03-02, "
            "found 'yesterday'",
        ),
        (
            ["--from", "2025-03-02", "--to", "2025-03-03T10:00:00"],
            "argument --to: expected a time with a UTC offset (e.g. a trailing Z), found '2025-03-03T10:00:00'",
        ),
        (
            ["--from", "2025-03-04T00:00:00Z", "--to", "2025-03-03"],
            "--from 2025-03-04T00:00:00+00:00 is after --to 2025-03-03T00:00:00+00:00",
        ),
    ],
)
def test_bad_from_and_to_are_refused_with_exit_2(
    argv: list[str], message: str, cli: Cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        cli("report", "period", *argv, "-o", tmp_path / "p.html")
    assert info.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"provault report period: error: {message}"


def test_limits_on_nodes_depth_and_time_stop_with_a_clear_message(story: Story, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    code, _, err = cli("report", "model", "sentiment", "--max-nodes", "3", "-o", out)
    assert code == 1 and err == (
        "provault: error [limit_reached]: the model's lifecycle reaches more than --max-nodes 3 nodes, so the report "
        "would be incomplete; refusing to cut it short\n"
        "  hint: raise --max-nodes (at most 100000) or --depth (at most 100)\n"
    )
    code, _, err = cli("report", "model", "sentiment", "--depth", "1", "-o", out)
    assert code == 1 and err.startswith(
        "provault: error [limit_reached]: the model's lifecycle goes deeper than --depth 1 hops, so the report "
        "would be incomplete; refusing to cut it short\n"
    )
    code, _, err = cli("report", "model", "sentiment", "--timeout", "0.000001", "-o", out)
    assert code == 1 and err == (
        "provault: error [limit_reached]: the report took longer than its time limit of 1e-06 s "
        "(while reading the latest checkpoint)\n"
        "  hint: raise --timeout, or narrow the report (--depth / --max-nodes, a shorter period)\n"
    )
    assert not out.exists()
    with pytest.raises(SystemExit) as info:
        cli("report", "model", "sentiment", "--max-nodes", "100001", "-o", out)
    assert info.value.code == 2


def test_every_string_from_an_event_is_escaped(ledger: Ledger, logged_story: Story, cli: Cli, tmp_path: Path) -> None:
    s = logged_story
    evil_model = "sha256:" + "44" * 32
    ledger.append(
        s.trainer.emit(
            "model.registered",
            {
                "entity": {
                    evil_model: {"prov:type": "provault:Model", "prov:label": EVIL, "provault:version": "<b>1</b>"}
                },
                "wasGeneratedBy": {"_:g1": {"prov:entity": evil_model, "prov:activity": s.ids.run}},
                "wasAttributedTo": {"_:a1": {"prov:entity": evil_model, "prov:agent": "provault:person/%3Cimg%3E"}},
            },
        )
    )
    sign_and_project(ledger)
    out = tmp_path / "evil.html"
    code, _, _ = cli("report", "model", evil_model, "-o", out)
    assert code == 0
    html = out.read_text(encoding="utf-8")
    assert html.count("<script") == 1 and "<b>" not in html and "\u202e" not in html  # the one script: the evidence
    assert "<title>Compliance report: model &lt;script&gt;alert(&#34;pwned&#34;)&lt;/script&gt;\\u202e</title>" in html
    summary = dict((r[0], r[1]) for r in _cells(html)["summary"])
    assert summary["label"] == '<script>alert("pwned")</script>\\u202e' and summary["version"] == "<b>1</b>"
    evidence = extract_evidence(html)
    assert "<" not in evidence and ">" not in evidence and json.loads(evidence)["subject"]["model"] == evil_model
    assert cli("verify-report", out)[0] == 0


def test_a_database_user_without_the_auditor_role_gets_no_report(
    story: Story, ledger: Ledger, cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg  # noqa: PLC0415 - creating a login role is this test's own business
    from psycopg import sql  # noqa: PLC0415

    name = f"outsider_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(ledger.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(name)))
    try:
        info = psycopg.conninfo.conninfo_to_dict(ledger.dsn)
        info["user"] = name
        monkeypatch.setenv("PROVAULT_POSTGRES_DSN", psycopg.conninfo.make_conninfo(**info))
        code, _, err = cli("report", "model", "sentiment", "-o", tmp_path / "r.html")
        assert code == 1 and err.startswith(
            "provault: error [storage_unavailable]: cannot switch to database role 'provault_auditor': "
        )
        assert not (tmp_path / "r.html").exists()
    finally:
        with psycopg.connect(ledger.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def test_as_of_a_time_or_a_seq_the_checkpoint_does_not_cover(story: Story, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "r.html"
    now = datetime.now(UTC).isoformat()
    assert cli("report", "model", "sentiment", "--as-of", now, "-o", out)[0] == 0
    assert dict((r[0], r[1]) for r in _cells(out.read_text())["summary"])["as of seq"] == "8"
    code, _, err = cli("report", "model", "sentiment", "--as-of", "9", "-o", tmp_path / "new.html")
    assert code == 1 and err == (
        "provault: error [invalid_argument]: --as-of seq 9 is newer than the latest checkpoint (tree size 9), "
        "so it is not provable yet\n  hint: retry after the next checkpoint, about a second later\n"
    )
    code, _, err = cli("report", "model", "sentiment", "--as-of", "2020-01-01T00:00:00Z", "-o", tmp_path / "old.html")
    assert (
        code == 1
        and err == "provault: error [not_found]: nothing was logged at or before 2020-01-01T00:00:00.000000Z\n"
    )
