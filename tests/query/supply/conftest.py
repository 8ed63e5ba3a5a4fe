"""The report tests' stories (a real ledger, checkpointed and projected) serve the supply chain's tests too."""

from tests.query.report.conftest import cli, keys, lifecycle, story  # noqa: F401 - fixtures
