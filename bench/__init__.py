"""Benchmarks of keras-ncsn (run from a checkout: `python scripts/bench.py`), kept out of the
installed package because they spawn processes, read /proc/cpuinfo and the authors'
reference code beside the repository."""
