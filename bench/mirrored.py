"""What mirroring buys: training throughput on one device and mirrored over several."""

from __future__ import annotations

import time
from typing import Any

import keras
import tensorflow as tf

from keras_ncsn.config import Config
from keras_ncsn.distribute import check_global_batch, shard_by_data, split_cpu
from keras_ncsn.errors import ConfigError


class _StepClock(keras.callbacks.Callback):
    """The time at the end of every training step."""

    def __init__(self):
        super().__init__()
        self.ends: list[float] = []

    def on_train_batch_end(self, batch, logs=None):
        float(logs["loss"])  # waits for the step to finish
        self.ends.append(time.perf_counter())


def benchmark_mirrored(config: Config, *, steps: int = 10, replicas: int = 2) -> dict[str, Any]:
    """Training throughput (images/s) on one device and mirrored over `replicas` devices.

    Both train `config`'s model on its data with the same global batch, in this process,
    one after the other, in one `fit` each: `steps` steps timed from the end of the first
    (which traces). Without GPUs the CPU is split into `replicas` logical devices, so call
    this before TensorFlow starts.
    Returns {"single_device": {...}, "mirrored": {...}, "speedup": mirrored / single}.
    """
    from keras_ncsn.data import make_datasets
    from keras_ncsn.model import build_model, compile_model

    if not tf.config.list_physical_devices("GPU"):
        split_cpu(replicas)
    devices = [d.name for d in (tf.config.list_logical_devices("GPU")
                                or tf.config.list_logical_devices("CPU"))][:replicas]
    if len(devices) < replicas:
        raise ConfigError(f"mirroring over {replicas} devices needs {replicas}, found "
                          f"{len(devices)}")
    batch = config.train.batch_size
    data, _ = make_datasets(config.data, batch, seed=config.train.seed)
    results: dict[str, Any] = {}
    for name, strategy in (("single_device", tf.distribute.OneDeviceStrategy(devices[0])),
                           ("mirrored", tf.distribute.MirroredStrategy(devices))):
        check_global_batch(batch, strategy)
        with strategy.scope():
            model = compile_model(build_model(config), config.train)
        clock = _StepClock()
        model.fit(shard_by_data(data), steps_per_epoch=steps + 1, epochs=1, verbose=0,
                  callbacks=[clock])
        seconds = clock.ends[-1] - clock.ends[0]
        results[name] = {"devices": list(strategy.extended.worker_devices),
                         "images_per_second": round(steps * batch / seconds, 2),
                         "seconds": round(seconds, 2)}
    results.update(global_batch=batch, steps=steps, replicas=replicas, speedup=round(
        results["mirrored"]["images_per_second"] / results["single_device"]["images_per_second"],
        3))
    return results
