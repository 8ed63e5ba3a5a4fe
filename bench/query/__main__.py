"""``python -m bench.query``: see ``bench.query.cli``."""

from bench.query.cli import main

raise SystemExit(main())
