"""`provault verify-report`: a fresh report verifies offline; an edited table, edited evidence or a wrong key fails, by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ledger.core.checkpoint import format_vkey
from ledger.core.keys import Ed25519Signer, save_public_key
from query.report import extract_evidence
from tests.ledgerkit import ORIGIN
from tests.query.provstory import Story

from .conftest import Cli

pytestmark = pytest.mark.postgres


@pytest.fixture
def report(story: Story, cli: Cli, tmp_path: Path) -> Path:
    out = tmp_path / "sentiment.html"
    assert cli("report", "model", "sentiment", "-o", out)[0] == 0
    return out


def edited(report: Path, old: str, new: str, count: int = 1) -> Path:
    text = report.read_text(encoding="utf-8")
    assert text.count(old) >= count, old
    path = report.with_name("edited.html")
    path.write_text(text.replace(old, new, count), encoding="utf-8")
    return path


def test_a_fresh_report_verifies_with_and_without_pinned_keys(report: Path, cli: Cli, keys: tuple[Path, Path]) -> None:
    code, out, _ = cli("verify-report", report, "--key", keys[0], "--admin-key", keys[1])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"provault verify-report: OK: {report}"
    assert "  step 2 continuity: 1 checkpoints (tree sizes 9 to 9) verify and each extends the one before" in lines
    assert lines[-2:] == ["  checkpoint key  pinned with --key", "  admin keys      pinned with --admin-key"]
    code, out, _ = cli("verify-report", report, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and doc["key_source"] == "report" and not doc["admin_keys_pinned"]
    assert doc["kind"] == "model" and doc["tree_sizes"] == [9]


def test_an_edited_table_cell_fails_naming_the_table_row_and_column(report: Path, cli: Cli) -> None:
    path = edited(report, "<td>5</td>", "<td>6</td>")  # the first seq-5 cell: the data table's derivation
    code, out, _ = cli("verify-report", path)
    assert code == 1
    assert out.splitlines() == [
        "provault verify-report: FAILED at step 4 (tables match the evidence)",
        "  [report_altered] table 'data', row 2, column 'seq': the report shows '6', the evidence states '5'",
        "  hint: the report was edited after it was made; the evidence block is what was signed and logged",
    ]


def test_an_edited_signer_or_text_outside_the_tables_fails_too(report: Path, cli: Cli) -> None:
    path = edited(report, "alice (person, producer)", "mallory (person, producer)")
    code, out, _ = cli("verify-report", path)
    assert code == 1 and "[report_altered] table 'data', row 1, column 'signer': the report shows 'mallory" in out
    path = edited(report, "<h1>Compliance report: model sentiment</h1>", "<h1>Compliance report: model other</h1>")
    code, out, _ = cli("verify-report", path)
    assert code == 1
    line = report.read_text(encoding="utf-8").splitlines().index("<h1>Compliance report: model sentiment</h1>") + 1
    assert out.splitlines()[1] == (
        f"  [report_altered] line {line} differs from the report the evidence renders to: "
        "found '<h1>Compliance report: model other</h1>', expected '<h1>Compliance report: model sentiment</h1>'"
    )


def test_edited_evidence_fails_in_the_bundle_or_as_non_canonical(report: Path, cli: Cli) -> None:
    text = report.read_text(encoding="utf-8")
    evidence = json.loads(extract_evidence(text))
    bundle = json.loads(evidence["bundle"])
    bundle["asOfSeq"] = "7"  # the entry at seq 8 now lies after it
    evidence["bundle"] = json.dumps(bundle, separators=(",", ":"), ensure_ascii=True)
    canonical = json.dumps(evidence, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    canonical = canonical.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    path = report.with_name("evidence.html")
    path.write_text(text.replace(extract_evidence(text), canonical), encoding="utf-8")
    code, out, _ = cli("verify-report", path)
    assert code == 1
    assert out.splitlines()[:2] == [
        "provault verify-report: FAILED at step 1 (bundle)",
        "  [malformed_bundle] the embedded audit bundle fails at step 0 (bundle format), entries[5] (seq 8): "
        "seq: expected at most as_of_seq 7, found 8",
    ]
    path = edited(report, '{"bundle":', '{ "bundle":')
    code, out, _ = cli("verify-report", path)
    assert code == 1 and out.splitlines()[:2] == [
        "provault verify-report: FAILED at step 0 (report format)",
        "  [malformed_report] the evidence block is not in canonical form (it was edited or re-formatted)",
    ]


def test_a_changed_proof_hash_fails_the_continuity_step(lifecycle: Story, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "m.html"
    assert cli("report", "model", "sentiment", "-o", out)[0] == 0
    text = out.read_text(encoding="utf-8")
    evidence = extract_evidence(text)
    doc = json.loads(evidence)
    first = doc["continuity"]["proofs"][0]["hashes"][0]
    flipped = ("0" if first[0] != "0" else "1") + first[1:]
    path = tmp_path / "proof.html"
    path.write_text(text.replace(evidence, evidence.replace(first, flipped, 1)), encoding="utf-8")
    code, stdout, _ = cli("verify-report", path)
    assert code == 1
    lines = stdout.splitlines()
    assert lines[0] == "provault verify-report: FAILED at step 2 (retention continuity)"
    assert lines[1].startswith(
        "  [verification_failed] continuity.proofs[0]: the tree of size 12 does not extend the tree of size 9: "
    )
    assert lines[2] == "  hint: the log was rewritten between these checkpoints, or the report was altered"


def test_a_wrong_checkpoint_key_or_admin_key_fails(report: Path, cli: Cli, tmp_path: Path) -> None:
    other = Ed25519Signer.generate()
    vkey = tmp_path / "other.vkey"
    vkey.write_text(format_vkey(ORIGIN, other.public_key) + "\n")
    code, out, _ = cli("verify-report", report, "--key", vkey)
    assert code == 1
    evidence = json.loads(extract_evidence(report.read_text()))
    assert out.splitlines() == [
        "provault verify-report: FAILED at step 2 (retention continuity)",
        "  [verification_failed] checkpoint key named by the report: expected the key you pinned, "
        f"{format_vkey(ORIGIN, other.public_key)}, found {evidence['checkpoint_key']}",
        "  hint: the report was altered, or it comes from another log than the one whose key you pinned",
    ]
    admin = save_public_key(other.public_key, tmp_path / "other.pub")
    code, out, _ = cli("verify-report", report, "--admin-key", admin)
    assert code == 1
    assert out.splitlines()[:2] == [
        "provault verify-report: FAILED at step 1 (bundle)",
        "  [unknown_key] the embedded audit bundle fails at step 3 (signatures and keys), key_entries[0] (seq 0): "
        f"signed by root key {evidence and json.loads(evidence['bundle'])['rootKeyids'][0]}, "
        "which is not among the admin keys you pinned",
    ]


def test_a_file_that_is_no_report_is_refused_at_step_0(tmp_path: Path, cli: Cli) -> None:
    path = tmp_path / "page.html"
    path.write_text("<html><body><h1>Compliance report</h1></body></html>")
    code, out, _ = cli("verify-report", path)
    assert code == 1 and out.splitlines()[:2] == [
        "provault verify-report: FAILED at step 0 (report format)",
        "  [malformed_report] evidence blocks: expected exactly one, found 0",
    ]


def test_evidence_naming_another_subject_than_its_bundle_fails_step_1(report: Path, story: Story, cli: Cli) -> None:
    i = story.ids
    path = edited(report, f'"subject":{{"model":"{i.model}"', f'"subject":{{"model":"{i.dataset}"')
    code, out, _ = cli("verify-report", path)
    assert code == 1 and out.splitlines()[:2] == [
        "provault verify-report: FAILED at step 1 (bundle)",
        f"  [verification_failed] subject.model: expected the bundle's subject {i.model}, found {i.dataset}",
    ]
