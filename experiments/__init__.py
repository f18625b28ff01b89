"""Experiments: studies and probes whose results are quoted in reports/ (not part of the library).

Each module is a command run from the repository root as ``python -m experiments.NAME --help``; the
library (`harness`, `baselines`, `vlur`) never imports them. tests/test_experiments.py imports every one and
runs its ``--help`` (and a tiny real run where that is quick).
"""
