"""Evaluate a trained run or an export: FID, KID, Inception score, nearest neighbours, DSM loss.

Examples:
    python scripts/evaluate.py runs/quick                        # 500 samples -> runs/quick/eval
    python scripts/evaluate.py saved_models/mnist --num-samples 256 --out /tmp/eval
    python scripts/evaluate.py runs/quick --real --out runs/real-eval   # real-vs-real floor
    python scripts/evaluate.py runs/quick --set sample.steps_per_level=50 --out /tmp/e50
    python scripts/evaluate.py runs/cifar --features inception --real-data ../data/cifar.npz
    python scripts/evaluate.py saved_models/mnist --likelihood --images 1000
Generates --num-samples images with the model's sampler (batches of --batch, a progress bar),
compares them with the real data of the model's config (--real-data to change it): the test
split is the FID/KID reference, the training split is searched for nearest neighbours.
Prints and saves the confident fraction (max class probability > 0.9), the entropy of the
predicted-class histogram and FID, each beside the same figure for as many real training
images (the floor a perfect model would reach at this sample count).
Writes into --out (default RUN_OR_EXPORT/eval, or RUN_OR_EXPORT/eval-real with --real):
metrics.json, report.md, samples.png, nearest_neighbours.png, distances.png, samples.npz
(an earlier evaluation there is replaced only with --overwrite).
--features classifier (default; --classifier PATH, trained by scripts/train_classifier.py)
or inception (InceptionV3 with ImageNet weights, downloaded once into ~/.keras/models).
--likelihood samples nothing: it prints and writes (likelihood.json, likelihood.png; default
--out RUN_OR_EXPORT/eval-likelihood) the held-out bits/dim of the test images under the
variational bound of the ancestral sampler (keras_ncsn.likelihood; docs/likelihood.md), with
its standard error, the per-level terms, and PNG/gzip bits per pixel of the same images.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Sequence

from keras_ncsn.cli import entry_point, require_matplotlib, start_tensorflow

# Options of --likelihood only (argparse dest -> flag).
LIKELIHOOD_FLAGS = {"images": "--images", "draws": "--draws", "one_level": "--one-level",
                    "decoder": "--decoder", "decoder_scale": "--decoder-scale"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", metavar="RUN_OR_EXPORT",
                        help="a run folder (fit.py) or an export folder (export.py)")
    parser.add_argument("--num-samples", type=int, default=500, help="samples (default 500)")
    parser.add_argument("--batch", type=int, help="samples per sampler call (default 100)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--features", default="classifier", choices=("classifier", "inception"))
    parser.add_argument("--classifier", help="classifier .keras file (default "
                                             "the package's assets/mnist_classifier.keras)")
    parser.add_argument("--real-data", help='"embedded", a data folder/file or a tfds name '
                                            "(default: the model's config)")
    parser.add_argument("--real", action="store_true",
                        help="evaluate real training images instead of samples (the floor)")
    parser.add_argument("--feature-neighbours", action="store_true",
                        help="also a nearest-neighbour grid in feature space")
    parser.add_argument("--set", dest="sample_settings", action="append", default=[],
                        metavar="sample.KEY=VALUE",
                        help="sampler setting of a run folder, e.g. sample.steps_per_level=50 "
                             "(repeatable; tunes sampling without retraining)")
    parser.add_argument("--no-ema", action="store_true",
                        help="sample a run folder with its raw weights instead of the EMA")
    parser.add_argument("--out", help="output folder: new or empty, or an earlier evaluation "
                                      "with --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier evaluation in --out (never another folder)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    bits = parser.add_argument_group("likelihood (--likelihood)")
    bits.add_argument("--likelihood", action="store_true",
                      help="held-out bits/dim (variational bound) instead of sample metrics")
    bits.add_argument("--images", type=int,
                      help="test images, drawn by --seed (default 0: all of them)")
    bits.add_argument("--draws", type=int, help="noise draws per image (default 1)")
    bits.add_argument("--one-level", action="store_true",
                      help="each draw evaluates one random level (x L): L times cheaper, noisier")
    bits.add_argument("--decoder", choices=("discretized", "gaussian"),
                      help="discretized: probability of the 8-bit bin (default); gaussian: "
                           "density of the dequantised data + 8 bits/dim")
    bits.add_argument("--decoder-scale", choices=("sigma_L", "fit"),
                      help="the decoder's scale: sigma_L (default) or fitted on 1,000 "
                           "training images")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_matplotlib("the evaluation's charts")
    start_tensorflow()
    words = sys.argv[1:] if argv is None else list(argv)
    command = shlex.join(["python", "scripts/evaluate.py", *words])
    if args.likelihood:
        return likelihood(args, command)
    if likelihood_options(args):
        from keras_ncsn.errors import ConfigError

        flags = ", ".join(LIKELIHOOD_FLAGS[name] for name in likelihood_options(args))
        raise ConfigError(f"{flags} set the likelihood evaluation: add --likelihood")
    from keras_ncsn.evaluation.report import evaluate

    out = args.out or os.path.join(args.source, "eval-real" if args.real else "eval")
    evaluate(args.source, out, num_samples=args.num_samples, batch=args.batch, seed=args.seed,
             features=args.features, classifier=args.classifier, real_data=args.real_data,
             real=args.real, feature_neighbours=args.feature_neighbours,
             sample_settings=args.sample_settings, ema=not args.no_ema,
             command=command,
             overwrite=args.overwrite,
             progress=not args.no_progress)
    return 0


def likelihood(args: argparse.Namespace, command: str) -> int:
    """--likelihood: the bound on the test split, no sampling."""
    from keras_ncsn.errors import ConfigError
    from keras_ncsn.evaluation.likelihood import evaluate_likelihood

    unused = [flag for flag, given in (
        ("--real", args.real), ("--set", args.sample_settings),
        ("--feature-neighbours", args.feature_neighbours), ("--classifier", args.classifier),
        ("--features", args.features != "classifier"), ("--num-samples", args.num_samples != 500))
        if given]
    if unused:
        raise ConfigError(f"--likelihood samples nothing: leave out {', '.join(unused)}")
    evaluate_likelihood(args.source, args.out or os.path.join(args.source, "eval-likelihood"),
                        **likelihood_options(args), seed=args.seed, batch=args.batch or 100,
                        real_data=args.real_data, ema=not args.no_ema, command=command,
                        overwrite=args.overwrite, progress=not args.no_progress)
    return 0


def likelihood_options(args: argparse.Namespace) -> dict[str, object]:
    """The --likelihood options given (the others keep evaluate_likelihood's defaults)."""
    return {name: getattr(args, name) for name in LIKELIHOOD_FLAGS
            if getattr(args, name) is not None and getattr(args, name) is not False}


cli = entry_point(main)


if __name__ == "__main__":
    sys.exit(cli())
