"""The query side's ``provault`` commands, contributed through the ``provault.commands`` entry point.

``trace`` and ``impact`` (:mod:`.trace`), ``export`` and ``sparql`` (:mod:`.export`), ``bundle`` and
``verify-bundle`` (:mod:`.bundle`), ``report`` and ``verify-report`` (:mod:`.report`), ``project``
(:mod:`.project`), ``query serve`` (:mod:`.serve`), ``bom`` (:mod:`.bom`), ``attest`` and
``verify-attestation`` (:mod:`.attest`), ``approve``, ``quarantine`` and ``gate`` (:mod:`.gate`) and
``demo`` (:mod:`.demo`).
"""

from __future__ import annotations

import argparse

from . import admission, attest, bom, bundle, demo, export, gate, project, report, serve, trace

_MODULES = (demo, project, export, bundle, report, trace, serve, gate, admission, bom, attest)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    for module in _MODULES:
        module.register(sub, common)
