"""Export a trained run for serving: TensorFlow SavedModel, score.onnx, sampler.onnx, model card.

Examples:
    python scripts/export.py runs/mnist --out saved_models/mnist --overwrite
    python scripts/export.py runs/quick --out /tmp/e --note "trained in 30 min on a 2-core CPU"
    python scripts/export.py runs/mnist --evaluation runs/mnist/eval_seed1  # card: 2 seeds
The folder (written atomically; an existing one only if it is an earlier export and
--overwrite is given) holds saved_model/ (endpoints sample = serving_default,
inpaint, score, sigmas), score.onnx, sampler.onnx, config.json, MODEL_CARD.md and
samples.png; see keras_ncsn/export.py. Sample from it without TensorFlow with
scripts/onnx_sample.py.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from keras_ncsn.cli import entry_point, start_tensorflow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by fit.py")
    parser.add_argument("--out", help="export folder (default: saved_models/<run folder name>); "
                                      "new or empty, or an earlier export with --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier export in --out (never another folder)")
    parser.add_argument("--command", help="training command for the model card "
                                          "(default: rebuilt from the run's config)")
    parser.add_argument("--note", dest="notes", action="append", default=[], metavar="TEXT",
                        help="an extra line for the model card's training section "
                             "(repeatable), e.g. wall time and hardware")
    parser.add_argument("--evaluation", dest="evaluations", action="append", default=[],
                        metavar="DIR", help="a further scripts/evaluate.py RUN_DIR --out DIR "
                        "of the exported step and sampler (e.g. another --seed) for the model "
                        "card's sample quality (repeatable; RUN_DIR/eval is always read)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_tensorflow()
    from keras_ncsn.export import export_run
    from keras_ncsn.training import check_run

    check_run(args.run_dir)
    out = args.out or os.path.join("saved_models", os.path.basename(
        os.path.normpath(args.run_dir)))
    print(f"exporting {os.path.abspath(args.run_dir)} to {os.path.abspath(out)}")
    export_run(args.run_dir, out, command=args.command, notes=args.notes,
               evaluations=args.evaluations, overwrite=args.overwrite)
    for name in sorted(os.listdir(out)):
        print(f"wrote {os.path.join(out, name)}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    sys.exit(cli())
