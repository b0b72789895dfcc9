"""Latency of one score batch and one full sample: Keras in-process, SavedModel, ONNX Runtime.

Examples:
    python scripts/serving_latency.py saved_models/mnist_quick --run runs/quick
    python scripts/serving_latency.py saved_models/mnist_quick --batch 16 --num-images 4
Times are medians over --repeats calls after one warm-up call (which traces / compiles and
is reported separately as "first call"). Without --run the Keras rows are skipped (the
export holds no Keras model). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from typing import Callable, Sequence

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir))
from keras_ncsn.cli import quiet_tensorflow, run_main  # noqa: E402

quiet_tensorflow()


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("export_dir", metavar="EXPORT_DIR",
                        help="a folder written by scripts/export.py")
    parser.add_argument("--run", metavar="RUN_DIR",
                        help="the run folder it was exported from, to time Keras too")
    parser.add_argument("--batch", type=int, default=16, help="images per score call (16)")
    parser.add_argument("--num-images", type=int, default=4,
                        help="images per full annealed Langevin sample (4)")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per row (5)")
    return parser.parse_args(argv)


def timed(function: Callable[[], object], repeats: int) -> tuple[float, float]:
    """(first call, median of `repeats` further calls) in seconds."""
    start = time.perf_counter()
    function()
    first = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return first, statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    import numpy as np
    import tensorflow as tf

    from keras_ncsn.export import load_export
    from keras_ncsn.onnx_runtime import OnnxExport
    from keras_ncsn.sampling import sample_options

    onnx = OnnxExport(args.export_dir)
    loaded = load_export(args.export_dir)
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, *onnx.image_shape), dtype=np.float32)
    levels = rng.integers(0, onnx.num_levels, args.batch).astype(np.int32)
    x_tf, levels_tf = tf.constant(x), tf.constant(levels)
    n = args.num_images
    rows: list[tuple[str, Callable[[], object]]] = []
    if args.run:
        from keras_ncsn.training import load_run

        config, model, _ = load_run(args.run)
        graph_score = tf.function(model.score, autograph=False)
        options = sample_options(config.sample)
        rows += [("Keras model.score (eager)", lambda: model.score(x_tf, levels_tf)),
                 ("Keras model.score (tf.function)", lambda: graph_score(x_tf, levels_tf)),
                 ("Keras model.sample", lambda: model.sample(n, seed=0, **options))]
    rows += [("SavedModel score", lambda: loaded.score(x=x_tf, level_index=levels_tf)),
             ("SavedModel sample", lambda: loaded.sample(num_images=n, seed=0)),
             ("ONNX Runtime score.onnx", lambda: onnx.score(x, levels)),
             ("ONNX Runtime sampler.onnx", lambda: onnx.sample(n, 0, "onnx")),
             ("NumPy loop + score.onnx", lambda: onnx.sample(n, 0, "numpy"))]
    steps = onnx.num_levels * onnx.steps_per_level
    print(f"score: batch {args.batch}; sample: {n} images, {onnx.num_levels} levels x "
          f"{onnx.steps_per_level} steps = {steps} score calls"
          f"{' + 1 denoising' if onnx.config.sample.denoise else ''}; "
          f"median of {args.repeats} after one warm-up call\n")
    print("| runtime | first call (s) | median (s) |\n|---|---:|---:|")
    for name, function in rows:
        first, median = timed(function, args.repeats)
        print(f"| {name} | {first:.3f} | {median:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
