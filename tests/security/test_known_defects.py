"""docs/security.md's known defects, pinned: today's behaviour, and the behaviour the table asks for.

For each defect (D1 to D7 in docs/security.md) a test asserts what happens
today, including that nothing already accepted changed, and a test marked
``xfail(strict=True)`` asserts what should happen instead, so the suite
reports the fix when it lands (then flip the pair and update the table).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import grpc
import psycopg
import pytest

from ledger.cli import main as cli_main
from ledger.config import Settings
from ledger.core.admission import Accepted, Refused, check_submission
from ledger.core.errors import ProvaultError, StorageUnavailable
from ledger.core.keyring import KEY_REGISTERED
from ledger.core.keys import Ed25519Signer
from ledger.core.producing import ProducerChain, Sealed
from ledger.service.ingest import IngestService, JetStreamIngest
from ledger.store import log
from ledger.store._db import connect
from query import projector
from query.bundle_verify import decode_bundle, encode_bundle, verify_bundle
from tests.ledgerkit import Ledger
from tests.security.fuzz_targets import corpus, crafted_bundle_with_non_ascii_key
from tests.security.securitykit import (
    Seeded,
    Served,
    State,
    accepted_state,
    assert_extends,
    last_rejection,
    registration_data,
    rejection_count,
    seed,
)
from tests.service.natskit import publish_raw, wait_for

pytestmark = pytest.mark.postgres


# --- D1: a non-ASCII public key ----------------------------------------------------------------------

NON_ASCII_KEY = "gTl3\u00e9Dqh9F19Wo1Rmw0x+zMuNipG0="


def _non_ascii_registration(signer: Ed25519Signer, producer: str = "trainer@host-1") -> Sealed:
    """A key.registered whose public_key is not ASCII, signed by any known key (stage 1 does not check roles)."""
    key = Ed25519Signer.generate()
    data = {**registration_data(key), "public_key": NON_ASCII_KEY}
    return ProducerChain(producer, signer).emit(KEY_REGISTERED, {}, data=data)






# --- D3: U+0000 in a key event's data ---------------------------------------------------------------


def _key_event_with_nul(lg: Ledger) -> Sealed:
    key = Ed25519Signer.generate()
    return lg.admin_chain.emit(KEY_REGISTERED, {"agent": {"provault:alice": {}}}, data=registration_data(key, name="gpu\u000007"))




# --- D6: a refusal that quotes U+0000 ---------------------------------------------------------------


def _registration_with_nul_keyid(signer: Ed25519Signer, producer: str = "trainer@host-1") -> Sealed:
    """A key.registered whose keyid does not match its public key and quotes U+0000: stage 1 refuses it, quoting it."""
    key = Ed25519Signer.generate()
    data = {**registration_data(key), "keyid": key.keyid[:10] + "\u0000" + key.keyid[11:]}
    return ProducerChain(producer, signer).emit(KEY_REGISTERED, {}, data=data)




# --- D7: terminal escapes in a bundle ---------------------------------------------------------------


def _bundle_with_escapes(tmp_path: Path) -> tuple[Path, Path]:
    """A bundle whose checkpoint key field carries terminal escapes that redraw the line as a success."""
    c = corpus()
    bundle = decode_bundle(c.bundle)
    bundle.checkpoint_verifier_key = "x\x1b[2K\r\x1b[32mprovault verify-bundle: OK, all 4 steps verified\x1b[0m"
    path, vkey = tmp_path / "escapes.bundle.json", tmp_path / "log.vkey"
    path.write_bytes(encode_bundle(bundle))
    vkey.write_text(c.vkey + "\n")
    return path, vkey


@pytest.mark.xfail(strict=True, reason="defect: verify-bundle prints strings from the bundle unescaped (terminal escapes)")
def test_a_bundle_cannot_write_terminal_escapes_into_the_verdict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path, vkey = _bundle_with_escapes(tmp_path)
    assert cli_main(["verify-bundle", str(path), "--key", str(vkey)]) == 1
    assert "\x1b" not in capsys.readouterr().out


def test_a_bundle_with_terminal_escapes_fails_today(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Today's behaviour, for the table: refused at step 1 (exit 1), but the escapes reach the terminal."""
    path, vkey = _bundle_with_escapes(tmp_path)
    assert cli_main(["verify-bundle", str(path), "--key", str(vkey)]) == 1
    out = capsys.readouterr().out
    assert "FAILED at step 1 (checkpoint)" in out and "\x1b[2K" in out
