"""The explorer's bundled front-end: every file pinned, hashed and licensed, and nothing loaded from elsewhere."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from query.explorer import _app

STATIC = Path(_app.__file__).parent / "static"
VENDOR = STATIC / "vendor"
MANIFEST = json.loads((VENDOR / "VENDOR.json").read_text(encoding="utf-8"))


def test_every_vendored_file_matches_its_pinned_hash_and_has_its_licence() -> None:
    listed = {"VENDOR.json", "README.md"}
    for package in MANIFEST["packages"]:
        assert re.fullmatch(r"\d+\.\d+\.\d+", package["version"]), package
        assert package["npm_integrity"].startswith("sha512-"), package
        assert package["license"] in {"MIT", "EPL-2.0"}, package
        licence = VENDOR / package["license_file"]
        assert licence.stat().st_size > 500, f"{licence} is not a licence text"
        listed.add(package["license_file"])
        for f in package["files"]:
            data = (VENDOR / f["file"]).read_bytes()
            assert hashlib.sha256(data).hexdigest() == f["sha256"], f"{f['file']} differs from the pinned copy"
            listed.add(f["file"])
    assert {p.name for p in VENDOR.iterdir()} == listed, "a vendored file is missing from VENDOR.json, or vice versa"


def test_the_pages_load_only_their_own_files() -> None:
    for page in ("index.html", "login.html"):
        html = (STATIC / page).read_text(encoding="utf-8")
        sources = re.findall(r'(?:src|href)="([^"]*)"', html)
        assert sources, page
        for source in sources:
            assert source.startswith("/static/") or source in {"data:,", "#"}, f"{page} loads {source}"
            if source.startswith("/static/"):
                assert (STATIC / source.removeprefix("/static/")).is_file(), f"{page} names a missing {source}"
        assert "<script>" not in html and "style=" not in html, f"{page} has inline script or style (the CSP refuses)"


def test_the_explorers_own_scripts_reach_no_other_origin() -> None:
    for script in ("app.js", "login.js"):
        text = (STATIC / script).read_text(encoding="utf-8")
        assert not re.search(r"https?://", text), f"{script} names another origin"
        assert "innerHTML" not in text and "eval(" not in text and "new Function" not in text, script
