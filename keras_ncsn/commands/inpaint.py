"""Inpaint occluded images with a trained run (App. B.3 of the paper; EMA weights if kept).

Examples:
    python scripts/inpaint.py runs/quick --mask bottom       # 8 held-out digits, 4 draws each
    python scripts/inpaint.py runs/quick --mask center --split train --num-images 4 --draws 6
    python scripts/inpaint.py runs/quick --mask my_mask.png --images a.png b.png
Masks: top, bottom, left, right (that half is missing), center (a centred square of half
the side is missing), random (a seeded half of the pixels is missing), or an image file of
the run's size (white = observed, black = missing). Writes inpainting.png (one row per
image: the occluded input with missing pixels grey, the draws, the original, as in the
paper's Fig. 6) and inpainting.npz (originals, mask, inpainted [N, K, H, W, C], seed, step,
sample config as JSON); files already there are replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import asdict
from typing import Sequence

import numpy as np

from keras_ncsn.cli import entry_point, start_tensorflow


HALF_MASKS = ("top", "bottom", "left", "right")
MASK_NAMES = (*HALF_MASKS, "center", "random")
RANDOM_OBSERVED = 0.5  # fraction of pixels the "random" mask keeps
MISSING_GREY = 0.5  # how missing pixels show in the occluded-input column
DEFAULT_COUNT = 8  # images of --split
# Sample settings that inpainting ignores: --set of one is an error (key -> instead).
UNUSED_SETTINGS = {"sample.grid_every": "it spaces fit.py's sample grids",
                   "sample.num_images": "use --num-images (images of --split) or --images"}


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by fit.py")
    parser.add_argument("--mask", required=True, metavar="{" + ",".join(MASK_NAMES) + ",PATH}",
                        help="which pixels are missing (see above)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--images", nargs="+", metavar="FILE",
                        help="image files of the run's size (converted to its channels)")
    source.add_argument("--split", choices=("eval", "train"),
                        help="images from the run's dataset (default: eval)")
    parser.add_argument("--num-images", type=int,
                        help="how many images of --split (default: 8)")
    parser.add_argument("--draws", type=int, default=4,
                        help="inpainted draws per image (default: 4)")
    parser.add_argument("--seed", type=int, help="shortcut for --set sample.seed=S")
    parser.add_argument("--set", dest="overrides", action="append", default=[],
                        metavar="sample.KEY=VALUE", help="override a sample setting (repeatable)")
    parser.add_argument("--out", help="output folder (default: RUN_DIR/samples)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace inpainting.png and .npz already in --out")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def check_mask_name(name: str) -> None:
    """A mask is a known name or a file path (anything with an extension or a folder)."""
    from keras_ncsn.errors import ConfigError

    if name not in MASK_NAMES and not os.path.splitext(name)[1] and os.sep not in name:
        raise ConfigError(f"unknown mask {name!r}: use {', '.join(MASK_NAMES)} or an image "
                          f"file (white = observed, black = missing)")


def build_mask(name: str, size: int, seed: int) -> np.ndarray:
    """The [H, W, 1] mask (1 = observed) named by --mask."""
    from keras_ncsn.images import load_mask_png
    from keras_ncsn.masks import center_square_mask, half_mask, random_pixel_mask

    if name in HALF_MASKS:
        return half_mask(size, name)
    if name == "center":
        return center_square_mask(size, size // 2)
    if name == "random":
        return random_pixel_mask(size, RANDOM_OBSERVED, seed)
    return load_mask_png(name, size)


def read_images(paths: Sequence[str], size: int, channels: int) -> np.ndarray:
    """uint8 [N, size, size, channels] from image files, converted to grey or RGB."""
    from keras_ncsn.errors import DataError
    from keras_ncsn.images import read_image

    images = []
    for path in paths:
        array = read_image(path, channels)[0]
        if array.shape[:2] != (size, size):
            raise DataError(f"image {path} is {array.shape[1]}x{array.shape[0]} (WxH) but the "
                            f"run's model takes {size}x{size} images")
        images.append(array.reshape(size, size, channels))
    return np.stack(images)


def figure_rows(originals: np.ndarray, mask: np.ndarray, inpainted: np.ndarray) -> np.ndarray:
    """[N * (K + 2), H, W, C]: per image the occluded input, its K draws, the original."""
    occluded = np.where(mask > 0.5, originals, MISSING_GREY)
    rows = np.concatenate([occluded[:, None], inpainted, originals[:, None]], axis=1)
    return rows.reshape(-1, *originals.shape[1:])


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    start_tensorflow()
    from keras_ncsn.config import override_sample
    from keras_ncsn.data import load_images
    from keras_ncsn.errors import ConfigError
    from keras_ncsn.images import save_grid
    from keras_ncsn.io import atomic_path, check_output_files
    from keras_ncsn.sampling import sample_options
    from keras_ncsn.training import RunPaths, check_run, load_run

    check_mask_name(args.mask)
    if args.images and args.num_images is not None:
        raise ConfigError("--num-images counts images of --split; with --images every file is "
                          "inpainted: leave out --num-images")
    count = DEFAULT_COUNT if args.num_images is None else args.num_images
    for flag, value in (("--num-images", count), ("--draws", args.draws)):
        if value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    config = check_run(args.run_dir)
    sample = override_sample(config, list(args.overrides) + (
        [f"sample.seed={args.seed}"] if args.seed is not None else []), UNUSED_SETTINGS)
    out = args.out or RunPaths(args.run_dir).samples
    png, npz = (os.path.join(out, name) for name in ("inpainting.png", "inpainting.npz"))
    check_output_files([png, npz], overwrite=args.overwrite)
    size, channels = config.data.image_size, config.data.channels
    mask = build_mask(args.mask, size, sample.seed)
    if args.images:
        uint8 = read_images(args.images, size, channels)
    else:
        uint8 = load_images(config.data, args.split or "eval", count)
    originals = uint8.astype(np.float32) / 255.0
    _, model, step = load_run(args.run_dir)
    count, draws = len(originals), args.draws
    print(f"inpainting {count} images x {draws} draws with the run at step {step} "
          f"(mask {args.mask}, seed {sample.seed})")
    filled = model.inpaint(np.repeat(originals, draws, axis=0), mask, seed=sample.seed,
                           progress=not args.no_progress, **sample_options(sample))
    inpainted = filled.numpy().reshape(count, draws, *originals.shape[1:])
    save_grid(figure_rows(originals, mask, inpainted), png, ncol=draws + 2)
    with atomic_path(npz) as tmp, open(tmp, "wb") as f:
        np.savez(f, originals=originals, mask=mask, inpainted=inpainted, seed=sample.seed,
                 step=step, sample_config=json.dumps(asdict(sample), sort_keys=True))
    print(f"wrote {png}\nwrote {npz}")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    sys.exit(cli())
