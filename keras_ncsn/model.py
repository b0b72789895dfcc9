"""The NCSN task: a `CondRefineNetDilated` backbone (`keras_ncsn.backbone`) with its training
step, its sampling conveniences, and the checkpoints of both layouts.

`NCSN.train_step` draws one noise level per sample and minimises the sigma^2-weighted
`objective`: denoising score matching ("dsm", the paper's), or sliced score matching ("ssm",
"ssm_vr") of the data perturbed at that level (Gaussian projections; its expectation is the
DSM loss minus D/2, see `annealed_ssm_per_sample`). `test_step` reports the DSM loss whatever
the objective (`loss`, and `loss_level_i` per level), so held-out losses compare across
objectives, and the objective's own value on the same draws as `<objective>_loss` when it is
not DSM. `sample` and `inpaint` run a sampler (annealed Langevin by default) with the model's
score, with the optimizer's weight averages (`ema_weights`) when it keeps them.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import Collection, Iterator, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from keras_ncsn.backbone import LAYER_ATTRIBUTES, CondRefineNetDilated
from keras_ncsn.config import OBJECTIVES, Config, SampleConfig, TrainConfig
from keras_ncsn.errors import ConfigError
from keras_ncsn.losses import annealed_ssm_per_sample, dsm_per_sample, random_projections
from keras_ncsn.masks import check_images
from keras_ncsn.noise import get_sigmas, level_probabilities
from keras_ncsn.sampling import LangevinSampler, sampler_from_config


_SEED_STATE = "seed_generator_state"  # its key among the model's own variables in a checkpoint


@contextlib.contextmanager
def ema_weights(model: keras.Model) -> Iterator[keras.Model]:
    """Within the block the model's trainable weights are its optimizer's moving averages.

    For sampling in the middle of training, where the model holds the raw weights. The
    raw weights come back when the block ends, so training continues unchanged. Nothing
    is swapped unless the optimizer keeps averages (`use_ema`) and has taken a step (before
    the first step the averages are zeros). After `fit` ends and after `load_run`, the
    weights already are the averages and the swap leaves them as they are.
    """
    optimizer = getattr(model, "optimizer", None)
    if (optimizer is None or not optimizer.use_ema or not optimizer.built
            or int(keras.ops.convert_to_numpy(optimizer.iterations)) == 0):
        yield model
        return
    variables = model.trainable_variables
    raw = [keras.ops.convert_to_numpy(v) for v in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield model
    finally:
        for variable, value in zip(variables, raw):
            variable.assign(value)


@keras.saving.register_keras_serializable(package="keras_ncsn")
class NCSN(keras.Model):
    """The score-model task around a `CondRefineNetDilated` backbone: `model((x, level))` is
    the backbone's score s_theta(x, sigma_level), x [B, H, W, C] in [0, 1] and level an int
    noise-level index per image [B] into the backbone's sigma table; `level_weights` (None:
    uniform) weight the levels training draws. Training and sampling as the module says."""

    def __init__(self, image_shape: Sequence[int], sigmas: Sequence[float], ngf: int = 64,
                 scale_by_sigma: bool = False, seed: int = 0, objective: str = "dsm",
                 level_weights: Sequence[float] | None = None, **kwargs):
        super().__init__(**kwargs)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        self.objective, self.seed = objective, seed
        self.level_weights = _check_level_weights(level_weights, len(sigmas))
        self.backbone = CondRefineNetDilated(image_shape, sigmas, ngf=ngf,
                                             scale_by_sigma=scale_by_sigma, name="backbone")
        self.seed_generator = keras.random.SeedGenerator(seed, name="dsm_seed")
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.level_trackers = [keras.metrics.Mean(name=f"loss_level_{i}")
                               for i in range(self.num_levels)]
        self.objective_tracker = (keras.metrics.Mean(name=f"{objective}_loss")
                                  if objective != "dsm" else None)
        self._samplers: dict[tuple, LangevinSampler] = {}

    # The backbone's settings, read through the task as before the split.
    image_shape = property(lambda self: self.backbone.image_shape)
    sigmas = property(lambda self: self.backbone.sigmas)
    num_levels = property(lambda self: self.backbone.num_levels)
    ngf = property(lambda self: self.backbone.ngf)
    scale_by_sigma = property(lambda self: self.backbone.scale_by_sigma)

    def call(self, inputs, training=None):
        return self.backbone(inputs, training=training)

    def build_for_images(self) -> "NCSN":
        """Creates all weights by calling the model once on a dummy batch."""
        self((tf.zeros((1, *self.image_shape)), tf.zeros((1,), tf.int32)))
        return self

    def score(self, x: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
        """The score s_theta(x, sigma_level) in float32 (a `score_fn` for the samplers).

        x gets the static shape [B, H, W, C] of the model's images, which the layers need
        and a sampler's shape-polymorphic loop does not give.
        """
        x = tf.ensure_shape(x, [None, *self.image_shape])
        return tf.cast(self((x, level), training=False), tf.float32)

    def sampler(self, **options) -> LangevinSampler:
        """The sampler of this model for `options`, built once and reused.

        `options` are `sample_options`' keywords (method, steps_per_level, step_size,
        convention, init, denoise, clip, jit_compile) and snapshot_every; unset ones take
        `SampleConfig`'s defaults (annealed Langevin; method="ancestral" for the VE
        ancestral sampler). One sampler, and so one traced (compiled) loop, per distinct
        option set: new seeds, batch sizes and weights reuse it.
        """
        key = tuple(sorted(options.items()))
        if key not in self._samplers:
            self._samplers[key] = sampler_from_config(
                self.score, keras.ops.convert_to_numpy(self.sigmas), SampleConfig(), **options)
        return self._samplers[key]

    def sample(self, num_images: int, seed: Union[int, tf.Tensor] = 0, *, ema: bool = True,
               progress: bool = False, **options):
        """`num_images` samples [N, H, W, C] in [0, 1] (with `clip`), drawn from `seed`.

        Uses the optimizer's EMA weights when it keeps them and `ema` (see `ema_weights`).
        `progress` shows a bar over noise levels; `options` go to `sampler`. Returns
        (images, snapshots) when `snapshot_every` > 0.
        """
        sampler = self.sampler(**options)
        with ema_weights(self) if ema else contextlib.nullcontext():
            return sampler((int(num_images), *self.image_shape), seed, progress=progress)

    def inpaint(self, images, mask, seed: Union[int, tf.Tensor] = 0, *, ema: bool = True,
                progress: bool = False, **options):
        """Fills the pixels of `images` [N, H, W, C] in [0, 1] where `mask` is 0 (App. B.3).

        `mask` (1 = observed) is [N,H,W,C], [N,H,W,1], [H,W,C], [H,W,1] or [H,W]; observed
        pixels come back exactly. EMA, `progress` and `options` work as in `sample`.
        """
        images = check_images(images)
        if images.shape[1:] != self.image_shape:
            raise ConfigError(f"images of shape {images.shape[1:]} do not fit the model, "
                              f"which takes {self.image_shape}")
        sampler = self.sampler(**options)
        with ema_weights(self) if ema else contextlib.nullcontext():
            return sampler.inpaint(images, mask, seed, progress=progress)

    # Training ---------------------------------------------------------------------------

    @property
    def metrics(self):
        extra = [self.objective_tracker] if self.objective_tracker is not None else []
        return [self.loss_tracker, *self.level_trackers, *extra]

    def train_step(self, data):
        with tf.GradientTape() as tape:
            per_sample = per_sample_losses(self, data, True, [self.objective])[0][self.objective]
            loss = tf.reduce_mean(per_sample)
            # Sum over this replica's images / global batch size: the optimizer sums the
            # replicas' gradients, so that sum is the global-batch mean's gradient for any
            # replica count (with one replica this is `loss`).
            global_batch = tf.shape(per_sample)[0] * _replica_position()[0]
            share = tf.reduce_sum(per_sample) / tf.cast(global_batch, per_sample.dtype)
            scaled_loss = self.optimizer.scale_loss(share)
        gradients = tape.gradient(scaled_loss, self.trainable_variables)
        # CIN++ reads its tables with tf.gather, so their gradients are IndexedSlices, which
        # the optimizer densifies anyway; dense here, they all-reduce over replicas in one
        # batch instead of one all-gather each (minutes of tracing for a mirrored step).
        gradients = [tf.convert_to_tensor(g) for g in gradients]
        self.optimizer.apply(gradients, self.trainable_variables)
        self.loss_tracker.update_state(loss)
        return _step_logs({"loss": self.loss_tracker.result()})

    def test_step(self, data):
        losses, level = per_sample_losses(self, data, False, {"dsm", self.objective})
        dsm = losses["dsm"]
        self.loss_tracker.update_state(dsm)
        for i, tracker in enumerate(self.level_trackers):
            tracker.update_state(dsm, sample_weight=tf.cast(tf.equal(level, i), tf.float32))
        if self.objective_tracker is not None:
            self.objective_tracker.update_state(losses[self.objective])
        return _step_logs({m.name: m.result() for m in self.metrics})

    # The seed generator's state is no Keras weight, so save_weights would leave it out and
    # a resumed run would replay the noise levels and noise of the run's first steps.
    def save_own_variables(self, store):
        super().save_own_variables(store)
        store[_SEED_STATE] = self.seed_generator.state

    def load_weights(self, filepath, *args, **kwargs):
        """Keras' `load_weights`, also for .weights.h5 files written before the network moved
        into `backbone` (its layers and sigma table were the model's own attributes then)."""
        with _backbone_layout(str(filepath)) as path:
            return super().load_weights(path, *args, **kwargs)

    def load_own_variables(self, store):
        if _SEED_STATE in store:  # checkpoints written before it was saved go on without it
            self.seed_generator.state.assign(store[_SEED_STATE])
        super().load_own_variables({key: store[key] for key in store.keys()
                                    if key != _SEED_STATE})

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "sigmas": [float(s) for s in keras.ops.convert_to_numpy(self.sigmas)],
                "ngf": self.ngf, "scale_by_sigma": self.scale_by_sigma, "seed": self.seed,
                "objective": self.objective, "level_weights": self.level_weights}


