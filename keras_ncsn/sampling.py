"""Samplers over any score function: annealed Langevin (Algorithm 1), plain Langevin (Eq. 4),
the VE ancestral sampler (the generative chain of `keras_ncsn.likelihood`), inpainting.

Nothing here knows the model: a sampler takes `score_fn(x, level) -> score`, with x a
float32 [B, H, W, C] batch and level an int32 [B] noise-level index into the sigma table
sigma_1 > ... > sigma_L, so trained networks, exported models and analytic scores all work.

Step-size conventions (see `keras_ncsn.noise.step_sizes`), with
alpha_i = step_size * (sigma_i / sigma_L)^2:
  "paper":          x <- x + alpha_i / 2 * s + sqrt(alpha_i) z
  "reference_code": x <- x + alpha_i * s + sqrt(2 alpha_i) z   (the authors' code; default)
  "consistent":     x <- x + alpha_i * s + sigma_i sqrt(1 - (1 - eta)^2) z, eta = alpha_i / sigma_i^2
so "paper" with step_size 2e is the same sampler as "reference_code" with step_size e.

Every run is one `tf.while_loop` over a flat step counter k in [0, L*T) (level = k // T) in one
cached `tf.function` (XLA-compiled by default), so the graph does not grow with L or T and
repeated calls with new seeds or batch sizes do not retrace. All randomness is stateless and
derived from (seed, stream, counter): the same seed gives the same images on every call,
and level-by-level calls reproduce a full call exactly. Results differ between
`jit_compile=True` and `False` (XLA generates its own random numbers) and may differ
between device types.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from keras_ncsn.config import INITS, METHODS, SampleConfig
from keras_ncsn.errors import ConfigError
from keras_ncsn.masks import broadcast_mask, check_images
from keras_ncsn.noise import (ancestral_steps, check_sigmas, denoise_update, langevin_update,
                              step_sizes)

ScoreFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]

_RNG_ALG = "philox"  # fixed, so that "auto_select" cannot change the numbers per device
# Independent random streams derived from one user seed.
_INIT_STREAM, _STEP_STREAM, _OBSERVED_STREAM = 0, 1, 2


def _key(seed: tf.Tensor, stream: int, counter: tf.Tensor) -> tf.Tensor:
    """Stateless RNG seed for draw `counter` of `stream`: a pure function of its arguments."""
    base = tf.stack([tf.cast(seed, tf.int64), tf.constant(stream, tf.int64)])
    return tf.random.experimental.stateless_fold_in(base, tf.cast(counter, tf.int64),
                                                    alg=_RNG_ALG)


def _normal(shape: tf.Tensor, seed: tf.Tensor, stream: int, counter: tf.Tensor) -> tf.Tensor:
    """Standard normal draw `counter` of `stream` for `seed`."""
    return tf.random.stateless_normal(shape, _key(seed, stream, counter), alg=_RNG_ALG)


def _seed_tensor(seed: Union[int, tf.Tensor]) -> tf.Tensor:
    seed = tf.convert_to_tensor(seed, dtype=tf.int64)
    if seed.shape.rank != 0:
        raise ConfigError(f"seed must be a single integer, got shape {seed.shape}")
    return seed


def _level_range(levels: Sequence[int]) -> tuple[int, int]:
    if len(levels) != 2 or not all(isinstance(v, (int, np.integer)) for v in levels):
        raise ConfigError(f"levels must be a pair of integers (start, stop), got {levels}")
    return int(levels[0]), int(levels[1])


def _batch(x) -> tf.Tensor:
    """x as a float32 tensor; ConfigError unless [batch, height, width, channels]."""
    x = tf.convert_to_tensor(x, dtype=tf.float32)
    if x.shape.rank != 4:
        raise ConfigError(f"x must be a [batch, height, width, channels] batch, "
                          f"got shape {x.shape}")
    return x


def _check_counts(init: str, steps_per_level: int, snapshot_every: int,
                  num_levels: int) -> tuple[int, int]:
    """(steps_per_level, snapshot_every) as ints; ConfigError for an unknown init, fewer
    than one step per level, or snapshots spaced outside [0, levels x steps]."""
    if init not in INITS:
        raise ConfigError(f"init must be one of {', '.join(INITS)}, got {init!r}")
    if int(steps_per_level) != steps_per_level or steps_per_level < 1:
        raise ConfigError(f"the number of steps must be an integer >= 1, got {steps_per_level}")
    num_steps = num_levels * int(steps_per_level)
    if int(snapshot_every) < 0 or int(snapshot_every) > num_steps:
        raise ConfigError(f"snapshot_every must be in [0, {num_steps}] (the number of steps; "
                          f"0 turns snapshots off), got {snapshot_every}")
    return int(steps_per_level), int(snapshot_every)


class LangevinSampler:
    """Langevin dynamics over a schedule of noise levels, run as one compiled while loop.

    Use `AnnealedLangevin`, `PlainLangevin` or `AncestralSampler` (or `from_config`); this
    class holds the loop they share. Level j of the schedule calls `score_fn` with index
    `score_levels[j]` and has noise `sigmas[j]`, which inpainting adds to the observed pixels
    and denoising uses.
    """

    def __init__(self, score_fn: ScoreFn, sigmas: Sequence[float], score_levels: Sequence[int],
                 drift: np.ndarray, noise_std: np.ndarray, *, steps_per_level: int,
                 init: str, denoise: bool, clip: bool, jit_compile: bool,
                 snapshot_every: int) -> None:
        self.score_fn = score_fn
        self.sigmas = check_sigmas(sigmas)
        self.score_levels = np.asarray(score_levels, dtype=np.int32)
        self.drift = np.asarray(drift, dtype=np.float32)
        self.noise_std = np.asarray(noise_std, dtype=np.float32)
        self.steps_per_level, self.snapshot_every = _check_counts(
            init, steps_per_level, snapshot_every, len(self.sigmas))
        self.init, self.denoise, self.clip = init, bool(denoise), bool(clip)
        self.jit_compile = bool(jit_compile)
        self._functions: dict[str, tf.types.experimental.PolymorphicFunction] = {}

    @staticmethod
    def from_config(score_fn: ScoreFn, sigmas: Sequence[float],
                    sample_config: SampleConfig, **overrides) -> "LangevinSampler":
        """`sampler_from_config`: the sampler `sample_config.method` names."""
        return sampler_from_config(score_fn, sigmas, sample_config, **overrides)

    @property
    def num_levels(self) -> int:
        return len(self.sigmas)

    @property
    def num_steps(self) -> int:
        """Langevin steps of a full run: levels x steps per level."""
        return self.num_levels * self.steps_per_level

    @property
    def num_snapshots(self) -> int:
        """Snapshots of a full run: the state after every `snapshot_every`-th step."""
        return self.num_steps // self.snapshot_every if self.snapshot_every else 0

    def init_state(self, shape: Sequence[int], seed: Union[int, tf.Tensor]) -> tf.Tensor:
        """Starting batch drawn from `seed`: Uniform[0,1] ("uniform", the paper) or
        N(0, sigma_1^2) ("gaussian", the prior of the largest noise level as in score SDE)."""
        shape = [int(d) for d in shape]
        if len(shape) != 4 or min(shape) < 1:
            raise ConfigError(f"a sample shape must be [batch, height, width, channels], "
                              f"got {shape}")
        return self.initial(shape, _seed_tensor(seed))

    def initial(self, shape: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
        """`init_state` for a shape tensor and without checks, for traced functions."""
        key = _key(seed, _INIT_STREAM, tf.constant(0))
        if self.init == "gaussian":
            return float(self.sigmas[0]) * tf.random.stateless_normal(shape, key, alg=_RNG_ALG)
        return tf.random.stateless_uniform(shape, key, alg=_RNG_ALG)

    def inpainting_initial(self, observed: tf.Tensor, mask: tf.Tensor,
                           seed: tf.Tensor) -> tf.Tensor:
        """Starting batch of inpainting: observed pixels where `mask` is 1, `initial` elsewhere."""
        return tf.where(mask > 0.5, observed, self.initial(tf.shape(observed), seed))

    def step_noise(self, shape: Sequence[int] | tf.Tensor, seed: Union[int, tf.Tensor],
                   step: Union[int, tf.Tensor]) -> tf.Tensor:
        """The z of Langevin step `step` (counted over the whole run) for `seed`.

        With `given_noise_loop` this replays a run of this sampler in another runtime.
        """
        return _normal(shape, _seed_tensor(seed), _STEP_STREAM, tf.convert_to_tensor(step))

    def __call__(self, x_or_shape: Union[Sequence[int], tf.Tensor, np.ndarray],
                 seed: Union[int, tf.Tensor], *,
                 levels: tuple[int, int] | None = None, progress: bool = False):
        """Samples from `x_or_shape` (a starting batch, or a [B, H, W, C] shape to draw one).

        `levels=(start, stop)` runs only levels start..stop-1 (passing the previous result
        as x continues it); denoising and clipping happen when stop is the last level.
        `progress` runs one call per level under a progress bar, with the same result.
        Returns the batch, or (batch, snapshots) when `snapshot_every` > 0, snapshots being
        the unclipped states [N, B, H, W, C] taken in this call.
        """
        if isinstance(x_or_shape, (tuple, list, tf.TensorShape)) and all(
                isinstance(d, (int, np.integer)) for d in x_or_shape):
            x = self.init_state(x_or_shape, seed)
        else:
            x = _batch(x_or_shape)
        return self._run(x, seed, levels, progress=progress)

    def inpaint(self, images: Union[np.ndarray, tf.Tensor], mask: Union[np.ndarray, tf.Tensor],
                seed: Union[int, tf.Tensor], *, x: tf.Tensor | None = None,
                levels: tuple[int, int] | None = None, progress: bool = False):
        """Fills the pixels where `mask` is 0 so that they agree with the observed ones (App. B.3).

        `images` is [B, H, W, C] in [0, 1]; `mask` (1 = observed) is [B,H,W,C], [B,H,W,1],
        [H,W,C], [H,W,1] or [H,W] and may differ per image. Unobserved pixels start from
        `init`; at level i the observed pixels are replaced by y + sigma_i z before the
        level's first step and after every step, and by y itself at the end, so they come
        back exactly. `x`, `levels` and `progress` work as in `__call__` (x = the previous
        call's result).
        """
        observed = tf.constant(check_images(images))
        mask = tf.constant(broadcast_mask(mask, observed.shape))
        x = self.inpainting_initial(observed, mask, _seed_tensor(seed)) if x is None else x
        return self._run(_batch(x), seed, levels, (observed, mask), progress)

    def compiled_loop(self, inpainting: bool = False) -> tf.types.experimental.PolymorphicFunction:
        """The cached tf.function (x, seed, start, stop[, observed, mask]) -> x[, snapshots]."""
        name = "inpaint" if inpainting else "sample"
        if name not in self._functions:
            self._functions[name] = _drawn_noise_function(self, inpainting)
        return self._functions[name]

    def given_noise_loop(self) -> tf.types.experimental.PolymorphicFunction:
        """The cached tf.function (x, noise, first_level) -> x[, snapshots]: the same loop with
        the z of each step read from `noise` instead of drawn.

        Runs levels first_level .. first_level + len(noise) // T - 1 from x, step j of the
        call taking noise[j] (noise is [steps, B, H, W, C]); denoising and clipping happen
        when the last level is reached. With no random ops it converts to ONNX and lets
        other runtimes be checked against TensorFlow on the same noise (`step_noise` gives
        a seed's). Never XLA-compiled.
        """
        if "given_noise" not in self._functions:
            self._functions["given_noise"] = _given_noise_function(self)
        return self._functions["given_noise"]

    def _run(self, x: tf.Tensor, seed: Union[int, tf.Tensor], levels: tuple[int, int] | None,
             inpainting: tuple[tf.Tensor, tf.Tensor] | None = None, progress: bool = False):
        start, stop = (0, self.num_levels) if levels is None else _level_range(levels)
        if not 0 <= start < stop <= self.num_levels:
            raise ConfigError(f"levels must satisfy 0 <= start < stop <= {self.num_levels}, "
                              f"got {levels}")
        function, seed = self.compiled_loop(inpainting is not None), _seed_tensor(seed)
        T, every = self.steps_per_level, self.snapshot_every
        spans = [(i, i + 1) for i in range(start, stop)] if progress else [(start, stop)]
        snapshots = []
        with tqdm(spans, desc="noise levels", unit="level", disable=not progress,
                  dynamic_ncols=True) as bar:
            for first, last in bar:
                bar.set_postfix(sigma=f"{self.sigmas[first]:.3g}", refresh=False)
                x = function(x, seed, tf.constant(first), tf.constant(last), *(inpainting or ()))
                if every:
                    x, taken = x
                    snapshots.append(taken[first * T // every: last * T // every])
        return (x, tf.concat(snapshots, 0)) if every else x


class _TracedLoop:
    """Levels start..stop-1 of `sampler` inside a traced function: `step`, `snapshot` and
    `finish` are the pieces of the while loop that `run` assembles.

    `draw(stream, counter)` gives standard normal noise (stateless draws, or the given
    noise of `given_noise_loop`); inpainting when `observed` and `mask` are given.
    """

    def __init__(self, sampler: LangevinSampler, x: tf.Tensor,
                 draw: Callable[[int, tf.Tensor], tf.Tensor],
                 observed: tf.Tensor | None = None, mask: tf.Tensor | None = None) -> None:
        self.sampler, self.draw, self.observed, self.mask = sampler, draw, observed, mask
        self.shape, self.batch = tf.shape(x), tf.shape(x)[0]
        self.score_levels = tf.constant(sampler.score_levels)
        self.sigmas = tf.constant(sampler.sigmas, tf.float32)
        self.drift, self.noise_std = tf.constant(sampler.drift), tf.constant(sampler.noise_std)

    def score(self, x: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
        """The score at schedule level `level` for the whole batch, in float32."""
        index = tf.fill([self.batch], tf.gather(self.score_levels, level))
        return tf.cast(self.sampler.score_fn(x, index), tf.float32)

    def _observe(self, x: tf.Tensor, level: tf.Tensor) -> tf.Tensor:
        """Inpainting: the observed pixels replaced by y + sigma_i z, redrawn from the
        level's key at every step instead of carried as loop state, so it stays fixed
        within a level and a call starting at any level reproduces it."""
        noisy = self.observed + tf.gather(self.sigmas, level) * self.draw(_OBSERVED_STREAM, level)
        return tf.where(self.mask > 0.5, noisy, x)

    def step(self, k: tf.Tensor, x: tf.Tensor) -> tf.Tensor:
        """Langevin step k of the run (level k // T) by `noise.langevin_update`."""
        level = k // self.sampler.steps_per_level
        if self.observed is not None:
            # Before the step as well as after it (the authors' code), so that a level's
            # first step sees this level's noise.
            x = self._observe(x, level)
        x = langevin_update(x, self.score(x, level), tf.gather(self.drift, level),
                            tf.gather(self.noise_std, level), self.draw(_STEP_STREAM, k))
        return self._observe(x, level) if self.observed is not None else x

    def snapshot(self, k: tf.Tensor, x: tf.Tensor, snapshots: tf.Tensor) -> tf.Tensor:
        """`snapshots` with x in its slot when step k ends a `snapshot_every` stretch."""
        every = self.sampler.snapshot_every
        slot = (k + 1) // every - 1
        return tf.cond((k + 1) % every == 0,
                       lambda: tf.tensor_scatter_nd_update(snapshots, [[slot]], [x]),
                       lambda: snapshots)

    def finish(self, x: tf.Tensor) -> tf.Tensor:
        """After the last level: denoising, observed pixels restored exactly, clipping."""
        sampler = self.sampler
        if sampler.denoise:  # NCSNv2: one noiseless step at sigma_L
            x = denoise_update(x, self.score(x, sampler.num_levels - 1),
                               float(sampler.sigmas[-1]))
        if self.observed is not None:
            x = tf.where(self.mask > 0.5, self.observed, x)
        if sampler.clip:
            x = tf.clip_by_value(x, 0.0, 1.0)
        return x

    def run(self, x: tf.Tensor, start: tf.Tensor, stop: tf.Tensor):
        """x after levels start..stop-1 (finished when stop is the last level), and the
        snapshots [num_snapshots, B, H, W, C] when the sampler takes them."""
        T, count = self.sampler.steps_per_level, self.sampler.num_snapshots

        def body(k, x, *snapshots):
            x = self.step(k, x)
            return (k + 1, x, *((self.snapshot(k, x, snapshots[0]),) if count else ()))

        state = (start * T, x)
        if count:
            state += (tf.zeros(tf.concat([[count], self.shape], 0)),)
        _, x, *snapshots = tf.while_loop(lambda k, *_: k < stop * T, body, state)
        x = tf.cond(stop >= self.sampler.num_levels, lambda: self.finish(x), lambda: x)
        return (x, snapshots[0]) if count else x


def _drawn_noise_function(sampler: LangevinSampler, inpainting: bool
                          ) -> tf.types.experimental.PolymorphicFunction:
    """`sampler.compiled_loop`: (x, seed, start, stop[, observed, mask]) -> x[, snapshots],
    traced once; shapes are dynamic so new batch sizes do not retrace."""
    image = tf.TensorSpec([None, None, None, None], tf.float32)
    signature = [image, tf.TensorSpec([], tf.int64), tf.TensorSpec([], tf.int32),
                 tf.TensorSpec([], tf.int32)] + ([image, image] if inpainting else [])

    def run(x, seed, start, stop, observed=None, mask=None):
        draw = lambda stream, k: _normal(tf.shape(x), seed, stream, k)  # noqa: E731
        return _TracedLoop(sampler, x, draw, observed, mask).run(x, start, stop)

    return tf.function(run, input_signature=signature, jit_compile=sampler.jit_compile,
                       autograph=False)


def _given_noise_function(sampler: LangevinSampler
                          ) -> tf.types.experimental.PolymorphicFunction:
    """`sampler.given_noise_loop`: (x, noise, first_level) -> x[, snapshots], never XLA."""
    T = sampler.steps_per_level

    def run(x, noise, first):
        loop = _TracedLoop(sampler, x, lambda stream, k: tf.gather(noise, k - first * T))
        return loop.run(x, first, first + tf.shape(noise)[0] // T)

    return tf.function(run, autograph=False, input_signature=[
        tf.TensorSpec([None] * 4, tf.float32, name="x"),
        tf.TensorSpec([None] * 5, tf.float32, name="noise"),
        tf.TensorSpec([], tf.int32, name="first_level")])


class AnnealedLangevin(LangevinSampler):
    """Annealed Langevin dynamics (Algorithm 1): T steps at each sigma_1 > ... > sigma_L."""

    def __init__(self, score_fn: ScoreFn, sigmas: Sequence[float], *,
                 steps_per_level: int = 100, step_size: float = 2e-5,
                 convention: str = "reference_code", init: str = "uniform",
                 denoise: bool = False, clip: bool = True, jit_compile: bool = True,
                 snapshot_every: int = 0) -> None:
        drift, noise_std = step_sizes(sigmas, step_size, convention)
        super().__init__(score_fn, sigmas, np.arange(len(drift)), drift, noise_std,
                         steps_per_level=steps_per_level, init=init, denoise=denoise,
                         clip=clip, jit_compile=jit_compile, snapshot_every=snapshot_every)


class AncestralSampler(LangevinSampler):
    """The VE ancestral sampler: the generative chain whose variational bound
    `keras_ncsn.likelihood` computes, one step per noise level (`noise.ancestral_steps`).

    Starts from the prior N(0, sigma_1^2 I); step i draws x_{i+1} ~ N(x_i + (sigma_i^2 -
    sigma_{i+1}^2) s(x_i, i), sigma_{i+1}^2 (sigma_i^2 - sigma_{i+1}^2) / sigma_i^2 I), and
    the last step, x_L + sigma_L^2 s(x_L, L), is the decoder's mean (the denoising step).
    L score evaluations in all, against L*T for annealed Langevin.
    """

    def __init__(self, score_fn: ScoreFn, sigmas: Sequence[float], *, clip: bool = True,
                 jit_compile: bool = True, snapshot_every: int = 0) -> None:
        drift, noise_std = ancestral_steps(sigmas)
        super().__init__(score_fn, sigmas, np.arange(len(drift)), drift, noise_std,
                         steps_per_level=1, init="gaussian", denoise=False, clip=clip,
                         jit_compile=jit_compile, snapshot_every=snapshot_every)


def sampler_from_config(score_fn: ScoreFn, sigmas: Sequence[float],
                        sample_config: SampleConfig, **overrides) -> "LangevinSampler":
    """The sampler `sample_config.method` names (`AnnealedLangevin` or
    `AncestralSampler`), with its `sample_options` replaced by keyword `overrides`."""
    options = sample_options(sample_config)
    unknown = set(overrides) - set(options) - {"snapshot_every"}
    if unknown:
        raise ConfigError(f"unknown sampler option(s): {', '.join(sorted(unknown))}; "
                          f"options are {', '.join(options)}, snapshot_every")
    options = {**options, **overrides}
    method = options.pop("method")
    if method == "annealed_langevin":
        return AnnealedLangevin(score_fn, sigmas, **options)
    if method == "ancestral":
        return AncestralSampler(score_fn, sigmas, clip=options["clip"],
                                jit_compile=options["jit_compile"],
                                snapshot_every=options.get("snapshot_every", 0))
    raise ConfigError(f"method must be one of {', '.join(METHODS)}, got {method!r}")


def sample_options(sample_config: SampleConfig) -> dict[str, object]:
    """The sampler keywords a `SampleConfig` sets (`LangevinSampler.from_config`).

    `num_images`, `seed` and `grid_every` (training steps between sample grids) are not
    sampler settings; snapshots are off unless `snapshot_every` is passed separately.
    """
    return dict(method=sample_config.method, steps_per_level=sample_config.steps_per_level,
                step_size=sample_config.step_size, convention=sample_config.convention,
                init=sample_config.init, denoise=sample_config.denoise,
                clip=sample_config.clip, jit_compile=sample_config.jit_compile)


def describe_sampler(sample_config: SampleConfig) -> str:
    """The sampler `sample_config` sets up and the settings it uses, for reports and cards."""
    sample = sample_config
    if sample.method == "ancestral":
        return (f"VE ancestral sampler: one step per noise level from N(0, sigma_1^2 I), the "
                f"last one the denoising step; clip {sample.clip}, XLA {sample.jit_compile}")
    return (f"annealed Langevin dynamics: {sample.steps_per_level} steps per level, step_size "
            f"{sample.step_size:g} (convention {sample.convention}), init {sample.init}, "
            f"denoise {sample.denoise}, clip {sample.clip}, XLA {sample.jit_compile}")


class PlainLangevin(LangevinSampler):
    """Plain Langevin dynamics (Eq. 4): `steps` steps of size `step_size` with one score.

    The single-noise baseline of App. C.1: `score_fn` is always called with `level`,
    whose noise is `sigma` (used by denoising, inpainting and the "gaussian" init).
    """

    def __init__(self, score_fn: ScoreFn, sigma: float, *, steps: int, step_size: float,
                 level: int = 0, convention: str = "reference_code",
                 init: str = "uniform", denoise: bool = False, clip: bool = True,
                 jit_compile: bool = True, snapshot_every: int = 0) -> None:
        if int(level) != level or level < 0:
            raise ConfigError(f"level must be an integer >= 0, got {level}")
        drift, noise_std = step_sizes([sigma], step_size, convention)
        super().__init__(score_fn, [sigma], [level], drift, noise_std,
                         steps_per_level=steps, init=init, denoise=denoise, clip=clip,
                         jit_compile=jit_compile, snapshot_every=snapshot_every)
