"""Train an NCSN by denoising score matching: `python scripts/fit.py` runs the quick preset.

Examples:
    python scripts/fit.py                                   # embedded MNIST subset, <= 15 min on CPU
    python scripts/fit.py --config mnist --data-dir ../shared/data/mnist --steps 20 --no-grid
    python scripts/fit.py --data-dir photos/ --set data.image_size=32 --set data.channels=3
    python scripts/fit.py --config cifar10 --set train.jit_compile=true --out runs/cifar10
    python scripts/fit.py --resume runs/quick --steps 4000  # continue a run for longer
    python scripts/fit.py --config cifar10 --strategy mirrored   # all GPUs of this machine
    python scripts/fit.py --config cifar10 --strategy tpu --tpu grpc://10.0.0.2:8470
Re-running the same command after an interruption continues from the last checkpoint.
The quick preset has a time budget (train.time_budget=14 minutes for the whole command):
on a machine too slow for its 1400 steps, training stops earlier, on a learning-rate
schedule shortened to match, and says so; --steps N trains exactly N steps.
--data-dir is read whatever the preset; images of another size or channel count than the
config's are an error that names the --set to add. The first lines say what was read.
After training come the held-out loss and a final sample grid, each announced with an
estimate of its time; --no-heldout and --no-grid skip them.
train.batch_size is the global batch, split over the replicas. For several machines set
TF_CONFIG on each and run the same command with --strategy multi_worker (see docs/training_at_scale.md).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from keras_ncsn.cli import add_strategy_arguments, entry_point, start_tensorflow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config",
                        help="preset name (quick, mnist, fashion_mnist, cifar10, celeba) "
                             "or a config.json / run folder (default: quick)")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="SECTION.KEY=VALUE", help="override a config value (repeatable)")
    parser.add_argument("--dataset", help="shortcut for --set data.dataset=NAME")
    parser.add_argument("--data-dir", help="shortcut for --set data.data_dir=PATH: an IDX or "
                                           "image folder, an .npz/.npy file or a tfds data "
                                           "dir; without --dataset it is read whatever the "
                                           "preset (quick's embedded digits become files)")
    parser.add_argument("--steps", type=int,
                        help="train exactly N steps: --set train.steps=N, and "
                             "train.time_budget=0 unless --set gives it")
    parser.add_argument("--out", help="run folder (default: runs/<preset name>): new, empty, "
                                      "or a run folder to continue")
    parser.add_argument("--resume", metavar="RUN_DIR",
                        help="continue the run in RUN_DIR with its saved config")
    add_strategy_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--no-heldout", action="store_true",
                        help="skip the held-out loss after training (heldout_loss.json)")
    parser.add_argument("--no-grid", action="store_true",
                        help="skip the final sample grid (at paper size its Langevin chains "
                             "take far longer than a short run's training; the time is "
                             "announced before it starts)")
    return parser.parse_args(argv)


def config_overrides(args: argparse.Namespace) -> list[str]:
    """The --set items with the shortcut flags as items: the shortcuts win over --set,
    except that a train.time_budget given by --set wins over --steps turning it off (it
    comes first, and the last value of a repeated key is kept)."""
    overrides = ["train.time_budget=0"] if args.steps is not None else []
    overrides += args.overrides
    for key, value in (("data.dataset", args.dataset), ("data.data_dir", args.data_dir),
                       ("train.steps", args.steps)):
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides


def main(argv: Sequence[str] | None = None) -> int:
    started = time.monotonic()  # train.time_budget counts the whole command, start-up too
    args = parse_args(argv)
    start_tensorflow()
    from keras_ncsn.config import get_config
    from keras_ncsn.distribute import is_chief, make_strategy
    from keras_ncsn.errors import CheckpointError, ConfigError
    from keras_ncsn.training import format_heldout, train

    if args.resume and not os.path.isdir(args.resume):
        raise CheckpointError(f"--resume {args.resume}: no such run folder")
    if args.resume and args.config:
        raise ConfigError("--resume continues a run with its saved config: leave out --config")
    if args.resume and args.out and os.path.abspath(args.out) != os.path.abspath(args.resume):
        raise ConfigError(f"--resume writes into its run folder {args.resume}: leave out --out "
                          f"{args.out}")
    config = get_config(args.resume or args.config or "quick", config_overrides(args))
    out = args.resume or args.out or os.path.join("runs", config.name)
    strategy = make_strategy(args.strategy, args.tpu)
    result = train(config, out, progress=not args.no_progress and is_chief(strategy),
                   strategy=strategy, final_heldout=not args.no_heldout,
                   final_grid=not args.no_grid, started=started)
    if result.heldout is not None:
        print(format_heldout(result.heldout))
    print(f"done: step {result.final_step}; run folder {os.path.abspath(out)}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    sys.exit(cli())
