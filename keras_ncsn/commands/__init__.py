"""The command-line programs (`ncsn-fit`, `ncsn-sample`, ...; also `python scripts/X.py`).

Each module parses its arguments before importing TensorFlow, so `--help` is instant, and
has `main(argv) -> int` (for tests and Python callers) and `cli()` (the console entry point,
which turns user errors into one `error: ...` line and exit code 2).
"""
