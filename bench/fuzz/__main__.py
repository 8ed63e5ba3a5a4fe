"""``python -m bench.fuzz`` is ``python -m bench.fuzz.harness``."""

from bench.fuzz.harness import main

raise SystemExit(main())
