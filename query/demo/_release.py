"""The demo's release step: the deployment gate on the model, and an in-toto attestation checked offline."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ledger.core.keys import load_public_key

from ._base import DemoBase
from ._cast import MODEL_NAME, STEPS, release_policy

if TYPE_CHECKING:
    from ledger.stack import Stack

GATE_ALLOWED, GATE_DENIED = 0, 1


class ReleaseSteps(DemoBase):
    """Acting on the provenance: a release gate decides from the verified evidence, an attestation carries it."""

    def release(self, model: str) -> None:
        from query.supply.attest import verify_attestation  # noqa: PLC0415 - the supply chain loads when used

        p = self.paths
        policy, out = p.root / "release.toml", p.root / "release.intoto.json"
        bundle = p.root / "release.intoto.bundle.json"
        policy.write_text(release_policy(with_code=self.commit is not None), encoding="utf-8")
        self.say.step(
            8,
            STEPS,
            "Release: the gate checks the model against release.toml (complete provenance, every signer's key "
            "valid, one approval by an ml-lead, no quarantined input, accuracy >= 0.9), from its verified audit "
            "bundle, and records its decision in the ledger; then an in-toto attestation carries the provenance "
            "to tools outside provault.",
        )
        self.gate(model, policy)
        self.say.command(["provault", "attest", MODEL_NAME, "-o", p.rel(out)])
        self.say.command(["provault", "verify-attestation", p.rel(out), "--bundle", p.rel(bundle), *self._pins_argv()])
        self.cli(["attest", model, "-o", str(out)])
        vkey, admin = self._pins()
        check = verify_attestation(out.read_bytes(), bundle.read_bytes(), vkey=vkey, admin_keys=[admin])
        self.say.show(
            f"wrote {p.rel(out)}: in-toto Statement v1 with an SLSA Provenance v1 predicate, "
            f"{check.dependencies} resolved dependencies, signed by the attestation key {check.signer_keyid[:12]}…"
        )
        self.say.say(
            "provault verify-attestation: OK: the envelope's signature is by the attestation key the bundle "
            "registers, the bundle verifies against the pinned keys, and the statement recomputes from its "
            "signed entries"
        )

    def gate(self, model: str, policy_path: Path, *, failed_only: bool = False) -> int:
        """``provault gate`` on ``model``: its exit code (0 allowed, 1 denied); the report shown, or with
        ``failed_only`` its verdict, the rules that failed and where the decision was recorded."""
        self.say.command(["provault", "gate", MODEL_NAME, "--policy", self.paths.rel(policy_path)])
        code, text = self.cli_code(["gate", model, "--policy", str(policy_path)], ok=(GATE_ALLOWED, GATE_DENIED))
        lines = text.rstrip("\n").splitlines()
        if failed_only:
            keep = ("provault gate:", "  FAIL", "  recorded")
            lines = [line for line in lines if line.startswith(keep)]
        self.say.show("\n".join(lines))
        return code

    def requarantined_gate(self, model: str, stack: Stack) -> int:
        """After a quarantine: the same gate, once the quarantine is committed, checkpointed and projected."""
        self.caught_up(stack)
        return self.gate(model, self.paths.root / "release.toml", failed_only=True)

    def _pins(self) -> tuple[str, bytes]:
        from ledger.core.checkpoint import format_vkey  # noqa: PLC0415
        from ledger.store import checkpoints  # noqa: PLC0415

        with self.db() as conn:
            verifier = checkpoints.checkpoint_verifier(conn)
        vkey = format_vkey(verifier.name, verifier.verifier.public_key)
        (self.paths.root / "log.vkey").write_text(vkey + "\n", encoding="utf-8")
        return vkey, load_public_key(self.settings.data_dir / "keys" / "admin.key.pub")

    def _pins_argv(self) -> list[str]:
        admin = self.settings.data_dir / "keys" / "admin.key.pub"
        return ["--key", "log.vkey", "--admin-key", self.paths.rel(admin)]
