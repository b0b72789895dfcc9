"""Training steps per second of the quick preset at other widths and batch sizes.

    python experiments/train_speed.py 16 64        # ngf 16, batch 64

Times 20 `fit` steps after 3 warm-up steps on random images (no data pipeline), in
one process per setting, so settings measured one after another on an idle machine compare.
The widths chosen for the quick preset and the shipped models came from these numbers
(docs/quick_preset_tuning.md).
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import tensorflow as tf

    from keras_ncsn.config import Config
    from keras_ncsn.model import NCSN


def quick_model_and_data(assignments: Sequence[str]) -> tuple[Config, NCSN, tf.data.Dataset]:
    """(config, compiled model, endless dataset of random image batches) for the quick preset
    with `assignments`; shared with step_profile.py."""
    # keras_ncsn first: it turns on TensorFlow's oneDNN kernels, which must happen before
    # TensorFlow is imported (without them this CPU trains about half as fast).
    from keras_ncsn.config import get_config
    from keras_ncsn.model import build_model, compile_model

    import numpy as np
    import tensorflow as tf

    config = get_config("quick", assignments)
    model = compile_model(build_model(config), config.train)
    batch = config.train.batch_size
    size, channels = config.data.image_size, config.data.channels
    images = np.random.default_rng(0).random((batch * 30, size, size, channels),
                                             dtype=np.float32)
    return config, model, tf.data.Dataset.from_tensor_slices(images).batch(batch).repeat()


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 2 or not all(arg.isdigit() for arg in args):
        print("usage: train_speed.py NGF BATCH (two positive integers)", file=sys.stderr)
        return 2
    ngf, batch = int(args[0]), int(args[1])
    from keras_ncsn.model import count_trainable_parameters

    _, model, data = quick_model_and_data([f"model.ngf={ngf}", f"train.batch_size={batch}"])
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=20, epochs=1, verbose=0)
    seconds = time.perf_counter() - start
    print(f"ngf {ngf} batch {batch}: {count_trainable_parameters(model):,} parameters, "
          f"trace + 3 steps {warm:.1f} s, {20 / seconds:.2f} steps/s, "
          f"{20 * batch / seconds:.0f} images/s")
    return 0


if __name__ == "__main__":
    from keras_ncsn.cli import quiet_tensorflow, run_main

    quiet_tensorflow()
    sys.exit(run_main(main))
