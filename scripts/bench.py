"""Benchmark training, forward, sampling and serving; optionally beside the authors' PyTorch code.

Examples:
    python scripts/bench.py --quick                  # about a minute: every kind of case, tiny sizes
    python scripts/bench.py --cases train/mnist/*,forward,reference \\
        --reference ../.mirror/ermongroup+ncsn/repo --python /path/to/torch-venv/bin/python
Each case runs in its own process (its peak RSS is its own). Writes
bench/results/<date>-<host>.json and a Markdown table beside it (.md; an earlier report
of the same day is replaced only with --overwrite); ratios against the reference come from
the same run. Case ids: peak, train/<size>/<precision>/xla-<on|off>,
forward/<size>, sampler/<size>, serving, mirrored, reference/<size>; --cases takes kinds
(train, forward, ...) or globs of ids, comma-separated.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

from keras_ncsn.cli import quiet_tensorflow, run_main

quiet_tensorflow()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The benchmark lives in the checkout's bench/ folder, not in the installed package.
if REPO not in sys.path:
    sys.path.insert(0, REPO)
DEFAULT_REFERENCE_SCRIPT = os.path.join(REPO, os.pardir, "shared", "bench",
                                        "reference_pytorch.py")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny sizes, few iterations (about a minute)")
    parser.add_argument("--cases", help="comma-separated kinds or id globs (default: all)")
    parser.add_argument("--out", default=os.path.join("bench", "results"),
                        help="folder for <date>-<host>.json and .md (bench/results)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a report of the same day and host in --out")
    parser.add_argument("--export",
                        help="export folder for the serving case (saved_models/mnist)")
    parser.add_argument("--reference", metavar="DIR",
                        help="checkout of ermongroup/ncsn: also run the PyTorch baseline")
    parser.add_argument("--python",
                        help="interpreter with torch for --reference (this one)")
    parser.add_argument("--reference-script",
                        help="the baseline script for --reference "
                             "(../shared/bench/reference_pytorch.py)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before a case is killed (3600)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from bench.benchmark import check_reference, run
    from keras_ncsn.errors import ConfigError

    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout}")
    if not args.reference and (args.python or args.reference_script):
        raise ConfigError("--python and --reference-script run the baseline of --reference: "
                          "give --reference DIR too")
    reference = (check_reference(args.reference, args.python or sys.executable,
                                 args.reference_script or DEFAULT_REFERENCE_SCRIPT)
                 if args.reference else None)
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()] if args.cases else None
    command = shlex.join(["python", "scripts/bench.py", *(sys.argv[1:] if argv is None
                                                           else argv)])
    report, path = run(quick=args.quick, patterns=patterns, out_dir=args.out,
                       export=args.export, reference=reference, timeout=args.timeout,
                       command=command, overwrite=args.overwrite,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"wrote {path} and {path[:-len('.json')]}.md")
    return 1 if any("error" in case for case in report["cases"]) else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
