"""Benchmark training, forward, sampling and serving; optionally beside the authors' PyTorch code.

Examples:
    python scripts/bench.py --quick                  # about a minute: every kind of case, tiny sizes
    python scripts/bench.py --cases train/mnist/*,forward,reference \\
        --reference ../.mirror/ermongroup+ncsn/repo --python /path/to/torch-venv/bin/python
Each case runs in its own process (its peak RSS is its own). Writes
bench/results/<date>-<host>.json and a Markdown table beside it (.md); ratios against the
reference come from the same run. Case ids: peak, train/<size>/<precision>/xla-<on|off>,
forward/<size>, sampler/<size>, serving, mirrored, reference/<size>; --cases takes kinds
(train, forward, ...) or globs of ids, comma-separated.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from keras_ncsn.cli import quiet_tensorflow, run_main  # noqa: E402

quiet_tensorflow()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: tiny sizes, few iterations (about a minute)")
    parser.add_argument("--cases", help="comma-separated kinds or id globs (default: all)")
    parser.add_argument("--out", default=os.path.join("bench", "results"),
                        help="folder for <date>-<host>.json and .md (bench/results)")
    parser.add_argument("--export", default=os.path.join(REPO, "saved_models", "mnist_quick"),
                        help="export folder for the serving case (saved_models/mnist_quick)")
    parser.add_argument("--reference", metavar="DIR",
                        help="checkout of ermongroup/ncsn: also run the PyTorch baseline")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter with torch for --reference (this one)")
    parser.add_argument("--reference-script",
                        default=os.path.join(REPO, os.pardir, "shared", "bench",
                                             "reference_pytorch.py"),
                        help="the baseline script (../shared/bench/reference_pytorch.py)")
    parser.add_argument("--timeout", type=float, default=3600.0,
                        help="seconds before a case is killed (3600)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from keras_ncsn.benchmark import check_reference, run
    from keras_ncsn.errors import ConfigError

    if args.timeout <= 0:
        raise ConfigError(f"--timeout must be positive, got {args.timeout}")
    reference = (check_reference(args.reference, args.python, args.reference_script)
                 if args.reference else None)
    if "serving" in (args.cases or "serving"):
        from keras_ncsn.onnx_runtime import check_export

        check_export(args.export)
    patterns = [p.strip() for p in args.cases.split(",") if p.strip()] if args.cases else None
    command = shlex.join(["python", "scripts/bench.py", *(sys.argv[1:] if argv is None
                                                           else argv)])
    report, path = run(quick=args.quick, patterns=patterns, out_dir=args.out,
                       export=os.path.abspath(args.export), reference=reference,
                       timeout=args.timeout, command=command,
                       log=lambda line: print(line, file=sys.stderr, flush=True))
    print(f"wrote {path} and {path[:-len('.json')]}.md")
    return 1 if any("error" in case for case in report["cases"]) else 0


if __name__ == "__main__":
    sys.exit(run_main(main))