def _check_level_weights(weights: Sequence[float] | None, num_levels: int) -> list[float] | None:
    """`weights` as a list of floats (None: uniform draws); ValueError unless one finite
    weight >= 0 per level with a positive sum."""
    if weights is None:
        return None
    table = np.asarray(weights, dtype=np.float64)
    if (table.shape != (num_levels,) or not np.all(np.isfinite(table)) or np.any(table < 0)
            or not table.sum() > 0):
        raise ValueError(f"level_weights must be {num_levels} finite weights >= 0 (one per "
                         f"noise level) with a positive sum, got {list(weights)}")
    return [float(w) for w in table]


@contextlib.contextmanager
def _backbone_layout(path: str) -> Iterator[str]:
    """`path`, or for a .weights.h5 file of the former layout (the network's layers at the
    top, the sigma table as the model's variable 0) a temporary copy with those moved under
    `backbone/`; the optimizer's variables follow the same order in both layouts."""
    import h5py

    if not path.endswith(".weights.h5") or not os.path.isfile(path):
        yield path
        return
    with h5py.File(path, "r") as old:
        former = "backbone" not in old and LAYER_ATTRIBUTES[0] in old
    if not former:
        yield path
        return
    with tempfile.TemporaryDirectory() as folder:
        converted = os.path.join(folder, "converted.weights.h5")
        with h5py.File(path, "r") as old, h5py.File(converted, "w") as new:
            for key, value in old.attrs.items():
                new.attrs[key] = value
            for key in old:
                if key in LAYER_ATTRIBUTES:
                    old.copy(old[key], new, name=f"backbone/{key}")
                elif key != "vars":
                    old.copy(old[key], new, name=key)
            own, backbone_own = new.create_group("vars"), new.create_group("backbone/vars")
            for name in old["vars"]:  # "0" is the sigma table; the seed state stays the model's
                old.copy(old["vars"][name], backbone_own if name == "0" else own, name=name)
        yield converted


