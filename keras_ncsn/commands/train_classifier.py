"""Train the small 28x28 classifier whose features give classifier-FID and Inception score.

Examples:
    python scripts/train_classifier.py --data-dir ../shared/data/mnist --overwrite  # shipped
    python scripts/train_classifier.py --data-dir ../shared/data/fashion_mnist \
        --out saved_models/fashion_mnist_classifier.keras
    python scripts/train_classifier.py --data-dir embedded --epochs 2 --out /tmp/c.keras
--data-dir is a folder of MNIST-format IDX files (train/t10k images and labels, .gz or not)
or "embedded" (the 10,000 + 1,000 digits inside the package). Writes the model (.keras,
no optimizer state) and PATH.json with the data, epochs and test accuracy (existing ones
only with --overwrite); prints the test accuracy. --min-accuracy makes a lower accuracy an
error (exit 1).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from keras_ncsn.cli import entry_point, start_tensorflow

# The checkout's package data, which the evaluation uses when no --classifier is given.
DEFAULT_OUT = os.path.join("keras_ncsn", "assets", "mnist_classifier.keras")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", required=True,
                        help='MNIST-format IDX folder, or "embedded"')
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"model file (default {DEFAULT_OUT})")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the model file (and its .json) if it exists")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--min-accuracy", type=float, default=0.0,
                        help="fail (exit 1) below this test accuracy")
    parser.add_argument("--no-progress", action="store_true", help="no per-epoch progress")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_tensorflow()
    from keras_ncsn.errors import ConfigError
    from keras_ncsn.evaluation.features import (info_path, load_labelled, save_classifier,
                                                train_classifier)
    from keras_ncsn.io import check_output_files

    if args.epochs < 1 or args.batch < 1:
        raise ConfigError(f"--epochs and --batch must be >= 1, got {args.epochs}, {args.batch}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {args.seed}")
    if not 0 <= args.min_accuracy <= 1:
        raise ConfigError(f"--min-accuracy is a test accuracy in [0, 1], got {args.min_accuracy}")
    if not args.out.endswith(".keras"):
        raise ConfigError(f"--out must end in .keras, got {args.out}")
    check_output_files([args.out, info_path(args.out)], overwrite=args.overwrite)
    data = load_labelled(args.data_dir)
    print(f"training the classifier on {len(data['x_train']):,} images of {args.data_dir} "
          f"for {args.epochs} epochs (batch {args.batch}, seed {args.seed})")
    start = time.time()
    model, accuracy = train_classifier(data, epochs=args.epochs, batch_size=args.batch,
                                       seed=args.seed, verbose=0 if args.no_progress else 2)
    seconds = time.time() - start
    save_classifier(model, args.out, {
        "data": args.data_dir, "train_images": len(data["x_train"]),
        "test_images": len(data["x_test"]), "epochs": args.epochs, "batch": args.batch,
        "seed": args.seed, "test_accuracy": accuracy, "train_seconds": round(seconds, 1),
        "parameters": model.count_params(),
        "command": "python scripts/train_classifier.py " + " ".join(
            argv if argv is not None else sys.argv[1:])})
    print(f"test accuracy {accuracy:.4f} on {len(data['x_test']):,} images "
          f"({seconds:.0f} s); wrote {args.out}")
    if accuracy < args.min_accuracy:
        print(f"error: test accuracy {accuracy:.4f} is below --min-accuracy "
              f"{args.min_accuracy}", file=sys.stderr)
        return 1
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    sys.exit(cli())
