"""The paper's toy experiments (Fig. 1-3): each sub-command writes a PNG figure and JSON numbers.

Examples:
    python scripts/toy.py fig3 --overwrite     # mode weights: plain vs annealed Langevin, 3 seeds
    python scripts/toy.py fig3 --schedule paper  # sigma 10 -> 0.1, mixture convolved with the noise
    python scripts/toy.py fig2                 # SSM-trained MLP: accurate near the modes only
    python scripts/toy.py fig1 --data-dir ../shared/data/cifar10_jpeg_10k.npz
    python scripts/toy.py fig1 --data-dir ../shared/data/mnist --image-size 28 --channels 1
    python scripts/toy.py fig2 --quick         # seconds, into runs/toy
Full runs write into docs/figures (figN_*.png and .json), --quick runs into runs/toy; a
figure already there is replaced only with --overwrite. Each full run takes at most 10
minutes on 2 CPU cores. See keras_ncsn/toy.py for the science.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Sequence

from keras_ncsn.cli import entry_point, require_matplotlib, start_tensorflow


# The checkout this module sits in (keras_ncsn/commands/ -> the repository): fig1's default
# images are the shared data beside it.
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEFAULT_IMAGES = os.path.normpath(os.path.join(REPO, os.pardir, "shared", "data",
                                               "cifar10_jpeg_10k.npz"))
STEMS = {"fig1": "fig1_ssm_loss", "fig2": "fig2_scores", "fig3": "fig3_langevin"}
HEAVY = 1  # index of the (5, 5) mode, weight 4/5, in the mixture's means
# Defaults of the counting flags, full and with --quick; a flag given explicitly wins.
DEFAULTS = {"fig1": {"steps": 400, "batch_size": 32}, "fig2": {"steps": 10_000},
            "fig3": {"chains": 1280, "repeats": 3}}
QUICK = {"fig1": {"steps": 6, "batch_size": 4}, "fig2": {"steps": 50},
         "fig3": {"chains": 256, "repeats": 1}}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", help="output folder (default: docs/figures, or runs/toy "
                                      "with --quick)")
    common.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    common.add_argument("--quick", action="store_true",
                        help="a few seconds' version of the experiment, for tests (counts "
                             "given as flags still apply)")
    common.add_argument("--overwrite", action="store_true",
                        help="replace the figure's .png and .json already in --out")
    commands = parser.add_subparsers(dest="command", required=True)

    fig1 = commands.add_parser("fig1", parents=[common],
                               help="SSM loss on raw vs slightly noisy images")
    fig1.add_argument("--data-dir", default=DEFAULT_IMAGES,
                      help="images: an .npz/.npy file or a folder (default: the shared "
                           "CIFAR-10 subset)")
    fig1.add_argument("--image-size", type=int, default=32,
                      help="data.image_size of the images (default: 32)")
    fig1.add_argument("--channels", type=int, default=3,
                      help="data.channels of the images, 1 or 3 (default: 3)")
    fig1.add_argument("--steps", type=int, help="steps per curve (default: 400; 6 with --quick)")
    fig1.add_argument("--batch-size", type=int, help="batch size (default: 32; 4 with --quick)")
    fig1.add_argument("--noise-std", type=float, default=0.01,
                      help="std of the noise of the second curve (default: 0.01)")

    fig2 = commands.add_parser("fig2", parents=[common],
                               help="SSM-trained MLP score vs the exact score")
    fig2.add_argument("--steps", type=int,
                      help="training steps (default: 10000; 50 with --quick)")
    fig2.add_argument("--objective", default="ssm_vr", choices=("ssm", "ssm_vr"),
                      help="sliced score matching form (default: ssm_vr)")
    fig2.add_argument("--projection", default="gaussian", choices=("gaussian", "rademacher"),
                      help="random projections (default: gaussian)")

    fig3 = commands.add_parser("fig3", parents=[common],
                               help="mode weights of plain vs annealed Langevin dynamics")
    fig3.add_argument("--schedule", default="code", choices=("code", "paper"),
                      help="code: sigma 20 -> 1, component std replaced by sigma (default); "
                           "paper: sigma 10 -> 0.1, mixture convolved with N(0, sigma^2 I)")
    fig3.add_argument("--chains", type=int, help="chains (default: 1280; 256 with --quick)")
    fig3.add_argument("--repeats", type=int,
                      help="seeds seed, seed+1, ... to run (default: 3; 1 with --quick); the "
                           "first is plotted")
    args = parser.parse_args(argv)
    for name, default in (QUICK if args.quick else DEFAULTS)[args.command].items():
        if getattr(args, name) is None:
            setattr(args, name, default)
    return args


def run_fig1(args: argparse.Namespace, out: str) -> dict:
    from keras_ncsn.config import DataConfig
    from keras_ncsn.errors import ImageShapeError
    from keras_ncsn.commands.toy_figures import plot_fig1
    from keras_ncsn.toy import fig1_experiment

    data = DataConfig(dataset="files", data_dir=args.data_dir, image_size=args.image_size,
                      channels=args.channels)
    settings = dict(steps=args.steps, batch_size=args.batch_size, noise_std=args.noise_std,
                    learning_rate=1e-3, filters=32, blocks=2, objective="ssm_vr")
    if args.quick:
        settings.update(filters=4, blocks=1)
    try:
        result = fig1_experiment(data, seed=args.seed, **settings)
    except ImageShapeError as e:  # its message names --set, which this script does not take
        height, width, channels = e.shape
        raise ImageShapeError(f"images in {e.where} are {height}x{width}x{channels} but "
                              f"--image-size is {args.image_size} and --channels "
                              f"{args.channels}: use --image-size {height} --channels "
                              f"{channels}", e.where, e.shape) from None
    plot_fig1(result, os.path.join(out, STEMS["fig1"] + ".png"))
    stats = result.tail_stats()
    for name, row in stats.items():
        print(f"{name}: loss over the last {row['steps']} steps: mean {row['mean']:.4g}, "
              f"variance {row['variance']:.4g}, std/|mean| {row['relative_std']:.4f}")
    return {"settings": {**settings, "data_dir": args.data_dir, "image_size": args.image_size,
                         "channels": args.channels, "tail_fraction": result.tail_fraction},
            "tail": stats, "losses": {k: v.tolist() for k, v in result.losses.items()}}


def run_fig2(args: argparse.Namespace, out: str) -> dict:
    from keras_ncsn.commands.toy_figures import plot_fig2
    from keras_ncsn.toy import NEAR_RADIUS, fig2_experiment

    settings = dict(steps=args.steps, batch_size=128, learning_rate=1e-3,
                    objective=args.objective, projection=args.projection, grid_size=161)
    if args.quick:
        settings.update(grid_size=41)
    result = fig2_experiment(seed=args.seed, **settings)
    plot_fig2(result, os.path.join(out, STEMS["fig2"] + ".png"))
    ratio = result.low_density_error / result.near_mode_error
    print(f"mean score error near the modes {result.near_mode_error:.4g}, between the modes "
          f"{result.low_density_error:.4g} ({ratio:.1f}x)")
    return {"settings": settings, "near_radius": NEAR_RADIUS,
            "near_mode_error": result.near_mode_error,
            "low_density_error": result.low_density_error, "ratio": ratio,
            "final_loss": float(result.losses[-100:].mean())}


def run_fig3(args: argparse.Namespace, out: str) -> dict:
    from keras_ncsn.commands.toy_figures import plot_fig3
    from keras_ncsn.toy import PAPER_MIXTURE, SCHEDULES, fig3_experiment

    settings = dict(chains=args.chains, schedule=args.schedule, plain_steps=1000,
                    steps_per_level=100)
    if args.quick:
        settings.update(plain_steps=100, steps_per_level=10)
    results = fig3_experiment(range(args.seed, args.seed + args.repeats), **settings)
    plot_fig3(results[0], os.path.join(out, STEMS["fig3"] + ".png"))
    runs = []
    for result in results:
        heavy = {name: f[HEAVY] for name, f in result.fractions.items()}
        print(f"seed {result.seed}: fraction in the (5, 5) mode: i.i.d. {heavy['iid']:.4f}, "
              f"Langevin {heavy['plain']:.4f}, annealed Langevin {heavy['annealed']:.4f}")
        runs.append({"seed": result.seed, **result.fractions})
    annealing = SCHEDULES[args.schedule]
    return {"settings": {**settings, "means": PAPER_MIXTURE.means,
                         "weights": PAPER_MIXTURE.weights, "sigmas": annealing.sigmas.tolist(),
                         "perturbation": annealing.perturbation,
                         "step_size": annealing.step_size, "convention": "paper"},
            "runs": runs,
            "annealed_within_0.04_of_0.8": all(abs(r["annealed"][HEAVY] - 0.8) <= 0.04
                                               for r in runs),
            "plain_off_by_more_than_0.15": all(abs(r["plain"][HEAVY] - 0.8) > 0.15
                                               for r in runs)}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    require_matplotlib("the toy figures")
    start_tensorflow()
    from keras_ncsn.io import atomic_write_text, check_output_files

    out = args.out or os.path.join(*(("runs", "toy") if args.quick else ("docs", "figures")))
    stem = os.path.join(out, STEMS[args.command])
    check_output_files([stem + ".png", stem + ".json"], overwrite=args.overwrite)
    start, cpu_start = time.time(), time.process_time()
    numbers = {"fig1": run_fig1, "fig2": run_fig2, "fig3": run_fig3}[args.command](args, out)
    report = {"command": ["scripts/toy.py", *(sys.argv[1:] if argv is None else argv)],
              "quick": args.quick, "seed": args.seed, **numbers,
              "wall_time_s": round(time.time() - start, 1),
              "cpu_time_s": round(time.process_time() - cpu_start, 1)}
    atomic_write_text(stem + ".json", json.dumps(report, indent=1) + "\n")
    print(f"wrote {stem}.png and .json ({report['wall_time_s']:.0f} s)")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    sys.exit(cli())
