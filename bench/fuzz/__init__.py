"""On-demand fuzzing campaigns over the targets in ``tests/security/fuzz_targets.py``."""
