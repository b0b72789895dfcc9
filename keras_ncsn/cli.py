"""Shared command-line plumbing: quiet TensorFlow start-up and one-line user errors."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Callable, Sequence


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up chatter (set before TensorFlow is imported)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")


def add_strategy_arguments(parser: argparse.ArgumentParser) -> None:
    """--strategy and --tpu, shared by the scripts that train or sample across devices."""
    parser.add_argument("--strategy", default="auto",
                        help="tf.distribute strategy: auto (default), one_device, mirrored, "
                             "multi_worker (needs TF_CONFIG) or tpu")
    parser.add_argument("--tpu", metavar="ADDRESS",
                        help="TPU address (grpc://host:port) or Cloud TPU name; implies tpu")


def run_main(main: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Runs a script's `main`, turning user errors into `error: ...` on stderr and exit code 2."""
    from keras_ncsn.errors import NCSNError

    try:
        return main(argv)
    except NCSNError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the last checkpoint is kept; run the same command to resume",
              file=sys.stderr)
        return 130