def per_sample_losses(model: NCSN, data, training: bool, objectives: Collection[str]
                      ) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """What a training or test step of `model` draws and scores: per-sample losses
    {objective: [B]} of each of `objectives` and each sample's level [B], one noise level
    and noise per sample (from the model's seed generator) shared by all. Levels are drawn
    uniformly, or in training with the model's `level_weights` when it has them.

    Draws are made in one order (level, noise, then projections if an SSM objective
    is asked for), so an objective's draws do not depend on which others are asked for.
    Under `tf.distribute` `data` is this replica's share of the global batch, and the
    random draws are made for the whole global batch and cut to that share: replicas
    get independent noise (their seed generators are in step), and a step draws the
    same numbers for each image whatever the replica count.
    """
    x = tf.cast(data[0] if isinstance(data, (tuple, list)) else data, tf.float32)
    count, index = _replica_position()
    local = tf.shape(x)[0]
    share = slice(index * local, (index + 1) * local)
    global_shape = tf.concat([[local * count], tf.shape(x)[1:]], 0)
    if training and model.level_weights is not None:
        logits = tf.math.log(tf.constant([model.level_weights], tf.float32))
        level = keras.random.categorical(logits, local * count, dtype="int32",
                                         seed=model.seed_generator)[0][share]
    else:
        level = keras.random.randint((local * count,), 0, model.num_levels,
                                     seed=model.seed_generator, dtype="int32")[share]
    noise = keras.random.normal(global_shape, seed=model.seed_generator)[share]

    def score_fn(xt: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
        return model((xt, level), training=training)

    losses = {}
    if "dsm" in objectives:
        losses["dsm"] = dsm_per_sample(score_fn, x, model.sigmas, level, noise)
    sliced = [name for name in objectives if name != "dsm"]
    if sliced:
        projections = random_projections(global_shape, "gaussian", model.seed_generator)[share]
        for name in sliced:
            losses[name] = annealed_ssm_per_sample(score_fn, x, model.sigmas, level, noise,
                                                   projections, name == "ssm_vr")
    return losses, level


def _replica_position() -> tuple[int | tf.Tensor, int | tf.Tensor]:
    """(replicas in sync, this replica's index) of the running `tf.distribute` step; (1, 0)
    outside one."""
    replica = tf.distribute.get_replica_context()
    if replica is None:  # cross-replica context: the whole batch is here
        return 1, 0
    return replica.num_replicas_in_sync, replica.replica_id_in_sync_group


def _step_logs(logs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
    """A step's metric results, each [1] under multi-worker training: Keras 3.15 reduces a
    multi-worker step's outputs with strategy.reduce(MEAN, axis=0), which needs an axis."""
    if isinstance(tf.distribute.get_strategy(), tf.distribute.MultiWorkerMirroredStrategy):
        return {name: tf.reshape(value, [1]) for name, value in logs.items()}
    return logs


def build_model(config: Config) -> NCSN:
    """The NCSN described by `config`, with all weights created.

    The initial weights come from train.seed (Keras' global seed is set to it), so a fresh
    run is repeatable and two runs that differ in one setting start from the same weights.
    """
    keras.mixed_precision.set_global_policy(config.train.precision)
    keras.utils.set_random_seed(config.train.seed)
    sigmas = get_sigmas(config.noise)
    weights = (level_probabilities(sigmas, config.train.level_focus,
                                   config.train.level_focus_width).tolist()
               if config.train.level_focus else None)
    return NCSN(config.image_shape, sigmas, ngf=config.model.ngf,
                scale_by_sigma=config.model.scale_by_sigma, seed=config.train.seed,
                objective=config.train.objective, level_weights=weights,
                name="ncsn").build_for_images()


@keras.saving.register_keras_serializable(package="keras_ncsn")
class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """A linear rise from 0 to `peak` over `warmup` steps, then a cosine decay to
    `alpha * peak` at step `total` (alpha 1: constant after the warm-up).

    Keras' CosineDecay computes the same, but fixes its length when the train step is
    traced; here `total` is a variable, so a time budget (`train.time_budget`) can shorten
    a run whose speed it has just measured without retracing the step.
    """

    def __init__(self, peak: float, total: int, warmup: int = 0, alpha: float = 0.0):
        self.peak, self.warmup, self.alpha = float(peak), int(warmup), float(alpha)
        self.total = tf.Variable(int(total), dtype=tf.int64, trainable=False,
                                 name="lr_schedule_total_steps")

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        warmup = float(self.warmup)
        decay_steps = tf.maximum(tf.cast(self.total, tf.float32) - warmup, 1.0)
        progress = tf.clip_by_value((step - warmup) / decay_steps, 0.0, 1.0)
        decayed = self.peak * (self.alpha + (1.0 - self.alpha) * 0.5
                               * (1.0 + tf.cos(np.pi * progress)))
        if not self.warmup:
            return decayed
        return tf.where(step < warmup, self.peak * step / warmup, decayed)

    def get_config(self) -> dict:
        return {"peak": self.peak, "total": int(self.total.numpy()), "warmup": self.warmup,
                "alpha": self.alpha}


def learning_rate(train: TrainConfig) -> float | WarmupCosine:
    """train.learning_rate after a linear warm-up over train.warmup_fraction of the steps:
    then constant, or (lr_schedule "cosine") decaying to 0 at train.steps."""
    warmup = warmup_steps(train)
    if train.lr_schedule == "constant" and not warmup:
        return train.learning_rate
    return WarmupCosine(train.learning_rate, train.steps, warmup,
                        alpha=0.0 if train.lr_schedule == "cosine" else 1.0)


def schedule_of(optimizer: keras.optimizers.Optimizer) -> WarmupCosine | None:
    """The optimizer's learning-rate schedule, if it is ours (for a time budget to shorten)."""
    schedule = getattr(optimizer, "_learning_rate", None)
    return schedule if isinstance(schedule, WarmupCosine) else None


def warmup_steps(train: TrainConfig) -> int:
    """Steps of linear learning-rate warm-up: train.warmup_fraction of train.steps."""
    return int(round(train.warmup_fraction * train.steps))


def make_optimizer(train: TrainConfig) -> keras.optimizers.Optimizer:
    """Adam as in the paper (PyTorch's epsilon), with optional EMA, global-norm clipping and
    learning-rate schedule."""
    return keras.optimizers.Adam(
        learning_rate=learning_rate(train), beta_1=train.beta_1, epsilon=1e-8,
        global_clipnorm=train.clip_norm or None, use_ema=train.ema_momentum > 0,
        ema_momentum=train.ema_momentum or 0.99)


def compile_model(model: NCSN, train: TrainConfig) -> NCSN:
    """Compiles with the config's optimizer and XLA switch, and builds the optimizer."""
    model.compile(optimizer=make_optimizer(train), jit_compile=train.jit_compile)
    model.optimizer.build(model.trainable_variables)
    return model


def count_trainable_parameters(model: keras.Model) -> int:
    return int(sum(np.prod(v.shape) for v in model.trainable_variables))
