"""Training and sampling on several devices with TensorFlow's own `tf.distribute`.

`make_strategy` turns a name ("auto", "one_device", "mirrored", "multi_worker", "tpu")
into a strategy; `training.train` builds the model under its scope and `model.fit` does the
rest: Keras' TensorFlow trainer splits each global batch over the replicas, runs
`NCSN.train_step` on every replica and all-reduces (sums) the gradients, which is why the
step's loss is its share of the global-batch mean (see `NCSN.train_step`). Only the chief
writes files (`is_chief`). `sample_distributed` splits N samples over the replicas, one
seed stream each, and gathers them.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import socket
from urllib.parse import urlparse

import keras
import tensorflow as tf
from tqdm.auto import tqdm

from keras_ncsn.config import Config
from keras_ncsn.errors import CheckpointError, ConfigError
from keras_ncsn.model import ema_weights

STRATEGIES = ("auto", "one_device", "mirrored", "multi_worker", "tpu")
TPU_CONNECT_TIMEOUT_S = 10.0
# Stream of `sampling`'s stateless keys that derives each replica's sampling seed.
_REPLICA_SEED_STREAM = 3


def _tf_config_tasks() -> int:
    """Number of tasks in the TF_CONFIG cluster (0 when TF_CONFIG is unset)."""
    raw = os.environ.get("TF_CONFIG", "")
    if not raw:
        return 0
    try:
        cluster = json.loads(raw)["cluster"]
        return sum(len(addresses) for addresses in cluster.values())
    except (ValueError, KeyError, TypeError, AttributeError):
        raise ConfigError("TF_CONFIG is not valid: expected JSON like "
                          '{"cluster": {"worker": ["host1:port", "host2:port"]}, '
                          '"task": {"type": "worker", "index": 0}}') from None


def _check_reachable(address: str) -> None:
    """Fails fast on a grpc://host:port (or host:port) TPU address that does not answer.

    A TPU name (resolved by the Cloud TPU API) is left to the resolver.
    """
    parsed = urlparse(address if "://" in address else f"grpc://{address}")
    try:
        host, port = parsed.hostname, parsed.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        return
    try:
        with socket.create_connection((host, port), timeout=TPU_CONNECT_TIMEOUT_S):
            pass
    except OSError as e:
        raise ConfigError(f"cannot reach the TPU at {address}: {e.strerror or e}") from None


def _tpu_strategy(tpu: str | None) -> tf.distribute.TPUStrategy:
    if tpu:
        _check_reachable(tpu)
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu or None)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as e:  # the resolver raises many types (ValueError, RuntimeError, HTTP)
        what = f"the TPU {tpu!r}" if tpu else "a TPU (no --tpu given and none found locally)"
        detail = " ".join(str(e).split())[:200]
        raise ConfigError(f"cannot connect to {what}: {type(e).__name__}: {detail}") from None
    return tf.distribute.TPUStrategy(resolver)


def make_strategy(name: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
    """The `tf.distribute` strategy called `name` (one of `STRATEGIES`).

    "auto": "tpu" when `tpu` is given, "multi_worker" when TF_CONFIG names more than one
    task, "mirrored" on two or more GPUs, else TensorFlow's default strategy (one device,
    exactly the code path without distribution). "one_device": the first GPU, else the CPU.
    "mirrored": all GPUs of this machine, else all logical CPUs (see `split_cpu`).
    "multi_worker": synchronous training over the TF_CONFIG cluster (all GPUs, else the CPU,
    of every worker). "tpu": the TPU at `tpu` (a grpc://host:port address or a Cloud TPU
    name; none: the TPU_NAME environment variable or the local TPU VM).
    Call it before any other TensorFlow work: multi-worker and TPU set up the runtime.
    """
    if name not in STRATEGIES:
        raise ConfigError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {name!r}")
    if tpu is not None and name not in ("auto", "tpu"):
        raise ConfigError(f"--tpu needs --strategy tpu (or auto), got --strategy {name}")
    if name == "auto":
        if tpu is not None:
            name = "tpu"
        elif _tf_config_tasks() > 1:
            name = "multi_worker"
        elif len(tf.config.list_physical_devices("GPU")) > 1:
            name = "mirrored"
        else:
            return tf.distribute.get_strategy()
    if name == "multi_worker":  # before anything starts TensorFlow's runtime
        if not _tf_config_tasks():
            raise ConfigError("--strategy multi_worker needs the TF_CONFIG environment variable "
                              "(the cluster's addresses and this task; see docs/training_at_scale.md)")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        return _tpu_strategy(tpu)
    devices = [d.name for d in (tf.config.list_logical_devices("GPU")
                                or tf.config.list_logical_devices("CPU"))]
    if name == "one_device":
        return tf.distribute.OneDeviceStrategy(devices[0])
    return tf.distribute.MirroredStrategy(devices)


def split_cpu(count: int) -> None:
    """Splits the CPU into `count` logical devices, to try mirroring without GPUs.

    Must run before TensorFlow initialises its devices (before any op or strategy).
    """
    cpu = tf.config.list_physical_devices("CPU")[0]
    try:
        tf.config.set_logical_device_configuration(
            cpu, [tf.config.LogicalDeviceConfiguration()] * count)
    except RuntimeError:
        if len(tf.config.list_logical_devices("CPU")) != count:
            raise ConfigError(f"cannot split the CPU into {count} logical devices: TensorFlow "
                              "has already started; split it first thing") from None


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files (checkpoints, logs, samples)."""
    return strategy.extended.should_checkpoint


