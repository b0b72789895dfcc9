"""The paper's toy experiments (Sections 3-4, Fig. 1-3), as functions that return numbers.

- Fig. 1 (manifold hypothesis): sliced score matching on raw images fluctuates; the same
  images with N(0, 0.01^2) noise added converge (`fig1_experiment`).
- Fig. 2 (inaccurate scores in low-density regions): an MLP trained by SSM on the mixture
  1/5 N((-5,-5), I) + 4/5 N((5,5), I) is accurate near the modes only (`fig2_experiment`).
- Fig. 3 (mode weights): with the exact score, plain Langevin dynamics splits the chains
  about evenly between the modes; annealed Langevin with the exact scores of the
  noise-perturbed mixture recovers 1/5 and 4/5 (`fig3_experiment`).

Everything reuses the package: `keras_ncsn.losses` for SSM, `keras_ncsn.sampling` for both
samplers (2-D points travel as [B, 1, 1, 2] "images"), `keras_ncsn.data` for the images.
The figures are drawn by the `ncsn-toy` command (keras_ncsn/commands/toy_figures.py), so
this module does not need matplotlib.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_ncsn.config import DataConfig
from keras_ncsn.data import make_datasets
from keras_ncsn.errors import ConfigError
from keras_ncsn.losses import PROJECTIONS, random_projections, ssm_per_sample
from keras_ncsn.sampling import AnnealedLangevin, PlainLangevin

SSM_OBJECTIVES = ("ssm", "ssm_vr")
PERTURBATIONS = ("convolve", "replace")
BOX = 8.0  # the square [-8, 8]^2 of the paper's plots and of the Langevin initialisation


@dataclass(frozen=True)
class GaussianMixture:
    """sum_k w_k N(mu_k, std^2 I), with exact log-density and score, and those of its
    noise-perturbed versions.

    A perturbation level sigma changes the component variance to
      "convolve": std^2 + sigma^2, the mixture convolved with N(0, sigma^2 I) (paper's text);
      "replace":  sigma^2, the component std replaced by sigma (the authors' code).
    sigma = 0 with "convolve" is the data distribution itself. `sigma` may be a scalar or
    one value per point.
    """

    weights: tuple[float, ...] = (0.2, 0.8)
    means: tuple[tuple[float, ...], ...] = ((-5.0, -5.0), (5.0, 5.0))
    std: float = 1.0

    def __post_init__(self) -> None:
        if len(self.weights) != len(self.means) or not np.isclose(sum(self.weights), 1.0):
            raise ConfigError("a mixture needs one weight per mean, summing to 1")

    @property
    def dim(self) -> int:
        return len(self.means[0])

    def variance(self, sigma=0.0, perturbation: str = "convolve") -> tf.Tensor:
        """Component variance at noise level sigma, shaped [N, 1] (or [] for a scalar)."""
        if perturbation not in PERTURBATIONS:
            raise ConfigError(f"perturbation must be one of {', '.join(PERTURBATIONS)}, "
                              f"got {perturbation!r}")
        sigma = tf.cast(sigma, tf.float32)
        sigma = sigma if sigma.shape.rank == 0 else tf.reshape(sigma, [-1, 1])
        return tf.square(sigma) if perturbation == "replace" else self.std ** 2 + tf.square(sigma)

    def _log_terms(self, x: tf.Tensor, variance: tf.Tensor) -> tf.Tensor:
        """log w_k - ||x - mu_k||^2 / (2 var), [N, K]: the component terms up to a constant."""
        diff = x[:, None, :] - tf.constant(self.means, tf.float32)
        squared = tf.reduce_sum(tf.square(diff), -1)
        return tf.math.log(tf.constant(self.weights, tf.float32)) - squared / (2.0 * variance)

    def log_prob(self, x, sigma=0.0, perturbation: str = "convolve") -> tf.Tensor:
        """Exact log-density [N] of points x [N, d] under the (perturbed) mixture."""
        x = tf.convert_to_tensor(x, tf.float32)
        variance = self.variance(sigma, perturbation)
        normaliser = 0.5 * self.dim * tf.math.log(2.0 * np.pi * variance)
        return tf.reduce_logsumexp(self._log_terms(x, variance), -1) - tf.reshape(normaliser, [-1])

    def score(self, x, sigma=0.0, perturbation: str = "convolve") -> tf.Tensor:
        """Exact score grad_x log p [N, d]: sum_k r_k(x) (mu_k - x) / var, r_k responsibilities."""
        x = tf.convert_to_tensor(x, tf.float32)
        variance = self.variance(sigma, perturbation)
        responsibilities = tf.nn.softmax(self._log_terms(x, variance), -1)
        mean = tf.linalg.matmul(responsibilities, tf.constant(self.means, tf.float32))
        return (mean - x) / variance

    def sample(self, n: int, seed: Sequence[int] | tf.Tensor) -> tf.Tensor:
        """n i.i.d. points [n, d] from the data distribution; `seed` is a stateless pair."""
        component_key, noise_key = tf.unstack(tf.random.experimental.stateless_split(
            tf.cast(seed, tf.int64), 2))
        logits = tf.math.log(tf.constant([self.weights], tf.float32))
        component = tf.random.stateless_categorical(logits, n, component_key)[0]
        noise = tf.random.stateless_normal([n, self.dim], noise_key)
        return tf.gather(tf.constant(self.means, tf.float32), component) + self.std * noise

    def mode_fractions(self, points) -> np.ndarray:
        """Fraction of `points` [N, d] nearest to each mean, in the order of `means`."""
        points = np.asarray(points, np.float64).reshape(-1, self.dim)
        distances = np.linalg.norm(points[:, None, :] - np.asarray(self.means), axis=-1)
        return np.bincount(distances.argmin(1), minlength=len(self.means)) / len(points)


PAPER_MIXTURE = GaussianMixture()


def _check_count(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise ConfigError(f"{name} must be an integer >= 1, got {value}")


# Fig. 3: mode weights from Langevin dynamics -------------------------------------------

@dataclass(frozen=True)
class Annealing:
    """The noise levels of annealed Langevin on the mixture: geometric, `perturbation` as in
    `GaussianMixture`, and a step alpha_i = step_size * v_i / v_L in the paper's convention
    (x + alpha/2 s + sqrt(alpha) z), v_i the variance of the perturbed components.

    For "replace" v_i = sigma_i^2, so this is the paper's alpha_i = step_size (sigma_i/sigma_L)^2.
    For "convolve" that literal rule diverges at the large levels (sigma 10, sigma_L 0.1:
    alpha_1 = 1000 against a component variance of 101, and a step of a Gaussian of variance
    v multiplies x - mu by 1 - alpha/(2v) = -3.95), so the step follows the variance instead.
    """

    sigma_begin: float
    sigma_end: float
    perturbation: str
    num_levels: int = 10
    steps_per_level: int = 100
    step_size: float = 0.1

    @property
    def sigmas(self) -> np.ndarray:
        return np.geomspace(self.sigma_begin, self.sigma_end, self.num_levels)

    def component_stds(self, mixture: GaussianMixture) -> np.ndarray:
        return np.sqrt(mixture.variance(self.sigmas, self.perturbation).numpy().ravel())


# "code" (the default) is what the authors ran for Fig. 3; "paper" is the paper's text.
SCHEDULES = {
    "code": Annealing(sigma_begin=20.0, sigma_end=1.0, perturbation="replace"),
    "paper": Annealing(sigma_begin=10.0, sigma_end=0.1, perturbation="convolve"),
}


def exact_score_fn(mixture: GaussianMixture, sigmas: np.ndarray | None = None,
                   perturbation: str = "convolve"):
    """A sampler `score_fn` on [B, 1, 1, d] batches: the exact score at sigmas[level], or of
    the data itself when `sigmas` is None."""
    table = None if sigmas is None else tf.constant(sigmas, tf.float32)

    def score_fn(x: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
        points = tf.reshape(x, [-1, mixture.dim])
        if table is None:
            score = mixture.score(points)
        else:
            score = mixture.score(points, tf.gather(table, level), perturbation)
        return tf.reshape(score, tf.shape(x))

    return score_fn


def uniform_init(n: int, dim: int, seed: int) -> tf.Tensor:
    """n chains [n, 1, 1, dim] uniform on [-8, 8]^dim, the paper's initialisation."""
    key = tf.constant([seed, 3], tf.int64)
    return tf.random.stateless_uniform([n, 1, 1, dim], key, minval=-BOX, maxval=BOX)


def plain_sampler(mixture: GaussianMixture, steps: int = 1000,
                  step_size: float = 0.1) -> PlainLangevin:
    """Plain Langevin (Eq. 4) with the exact data score, in the paper's convention."""
    return PlainLangevin(exact_score_fn(mixture), mixture.std, steps=steps, step_size=step_size,
                         convention="paper", clip=False, jit_compile=False)


def annealed_sampler(mixture: GaussianMixture, annealing: Annealing) -> AnnealedLangevin:
    """Annealed Langevin (Algorithm 1) with the exact perturbed scores, paper's convention.

    The sampler gets the component stds as its sigma table, so that its step rule
    step_size (std_i/std_L)^2 is `Annealing`'s; the score looks up sigma_i by level.
    """
    return AnnealedLangevin(exact_score_fn(mixture, annealing.sigmas, annealing.perturbation),
                            annealing.component_stds(mixture),
                            steps_per_level=annealing.steps_per_level,
                            step_size=annealing.step_size, convention="paper", clip=False,
                            jit_compile=False)


@dataclass
class Fig3Result:
    """Samples [n, 2] of each method for one seed, and the fraction of each in every mode."""

    seed: int
    iid: np.ndarray
    plain: np.ndarray
    annealed: np.ndarray
    fractions: dict[str, list[float]]


def fig3_experiment(seeds: Sequence[int] = (0, 1, 2), chains: int = 1280,
                    schedule: str = "code", plain_steps: int = 1000, steps_per_level: int = 100,
                    mixture: GaussianMixture = PAPER_MIXTURE) -> list[Fig3Result]:
    """For each seed: i.i.d. samples, plain Langevin (step 0.1) and annealed Langevin from
    the same uniform start on [-8, 8]^2, all with exact scores; `fractions[method]` follows
    `mixture.means`. The samplers are built once and reused for every seed."""
    if schedule not in SCHEDULES:
        raise ConfigError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    _check_count("chains", chains)
    seeds = [int(seed) for seed in seeds]
    if not seeds:
        raise ConfigError("fig3 needs at least one seed")
    annealing = dataclasses.replace(SCHEDULES[schedule], steps_per_level=steps_per_level)
    plain, annealed = plain_sampler(mixture, plain_steps), annealed_sampler(mixture, annealing)
    results = []
    for seed in seeds:
        init = uniform_init(chains, mixture.dim, seed)
        samples = {"iid": mixture.sample(chains, [seed, 4]).numpy(),
                   "plain": plain(init, seed).numpy().reshape(-1, mixture.dim),
                   "annealed": annealed(init, seed).numpy().reshape(-1, mixture.dim)}
        results.append(Fig3Result(seed, **samples, fractions={
            name: mixture.mode_fractions(points).tolist() for name, points in samples.items()}))
    return results


# Score models trained by sliced score matching (Fig. 1-2) --------------------------------

class SlicedScoreModel(keras.Model):
    """An unconditional score model s(x) trained by sliced score matching in `train_step`.

    Each batch optionally gets N(0, noise_std^2 I) noise first (Fig. 1's perturbed data);
    `objective` is "ssm" or "ssm_vr" with `projection` "gaussian" or "rademacher" (see
    `keras_ncsn.losses.ssm_per_sample`). The step returns the loss of that batch, not a
    running mean, so per-step curves can be recorded with `LossHistory`.
    """

    def __init__(self, objective: str = "ssm_vr", projection: str = "gaussian",
                 noise_std: float = 0.0, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        if objective not in SSM_OBJECTIVES:
            raise ConfigError(f"objective must be one of {', '.join(SSM_OBJECTIVES)}, "
                              f"got {objective!r}")
        if projection not in PROJECTIONS:
            raise ConfigError(f"projection must be one of {', '.join(PROJECTIONS)}, "
                              f"got {projection!r}")
        if noise_std < 0:
            raise ConfigError(f"noise_std must be >= 0, got {noise_std}")
        self.objective, self.projection, self.noise_std = objective, projection, noise_std
        self.seed_generator = keras.random.SeedGenerator(seed, name="ssm_seed")

    def train_step(self, data):
        x = tf.cast(data, tf.float32)
        if self.noise_std:
            x = x + self.noise_std * keras.random.normal(tf.shape(x), seed=self.seed_generator)
        projections = random_projections(tf.shape(x), self.projection, self.seed_generator)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(ssm_per_sample(lambda inputs: self(inputs, training=True), x,
                                                 projections, self.objective == "ssm_vr"))
        gradients = tape.gradient(loss, self.trainable_variables)
        self.optimizer.apply(gradients, self.trainable_variables)
        return {"loss": loss}


class ScoreMLP(SlicedScoreModel):
    """The paper's toy score network: d -> 128 -> 128 -> d with softplus (Fig. 2)."""

    def __init__(self, dim: int = 2, hidden: int = 128, **kwargs) -> None:
        super().__init__(**kwargs)
        self.net = keras.Sequential([keras.Input((dim,)),
                                     keras.layers.Dense(hidden, activation="softplus"),
                                     keras.layers.Dense(hidden, activation="softplus"),
                                     keras.layers.Dense(dim)])

    def call(self, x, training=None):
        return self.net(x, training=training)


class ResidualScoreNet(SlicedScoreModel):
    """A small ResNet-style image score model (Fig. 1): x in [0, 1] mapped to [-1, 1], a 3x3
    conv, `blocks` residual blocks (ELU, 3x3 conv, ELU, 3x3 conv, plus the input), ELU and a
    3x3 conv back to the image channels. No normalisation, so samples stay independent."""

    def __init__(self, image_shape: Sequence[int], filters: int = 32, blocks: int = 2,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        inputs = keras.Input(tuple(image_shape))

        def conv(h, channels: int = filters):
            return keras.layers.Conv2D(channels, 3, padding="same")(h)

        h = conv(2.0 * inputs - 1.0)
        for _ in range(blocks):
            h = h + conv(keras.activations.elu(conv(keras.activations.elu(h))))
        self.net = keras.Model(inputs, conv(keras.activations.elu(h), image_shape[-1]))

    def call(self, x, training=None):
        return self.net(x, training=training)


class LossHistory(keras.callbacks.Callback):
    """Records the loss of every training step (a `SlicedScoreModel` returns per-batch losses)."""

    def __init__(self) -> None:
        super().__init__()
        self.losses: list[float] = []

    def on_train_batch_end(self, batch, logs=None) -> None:
        self.losses.append(float(logs["loss"]))


def fit_sliced(model: SlicedScoreModel, batches: tf.data.Dataset, steps: int,
               learning_rate: float = 1e-3) -> np.ndarray:
    """Trains `model` for `steps` batches with Adam and returns the per-step losses."""
    _check_count("steps", steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate))
    history = LossHistory()
    model.fit(batches.take(steps), epochs=1, verbose=0, shuffle=False, callbacks=[history])
    return np.asarray(history.losses)


def _seeded_batches(mixture: GaussianMixture, batch_size: int, seed: int) -> tf.data.Dataset:
    """Endless batches of fresh mixture samples; batch i is keyed by (seed, i)."""
    return tf.data.Dataset.range(2 ** 62).map(
        lambda i: mixture.sample(batch_size, tf.stack([tf.constant(seed, tf.int64), i])))


# Fig. 2: the SSM score is accurate near the modes only -----------------------------------

NEAR_RADIUS = 2.0  # "near a mode": within 2 std of a mean (86% of a 2-D component's mass)


def regions(grid: np.ndarray, mixture: GaussianMixture = PAPER_MIXTURE
            ) -> tuple[np.ndarray, np.ndarray]:
    """Boolean masks of the points of `grid` [..., 2] near a mode (within NEAR_RADIUS of a
    mean) and between the modes (within NEAR_RADIUS of the midpoint of the two means,
    where the paper mixture's density is below 1e-6)."""
    means = np.asarray(mixture.means)
    near = np.linalg.norm(grid[..., None, :] - means, axis=-1).min(-1) < NEAR_RADIUS
    between = np.linalg.norm(grid - means.mean(0), axis=-1) < NEAR_RADIUS
    return near, between


@dataclass
class Fig2Result:
    """The trained model, its per-step losses, and the scores on a grid over [-8, 8]^2.

    `grid` [G, G, 2], `log_density` [G, G], `true_score` / `estimated_score` [G, G, 2],
    `error` [G, G] = ||estimated - true||; `near_mode_error` and `low_density_error` are the
    mean error over the grid points of the two `regions`.
    """

    model: ScoreMLP
    losses: np.ndarray
    grid: np.ndarray
    log_density: np.ndarray
    true_score: np.ndarray
    estimated_score: np.ndarray
    error: np.ndarray
    near_mode_error: float
    low_density_error: float


def fig2_experiment(seed: int = 0, steps: int = 10_000, batch_size: int = 128,
                    learning_rate: float = 1e-3, objective: str = "ssm_vr",
                    projection: str = "gaussian", grid_size: int = 161,
                    mixture: GaussianMixture = PAPER_MIXTURE) -> Fig2Result:
    """Trains `ScoreMLP` by sliced score matching on the mixture (Adam, fresh samples every
    step) and compares its score with the exact one on a grid_size^2 grid over [-8, 8]^2.

    The default "ssm_vr" with Gaussian projections is what the authors' code trains Fig. 2 with.
    """
    _check_count("steps", steps)
    _check_count("batch_size", batch_size)
    keras.utils.set_random_seed(seed)
    model = ScoreMLP(mixture.dim, objective=objective, projection=projection, seed=seed)
    losses = fit_sliced(model, _seeded_batches(mixture, batch_size, seed), steps, learning_rate)
    axis = np.linspace(-BOX, BOX, grid_size, dtype=np.float32)
    grid = np.stack(np.meshgrid(axis, axis), -1)
    points = grid.reshape(-1, 2)
    true_score = mixture.score(points).numpy().reshape(grid.shape)
    estimated = model(points).numpy().reshape(grid.shape)
    error = np.linalg.norm(estimated - true_score, axis=-1)
    near, between = regions(grid, mixture)
    return Fig2Result(model, losses, grid, mixture.log_prob(points).numpy().reshape(error.shape),
                      true_score, estimated, error, near_mode_error=float(error[near].mean()),
                      low_density_error=float(error[between].mean()))


# Fig. 1: sliced score matching on images with and without a little noise ----------------

@dataclass
class Fig1Result:
    """Per-step SSM losses on raw images and on images with N(0, noise_std^2) noise, and
    statistics of the last `tail_fraction` of each curve."""

    losses: dict[str, np.ndarray]
    noise_std: float
    tail_fraction: float

    def tail_stats(self) -> dict[str, dict[str, float]]:
        """Mean, variance, std and std/|mean| of each curve over its last part."""
        stats = {}
        for name, curve in self.losses.items():
            tail = curve[int(len(curve) * (1 - self.tail_fraction)):]
            mean, std = float(tail.mean()), float(tail.std())
            stats[name] = {"steps": len(tail), "mean": mean, "variance": std ** 2, "std": std,
                           "relative_std": std / abs(mean) if mean else float("inf")}
        return stats


def fig1_experiment(data: DataConfig, seed: int = 0, steps: int = 400, batch_size: int = 32,
                    learning_rate: float = 1e-3, noise_std: float = 0.01, filters: int = 32,
                    blocks: int = 2, objective: str = "ssm_vr",
                    tail_fraction: float = 0.25) -> Fig1Result:
    """Trains the same `ResidualScoreNet` (same initial weights, same batches) by SSM on the
    raw images (pixel values k/255: `data.dequantize` is turned off, since dequantisation
    is itself a small noise) and on the images plus N(0, noise_std^2) noise."""
    if not 0 < tail_fraction <= 1:
        raise ConfigError(f"tail_fraction must be in (0, 1], got {tail_fraction}")
    if not noise_std >= 0:
        raise ConfigError(f"noise_std must be >= 0, got {noise_std}")
    _check_count("steps", steps)
    _check_count("batch_size", batch_size)
    data = dataclasses.replace(data, dequantize=False)
    shape = (data.image_size, data.image_size, data.channels)
    losses = {}
    for name, std in (("raw", 0.0), ("noisy", noise_std)):
        keras.utils.set_random_seed(seed)
        train, _ = make_datasets(data, batch_size, seed)  # first: bad data fails before a model
        model = ResidualScoreNet(shape, filters, blocks, objective=objective, noise_std=std,
                                 seed=seed)
        losses[name] = fit_sliced(model, train, steps, learning_rate)
    return Fig1Result(losses, noise_std, tail_fraction)
