"""The README holds exactly two set-up-to-result commands, and CI runs the second."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def _block_after(marker: str) -> str:
    m = re.search(rf"<!-- {marker} -->\n```bash\n(.+?)\n```", README, re.S)
    assert m, f"no ```bash block after <!-- {marker} --> in README.md"
    return m.group(1)


def test_exactly_two_commands() -> None:
    assert len(re.findall(r"```bash\n", README)) == 2
    main, tests = _block_after("main-command"), _block_after("test-command")
    for cmd in (main, tests):
        assert "\n" not in cmd, "each command is one line a user can paste"
        assert cmd.startswith("python3 -m venv .venv && . .venv/bin/activate && pip install -e ")
    assert main.endswith(("provault up", "provault demo"))
    assert tests.endswith("pytest")


def test_ci_runs_the_readme_test_command() -> None:
    script = (ROOT / ".ci" / "run").read_text()
    extract = re.search(r"cmd=\$\((awk .+?README\.md)\)", script).group(1)
    out = subprocess.run(["bash", "-c", extract], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == _block_after("test-command")
