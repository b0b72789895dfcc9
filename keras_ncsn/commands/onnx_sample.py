"""Sample images from an export folder with ONNX Runtime and NumPy only (no TensorFlow).

Examples:
    python scripts/onnx_sample.py saved_models/mnist                # NumPy loop, score.onnx
    python scripts/onnx_sample.py saved_models/mnist --sampler onnx --seed 3 --out s.png
"--sampler numpy" runs annealed Langevin dynamics in NumPy around score.onnx; "--sampler
onnx" runs sampler.onnx, the whole loop as one ONNX graph. Both read the sigmas and sampler
settings from the folder's config.json and draw the starting batch and the noise from
NumPy's default_rng(seed), so they give the same images for a seed (up to float rounding);
TensorFlow's samplers give other images for the same seed. An existing --out file is
replaced only with --overwrite.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Sequence

from keras_ncsn.cli import entry_point


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", metavar="EXPORT_DIR",
                        help="a folder written by scripts/export.py")
    parser.add_argument("--sampler", choices=("numpy", "onnx"), default="numpy",
                        help="NumPy loop around score.onnx, or sampler.onnx (default: numpy)")
    parser.add_argument("--num-images", type=int, help="default: the config's sample.num_images")
    parser.add_argument("--seed", type=int, default=0, help="NumPy seed (default: 0)")
    parser.add_argument("--out", default="onnx_samples.png", help="PNG grid to write "
                                                                  "(default: onnx_samples.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from keras_ncsn.errors import ConfigError
    from keras_ncsn.images import save_grid
    from keras_ncsn.io import check_output_files
    from keras_ncsn.onnx_runtime import OnnxExport, check_sample_args

    export = OnnxExport(args.export_dir)
    num_images = export.config.sample.num_images if args.num_images is None else args.num_images
    check_sample_args(num_images, args.seed)
    if not args.out.lower().endswith(".png"):
        raise ConfigError(f"--out is a PNG grid and must end in .png, got {args.out}")
    check_output_files([args.out], overwrite=args.overwrite)
    print(f"sampling {num_images} images from {os.path.abspath(args.export_dir)} with the "
          f"{args.sampler} sampler: {export.num_levels} noise levels x "
          f"{export.steps_per_level} steps (seed {args.seed})")
    start = time.perf_counter()
    images = export.sample(num_images, args.seed, args.sampler)
    seconds = time.perf_counter() - start
    print(f"wrote {save_grid(images, args.out)} ({seconds:.1f} s)")
    return 0


cli = entry_point(main)


if __name__ == "__main__":
    sys.exit(cli())
