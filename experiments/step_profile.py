"""Where a training step of the quick preset spends its time, by TensorFlow op type.

    python experiments/step_profile.py                       # the quick preset
    python experiments/step_profile.py model.ngf=24 train.jit_compile=true

Runs 5 warm-up `fit` steps on random images, then profiles 10 more with
`tf.profiler` and sums the op events on TensorFlow's compute threads by op type. The
shares say what a faster kernel could gain: the convolutions (forward, and the input and
filter gradients) against everything else (normalisation, activations, the optimizer).
Arguments are `--set` style config assignments on top of the quick preset; with
train.jit_compile=true only the speed is shown (XLA's clusters are not broken down by op).
"""

from __future__ import annotations

import collections
import glob
import sys
import tempfile
import time
from typing import Sequence

from train_speed import quick_model_and_data

WARMUP_STEPS, PROFILED_STEPS, SHOWN = 5, 10, 15


def op_seconds(trace_dir: str) -> collections.Counter:
    """Seconds per op type on the compute threads of the profile in `trace_dir`."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    path = sorted(glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True))[-1]
    space = xplane_pb2.XSpace()
    with open(path, "rb") as handle:
        space.ParseFromString(handle.read())
    seconds: collections.Counter = collections.Counter()
    for plane in space.planes:
        names = {key: meta.name for key, meta in plane.event_metadata.items()}
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                # Op events are named "scope/name:OpType" (keep the type); the executor's
                # own events ("ExecutorState::Process") enclose them.
                name = names.get(event.metadata_id, "")
                if ":" in name and "::" not in name:
                    seconds[name.rsplit(":", 1)[-1]] += event.duration_ps * 1e-12
    return seconds


def main(argv: Sequence[str] | None = None) -> int:
    assignments = sys.argv[1:] if argv is None else list(argv)
    config, model, data = quick_model_and_data(assignments)
    import tensorflow as tf

    model.fit(data, steps_per_epoch=WARMUP_STEPS, epochs=1, verbose=0)
    with tempfile.TemporaryDirectory() as trace_dir:
        tf.profiler.experimental.start(trace_dir)
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=PROFILED_STEPS, epochs=1, verbose=0)
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        seconds = op_seconds(trace_dir)
    print(f"{' '.join(assignments) or 'quick preset'}: {PROFILED_STEPS / wall:.2f} steps/s "
          "(profiled)")
    if config.train.jit_compile:
        print("  XLA runs the step as compiled clusters, which the profiler does not break "
              "down by op: only the speed compares")
        return 0
    total = sum(seconds.values())
    conv = sum(value for name, value in seconds.items() if "Conv2D" in name)
    print(f"  op time {total:.2f} s over {wall:.2f} s wall; convolutions {conv / total:.0%}")
    for name, value in seconds.most_common(SHOWN):
        print(f"  {name:40s} {value:7.3f} s  {value / total:6.1%}")
    return 0


if __name__ == "__main__":
    from keras_ncsn.cli import quiet_tensorflow, run_main

    quiet_tensorflow()
    sys.exit(run_main(main))
