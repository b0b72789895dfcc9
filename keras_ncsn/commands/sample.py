"""Sample images from a trained run by annealed Langevin dynamics, or by the VE ancestral
sampler with --set sample.method=ancestral (one step per noise level); EMA weights if kept.

Examples:
    python scripts/sample.py runs/quick                      # RUN/samples/grid.png, samples.npz
    python scripts/sample.py runs/quick --num-images 16 --seed 3 --out /tmp/s
    python scripts/sample.py runs/quick --strip 30 --gif     # + noise-to-image evolution
    python scripts/sample.py runs/quick --set sample.convention=paper --set sample.step_size=4e-5
    python scripts/sample.py runs/quick --set sample.method=ancestral --gif
    python scripts/sample.py runs/cifar10 --num-images 50000 --strategy mirrored  # all GPUs
With several replicas (--strategy, or auto on several GPUs) each draws its share of the
images from its own seed stream; the images then depend on the seed and the replica count.
Writes grid.png and samples.npz (images float32 [N, H, W, C] in [0, 1], seed, step and the
sample config as JSON); with --strip K, strip.png (one row per image, the state every K
Langevin steps from the initial noise to the result); with --gif, evolution.gif. Files
already in the output folder (an earlier sample.py's) are replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Sequence

import numpy as np

from keras_ncsn.cli import add_strategy_arguments, entry_point, start_tensorflow

# Sample settings that sampling a run ignores: --set of one is an error (key -> instead).
UNUSED_SETTINGS = {"sample.grid_every": "it spaces fit.py's sample grids; --strip K snapshots "
                                        "this sampler"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by fit.py")
    parser.add_argument("--num-images", type=int,
                        help="shortcut for --set sample.num_images=N (default: the run's)")
    parser.add_argument("--seed", type=int, help="shortcut for --set sample.seed=S")
    parser.add_argument("--steps-per-level", type=int,
                        help="shortcut for --set sample.steps_per_level=T")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="sample.KEY=VALUE", help="override a sample setting (repeatable)")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/samples)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace grid.png, samples.npz, ... already in --out")
    parser.add_argument("--strip", type=int, metavar="K",
                        help="also write strip.png with the state every K Langevin steps")
    parser.add_argument("--gif", action="store_true",
                        help="also write evolution.gif (frames every K steps of --strip, "
                             "else one per noise level)")
    add_strategy_arguments(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def sample_overrides(args: argparse.Namespace) -> list[str]:
    """The --set assignments plus the shortcut flags."""
    overrides = list(args.overrides)
    for key, value in (("sample.num_images", args.num_images), ("sample.seed", args.seed),
                       ("sample.steps_per_level", args.steps_per_level)):
        if value is not None:
            overrides.append(f"{key}={value}")
    return overrides


def evolution(initial: np.ndarray, snapshots: np.ndarray, final: np.ndarray) -> np.ndarray:
    """[S, N, H, W, C]: the initial noise, the snapshots, and the result if it differs from
    the last snapshot (after the denoising step, or when the steps are not a multiple of K)."""
    frames = [initial[None], snapshots]
    if not np.array_equal(np.clip(snapshots[-1], 0, 1), final):
        frames.append(final[None])
    return np.concatenate(frames)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_tensorflow()
    from keras_ncsn.config import override_sample
    from keras_ncsn.distribute import is_chief, make_strategy, sample_distributed
    from keras_ncsn.errors import ConfigError
    from keras_ncsn.images import save_gif, save_grid, save_strip
    from keras_ncsn.io import atomic_path, check_output_files
    from keras_ncsn.sampling import sample_options
    from keras_ncsn.training import RunPaths, check_run, load_run

    if args.strip is not None and args.strip < 1:
        raise ConfigError(f"--strip K needs K >= 1 (Langevin steps between columns), "
                          f"got {args.strip}")
    config = check_run(args.run_dir)
    sample = override_sample(config, sample_overrides(args), UNUSED_SETTINGS)
    out = args.out or RunPaths(args.run_dir).samples
    names = ["grid.png", "samples.npz", *(["strip.png"] if args.strip else []),
             *(["evolution.gif"] if args.gif else [])]
    check_output_files([os.path.join(out, name) for name in names], overwrite=args.overwrite)
    strategy = make_strategy(args.strategy, args.tpu)
    replicas = strategy.num_replicas_in_sync
    if replicas > 1 and (args.strip or args.gif):
        raise ConfigError("--strip and --gif sample on one device: use --strategy one_device")
    with strategy.scope():
        _, model, step = load_run(args.run_dir)
    steps = model.sampler(**sample_options(sample)).steps_per_level  # 1 for "ancestral"
    snapshot_every = args.strip or (steps if args.gif else 0)
    options = {**sample_options(sample), "snapshot_every": snapshot_every}
    print(f"sampling {sample.num_images} images from {os.path.abspath(args.run_dir)} at step "
          f"{step}: {config.noise.num_levels} noise levels x {steps} steps, {sample.method} "
          f"(seed {sample.seed}, {replicas} replica(s))")
    progress = not args.no_progress and is_chief(strategy)
    if replicas > 1:
        result = sample_distributed(model, sample.num_images, sample.seed, strategy,
                                    progress=progress, **options)
    else:
        result = model.sample(sample.num_images, seed=sample.seed, progress=progress,
                              **options)
    images, snapshots = result if snapshot_every else (result, None)
    images = images.numpy()
    if not is_chief(strategy):
        return 0
    written = [save_grid(images, os.path.join(out, "grid.png"))]
    npz = os.path.join(out, "samples.npz")
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, images=images, seed=sample.seed, step=step,
                 sample_config=json.dumps(asdict(sample), sort_keys=True))
    written.append(npz)
    if snapshot_every:
        initial = model.sampler(**options).init_state(images.shape, sample.seed).numpy()
        frames = evolution(initial, snapshots.numpy(), images)
        if args.strip:
            written.append(save_strip(frames, os.path.join(out, "strip.png")))
        if args.gif:
            written.append(save_gif(frames, os.path.join(out, "evolution.gif")))
    for path in written:
        print(f"wrote {path}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    sys.exit(cli())