def describe(strategy: tf.distribute.Strategy) -> str:
    """One line naming the strategy and its replicas, for the start-up log."""
    default = not tf.distribute.has_strategy() and strategy is tf.distribute.get_strategy()
    name = "default (no distribution)" if default else type(strategy).__name__
    return f"{name}, {strategy.num_replicas_in_sync} replica(s)"


def check_global_batch(batch_size: int, strategy: tf.distribute.Strategy) -> int:
    """The per-replica batch: train.batch_size is global and must split evenly."""
    replicas = strategy.num_replicas_in_sync
    if batch_size % replicas:
        raise ConfigError(f"train.batch_size={batch_size} is the global batch and must split "
                          f"evenly over {replicas} replicas")
    return batch_size // replicas


def shard_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Shards `dataset` over workers by element (every worker runs the same seeded pipeline
    and keeps its share of each global batch): our pipelines read no files to split."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _over_workers(strategy: tf.distribute.Strategy, value: int) -> list[int]:
    """`value` of every worker of a multi-worker run (a collective: all workers must call
    it at the same point); [value] otherwise."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return [value]
    values = strategy.gather(strategy.run(lambda: tf.constant([value], tf.int64)), axis=0)
    return [int(v) for v in values.numpy()]


def lowest_over_workers(strategy: tf.distribute.Strategy, value: int) -> int:
    """The smallest `value` over the workers: how workers that each measured their own speed
    agree on the step a time budget stops at."""
    return min(_over_workers(strategy, value))


def check_same_step(strategy: tf.distribute.Strategy, step: int) -> None:
    """Refuses to train when workers resumed from different checkpoints (a run folder that
    is not shared by all workers)."""
    found = sorted(set(_over_workers(strategy, step)))
    if len(found) > 1:
        raise CheckpointError(f"workers resumed from different steps {found}: the run folder "
                              "must be one folder that every worker reads and the chief writes")


def _replica_seed(seed: tf.Tensor) -> tf.Tensor:
    """This replica's sampling seed: stream (seed, replica id), a pure function of both."""
    replica = tf.distribute.get_replica_context().replica_id_in_sync_group
    key = tf.stack([tf.cast(seed, tf.int64), tf.constant(_REPLICA_SEED_STREAM, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int64),
                                                   alg="philox")
    # One int64 drawn from the folded key (fold_in changes only one of the key's halves).
    return tf.random.stateless_uniform([], key, minval=None, maxval=None, dtype=tf.int64,
                                       alg="philox")


def sample_distributed(model: keras.Model, num_images: int, seed: int,
                       strategy: tf.distribute.Strategy, *, ema: bool = True,
                       progress: bool = False, **options) -> tf.Tensor:
    """`num_images` samples [N, H, W, C] drawn by all replicas of `strategy` together.

    Each replica draws ceil(N / R) images with its own seed stream (seed, replica id), so
    the images are reproducible for (seed, R) and distinct across replicas; the batches are
    gathered in replica order and cut to N. Build the model under `strategy.scope()`
    (`training.load_run` inside the scope) so that every replica has its weights. EMA,
    `progress` (one call per noise level) and `options` work as in `NCSN.sample`; snapshots
    are not gathered.
    """
    if options.get("snapshot_every"):
        raise ConfigError("distributed sampling keeps no snapshots (--strip, --gif): "
                          "sample on one device for those")
    sampler = model.sampler(**options)
    per_replica = math.ceil(int(num_images) / strategy.num_replicas_in_sync)
    shape = (per_replica, *model.image_shape)
    loop = sampler.compiled_loop()
    seed = tf.constant(seed, tf.int64)

    @tf.function(autograph=False)
    def start(seed):
        return strategy.run(lambda: sampler.initial(shape, _replica_seed(seed)))

    @tf.function(autograph=False)
    def run(x, seed, first, last):
        return strategy.run(lambda x: loop(x, _replica_seed(seed), first, last), args=(x,))

    levels = range(sampler.num_levels)
    spans = [(level, level + 1) for level in levels] if progress else [(0, len(levels))]
    with ema_weights(model) if ema else contextlib.nullcontext():
        x = start(seed)
        for first, last in tqdm(spans, desc="noise levels", unit="level",
                                disable=not progress, dynamic_ncols=True):
            x = run(x, seed, tf.constant(first), tf.constant(last))
    return strategy.gather(x, axis=0)[:num_images]
