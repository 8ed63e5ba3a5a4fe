"""The demo's auditing steps: an incident traced back, the ledger verified, a bundle checked offline, exploring."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING
from urllib.parse import quote

from ledger.core.keys import load_public_key

from ._cast import (
    CAROL,
    QUARANTINE_REASON,
    STEPS,
)
from ._stack import DemoFailed
from ._text import impact_lines, without_edges

if TYPE_CHECKING:
    from ledger.stack import Stack
from ._release import ReleaseSteps


class AuditingSteps(ReleaseSteps):
    """Steps that answer from the ledger, as an auditor or incident responder would."""

    def incident(self, prediction: str, v1: str, model: str, stack: Stack) -> None:
        from agents.governance import quarantine_event  # noqa: PLC0415
        from query import render, traverse  # noqa: PLC0415
        from query.cli.trace import impact_summary  # noqa: PLC0415

        self.say.step(
            9,
            STEPS,
            f"The incident: prediction {prediction} is disputed. Trace it back: model, run, data, "
            "code, environment, people, and the keys that signed each step.",
        )
        self.say.command(["provault", "trace", prediction])
        with self.db() as conn:
            answer = traverse.trace(conn, prediction)
            self.say.show(without_edges(render.as_table(answer)))
            self.say.say("Then the raw data v1 turns out to be mislabelled. What did it reach?")
            self.say.command(["provault", "impact", v1, "--limit", "3"])
            impact = traverse.trace(conn, v1, direction=traverse.DOWNSTREAM, predictions_limit=3)
            self.say.show(impact_lines(impact_summary(impact)))
        self.say.say("Carol quarantines it, with her own key; from then on the gate refuses what it reached:")
        self.say.command(
            ["provault", "quarantine", v1, "--reason", QUARANTINE_REASON, "--config", f"{CAROL.name}.toml"]
        )
        placed = quarantine_event(v1, reason=QUARANTINE_REASON, who=CAROL.who)
        self.agent(CAROL).emit(placed.kind, placed.prov, data=placed.data)
        self.requarantined_gate(model, stack)
        self.verify()
        self.bundle(prediction)

    def verify(self) -> None:
        from ledger.audit import audit  # noqa: PLC0415

        self.say.say("Is the ledger itself intact? Re-derive every entry, signature, Merkle node and checkpoint:")
        self.say.command(["provault", "verify"])
        with self.db() as conn:
            report = audit(conn)
        if not report.ok:
            first = report.first_problem.describe() if report.first_problem else "?"
            raise DemoFailed(f"provault verify found {report.problem_count} problem(s); the first: {first}")
        self.say.show(
            f"provault verify: OK: {report.entries_checked} entries, {report.nodes_checked} Merkle nodes and "
            f"{report.checkpoints_checked} checkpoints re-verified; root {report.root_hash.hex()[:16]}…"
        )

    def bundle(self, prediction: str) -> None:
        from ledger.core.checkpoint import format_vkey  # noqa: PLC0415
        from ledger.store import checkpoints  # noqa: PLC0415
        from query.bundle import bundle_trace  # noqa: PLC0415
        from query.bundle_verify import read_bundle, verify_bundle, write_bundle  # noqa: PLC0415

        p = self.paths
        path, vkey_path = p.root / "bundle.json", p.root / "log.vkey"
        admin_pub = self.settings.data_dir / "keys" / "admin.key.pub"
        self.say.say("Hand the auditor the evidence for this trace, to check offline against keys they pinned:")
        self.say.command(["provault", "bundle", f"provault:prediction/{prediction}", "-o", p.rel(path)])
        self.say.command(["provault", "checkpoint", "--vkey", "--out", p.rel(vkey_path)])
        self.say.command(
            ["provault", "verify-bundle", p.rel(path), "--key", p.rel(vkey_path), "--admin-key", p.rel(admin_pub)]
        )
        with self.db() as conn:
            bundle = bundle_trace(conn, prediction, direction="upstream")
            verifier = checkpoints.checkpoint_verifier(conn)
        size = write_bundle(bundle, path)
        vkey = format_vkey(verifier.name, verifier.verifier.public_key)
        vkey_path.write_text(vkey + "\n", encoding="utf-8")
        # Offline from here: the file and the two pinned keys, no database.
        report = verify_bundle(
            read_bundle(path),
            vkey=vkey_path.read_text(encoding="utf-8").strip(),
            admin_keys=[load_public_key(admin_pub)],
        )
        pinned = "checkpoint key and admin key pinned" if report.fully_pinned else "keys NOT fully pinned"
        self.say.show(
            f"wrote {p.rel(path)} ({size} bytes): {report.entries} entries, {report.key_entries} key entries, "
            f"{report.nodes} nodes, {report.edges} edges"
        )
        self.say.say(
            f"provault verify-bundle: OK ({pinned}): the checkpoint of size {report.tree_size} is signed, every "
            "entry is proven in it, every signature is by a key valid at its seq, the graph recomputes from the "
            "signed events"
        )

    # --- 10. the end --------------------------------------------------------------------------------------

    def explore(self, prediction: str) -> None:
        d = self.settings.data_dir
        self.say.step(
            10,
            STEPS,
            f"Done in {time.monotonic() - self.started:.1f} s. The stack is stopped; the ledger, keys, "
            f"data, models, bundle and attestation stay in {d}. Explore them yourself, from {self.paths.root}:",
        )
        self.say.command(["export", f"PROVAULT_DATA_DIR={d}"])
        self.say.command(["provault", "up"])
        self.say.say(
            "Its `explorer` line is a sign-in link to the lineage explorer: open it in a browser with "
            f"#id={quote(prediction, safe=':/')} appended to see this prediction's trace, click nodes to expand "
            "them and check their proofs. And, in another terminal (same PROVAULT_DATA_DIR):"
        )
        self.say.command(["provault", "trace", prediction, "--format", "svg", "--out", "trace.svg"])
        self.say.command(
            [
                "provault",
                "sparql",
                "SELECT ?run ?who WHERE { ?run a prov:Activity ; prov:wasAssociatedWith ?who . ?who a prov:Person }",
            ]
        )
        self.say.command(["provault", "export", "--format", "turtle", "--out", "graph.ttl"])
        self.say.command(["provault", "keys", "list"])
        self.say.say("Running `provault demo` again adds another round to the same ledger, with the same keys.")
