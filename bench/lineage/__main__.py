import sys

from bench.lineage.cli import main

sys.exit(main())
