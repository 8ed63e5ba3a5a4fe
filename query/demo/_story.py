"""The story ``provault demo`` tells, step by step, on a real stack.

Every step goes through the product: keys through ``provault keys`` (run in
this process, with the arguments it prints), datasets, runs, models and
deployments through the ``agents`` SDK with one agent per person or service,
predictions through ``LoggedModel`` / ``PredictionLogger``, answers through
``query.traverse``, ``ledger.audit`` and the audit-bundle builder and
verifier.  Nothing writes to a table directly; the demo only reads
(``provault_auditor``) to wait for the ledger and to answer.
"""

from __future__ import annotations

from ._auditing import AuditingSteps
from ._producing import ProducingSteps


class Demo(ProducingSteps, AuditingSteps):
    """The steps of one telling; :func:`query.demo.run_demo` calls them in order and stops the stack."""
