"""Names every producer must spell the same way.

Two agents that touch the same bytes must name the same entity without
talking to each other, so the PROV prefixes for content-addressed ids and for
provault's own attributes are fixed here and declared in every event.
"""

from __future__ import annotations

PROVAULT_NS = "https://provault.dev/ns#"
SHA256_NS = "urn:provault:sha256:"

PREFIXES: dict[str, str] = {
    "provault": PROVAULT_NS,
    "sha256": SHA256_NS,
}
"""The prefix block every provault-made PROV document declares."""
