"""`provault report period`: every entry logged between two checkpoints, and consistency proofs that the log only grew."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from ledger.core.events import format_time
from ledger.store.checkpoints import iter_all
from query.report import extract_evidence
from query.report.verify import _cells
from tests.ledgerkit import Ledger, dataset_prov
from tests.query.provstory import Story

from .conftest import Cli, sign_and_project

pytestmark = pytest.mark.postgres


@pytest.fixture
def grown(ledger: Ledger, story: Story) -> dict[int, str]:
    """Checkpoints at sizes 0 (ledger init), 9 (the story) and 10 (one more dataset), by the ledger's clock."""
    ledger.append(story.trainer.emit("dataset.registered", dataset_prov("cd" * 32)))
    sign_and_project(ledger)
    assert ledger.conn is not None
    return {c.tree_size: format_time(c.signed_at) for c in iter_all(ledger.conn)}


def test_a_period_report_lists_every_entry_and_proves_the_log_only_grew(
    grown: dict[int, str], story: Story, cli: Cli, tmp_path: Path, keys: tuple[Path, Path]
) -> None:
    assert sorted(grown) == [0, 9, 10]
    out = tmp_path / "period.html"
    code, stdout, _ = cli("report", "period", "--from", grown[0], "--to", grown[9], "-o", out)
    assert code == 0 and "9 entries logged in the period" in stdout, _
    html = out.read_text(encoding="utf-8")
    t = _cells(html)
    assert [r[0] for r in t["statements"][1:]] == [str(s) for s in range(9)]
    assert [r[1] for r in t["statements"][1:4]] == ["key.registered"] * 3
    assert [r[2] for r in t["keys"][1:]] == ["0", "1", "2"]
    assert t["keys"][1][1] == "alice (person), role producer, kinds *"
    assert [r[0] for r in t["models"][1:]] == [f"{story.ids.model} (sentiment)"]
    assert [r[2] for r in t["approvals"][1:]] == ["7"]
    assert [(r[0], r[3]) for r in t["continuity"][1:]] == [
        ("0", "first checkpoint of the chain"),
        ("9", "extends the empty tree of size 0, as every tree does"),
        ("10", "extends size 9: consistency proof of 3 hashes verifies"),
    ]
    evidence = json.loads(extract_evidence(html))
    assert evidence["period"] == {"first_seq": 0, "end_seq": 9}
    assert evidence["subject"] == {"from": grown[0], "to": grown[9]}
    code, stdout, _ = cli("verify-report", out, "--key", keys[0], "--admin-key", keys[1])
    assert code == 0
    assert "  step 3 period: every entry the log grew by in the period is in the bundle" in stdout.splitlines()


def test_a_period_missing_an_entry_fails_step_3(grown: dict[int, str], cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "period.html"
    assert cli("report", "period", "--from", grown[0], "--to", grown[9], "-o", out)[0] == 0
    text = out.read_text(encoding="utf-8")
    path = tmp_path / "longer.html"
    path.write_text(text.replace('"end_seq":9', '"end_seq":10', 1), encoding="utf-8")  # claim one more entry
    code, stdout, _ = cli("verify-report", path)
    assert code == 1 and stdout.splitlines()[:3] == [
        "provault verify-report: FAILED at step 3 (period completeness)",
        "  [verification_failed] the log grew by seqs 0 to 9 in the period, but the bundle lacks seqs [9]",
        "  hint: a period report must hold every entry of its period",
    ]


def test_a_quiet_period_still_proves_continuity(grown: dict[int, str], cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "quiet.html"
    assert cli("report", "period", "--from", grown[9], "--to", grown[9], "-o", out)[0] == 0
    t = _cells(out.read_text(encoding="utf-8"))
    assert "statements" not in t and [r[0] for r in t["continuity"][1:]] == ["9"]
    summary = dict((r[0], r[1]) for r in t["summary"])
    assert summary["entries logged"] == "none"
    assert cli("verify-report", out)[0] == 0


def test_a_period_over_max_entries_or_before_any_checkpoint_is_refused(
    grown: dict[int, str], cli: Cli, tmp_path: Path
) -> None:
    out = tmp_path / "p.html"
    code, _, err = cli("report", "period", "--from", grown[0], "--to", grown[10], "--max-entries", "3", "-o", out)
    assert code == 1 and err == (
        "provault: error [limit_reached]: the period holds 10 entries (seqs 0 to 9), more than --max-entries 3; "
        "refusing to cut the report short\n"
        "  hint: narrow the period, or raise --max-entries (at most 100000)\n"
    )
    code, _, err = cli("report", "period", "--from", "2020-01-01", "--to", "2020-01-02", "-o", out)
    assert code == 1 and err == (
        "provault: error [invalid_argument]: the ledger signed no checkpoint by --to 2020-01-02T00:00:00.000000Z\n"
        "  hint: choose a --to after the ledger's first checkpoint\n"
    )
    assert not out.exists()
    early = format_time(datetime.fromisoformat(grown[0]) - timedelta(days=1))
    assert cli("report", "period", "--from", early, "--to", grown[9], "-o", out)[0] == 0  # from the first checkpoint on


def test_a_long_chain_samples_checkpoints_and_links_each_pair(
    ledger: Ledger, story: Story, cli: Cli, tmp_path: Path
) -> None:
    for n in range(12):  # twelve more checkpoints, one entry apart: sizes 10 to 21
        ledger.append(story.trainer.emit("dataset.registered", dataset_prov(f"{n:02x}" * 32)))
        sign_and_project(ledger)
    out = tmp_path / "m.html"
    assert cli("report", "model", "sentiment", "-o", out)[0] == 0
    evidence = json.loads(extract_evidence(out.read_text(encoding="utf-8")))
    sizes = [int(c["note"].split("\n")[1]) for c in evidence["continuity"]["checkpoints"]]
    assert sizes == [9, 10, 11, 13, 14, 15, 17, 18, 19, 21]  # the ends and 8 sampled between
    assert [(p["old_size"], p["new_size"]) for p in evidence["continuity"]["proofs"]] == list(
        zip(sizes, sizes[1:], strict=False)
    )
    assert cli("verify-report", out)[0] == 0
