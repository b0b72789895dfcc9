"""Score-matching objectives as pure functions of a score function and a batch.

Denoising score matching (`dsm_per_sample`) trains the noise-conditional model; sliced
score matching (`ssm_per_sample`, Song et al. 2019) estimates the score of the data itself
and is what the paper's toy experiments (Fig. 1-2) use; `annealed_ssm_per_sample` applies
it to noise-perturbed data, the alternative objective for an NCSN. Randomness (noise,
projections) is an argument, so every function is deterministic given its inputs.
"""

from __future__ import annotations

from typing import Callable

import keras
import tensorflow as tf

from keras_ncsn.errors import ConfigError

ScoreFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]
PlainScoreFn = Callable[[tf.Tensor], tf.Tensor]
PROJECTIONS = ("gaussian", "rademacher")


def dsm_per_sample(score_fn: ScoreFn, x: tf.Tensor, sigmas: tf.Tensor, level: tf.Tensor,
                   noise: tf.Tensor) -> tf.Tensor:
    """Annealed denoising score matching (Eq. 5-6), one loss per sample.

    With x~ = x + sigma z and target -(x~ - x)/sigma^2, the paper's weighted loss
    lambda(sigma) * 1/2 ||s(x~) - target||^2 with lambda = sigma^2 equals
    1/2 ||sigma s(x~) + z||^2, which is what is computed (same value, better conditioned
    for small sigma). `level` [B] picks each sample's sigma; `noise` is z ~ N(0, I).
    """
    used, _, score = perturbed_score(score_fn, x, sigmas, level, noise)
    return dsm_from_score(score, used, noise)


def perturbed_score(score_fn: ScoreFn, x: tf.Tensor, sigmas: tf.Tensor, level: tf.Tensor,
                    noise: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(sigma, x~, s(x~, level)) with x~ = x + sigma z at each sample's level; sigma is
    shaped [B, 1, ...] to broadcast over a sample. The first half of `dsm_per_sample`, for
    callers that use the score again (`keras_ncsn.likelihood`'s decoder)."""
    used = tf.reshape(tf.gather(sigmas, level), [-1] + [1] * (len(x.shape) - 1))
    used = tf.cast(used, x.dtype)
    perturbed = x + used * noise
    return used, perturbed, tf.cast(score_fn(perturbed, level), x.dtype)


def dsm_from_score(score: tf.Tensor, sigma: tf.Tensor, noise: tf.Tensor) -> tf.Tensor:
    """1/2 ||sigma s + z||^2 per sample: the DSM loss of `perturbed_score`'s output."""
    residual = sigma * score + noise
    return 0.5 * tf.reduce_sum(tf.square(residual), axis=list(range(1, len(score.shape))))


def random_projections(shape, kind: str = "gaussian", seed=None) -> tf.Tensor:
    """Random directions v for sliced score matching, with E[v v^T] = I.

    "gaussian": v ~ N(0, I); "rademacher": independent uniform signs +-1 (lower variance
    of v^T J v: for a diagonal J it is exactly tr J). `seed` is anything keras.random takes.
    """
    if kind == "gaussian":
        return keras.random.normal(shape, seed=seed)
    if kind == "rademacher":
        signs = keras.random.randint(shape, 0, 2, seed=seed, dtype="int32")
        return 2.0 * tf.cast(signs, tf.float32) - 1.0
    raise ConfigError(f"projection must be one of {', '.join(PROJECTIONS)}, got {kind!r}")


def ssm_per_sample(score_fn: PlainScoreFn, x: tf.Tensor, projections: tf.Tensor,
                   variance_reduced: bool = False) -> tf.Tensor:
    """Sliced score matching (Eq. 3; Song et al. 2019), one loss per sample:

        v^T (ds/dx) v + 1/2 (v^T s(x))^2          or, variance_reduced ("SSM-VR"),
        v^T (ds/dx) v + 1/2 ||s(x)||^2,

    both unbiased for E[tr(ds/dx) + 1/2 ||s||^2] (Hyvarinen's objective, minimised by the
    data score) when E[v v^T] = I. v^T (ds/dx) v is computed as v . grad_x (v . s(x)) by
    double backpropagation, over the whole batch at once: so the score of a sample must
    depend on that sample only (true of per-sample normalisations, not of batch norm).
    Inside an outer GradientTape the result is differentiable in the model's weights.
    """
    x = tf.convert_to_tensor(x)
    projections = tf.cast(projections, x.dtype)
    axes = list(range(1, len(x.shape)))
    with tf.GradientTape() as tape:
        tape.watch(x)
        score = tf.cast(score_fn(x), x.dtype)
        projected = tf.reduce_sum(score * projections)
    vjp = tape.gradient(projected, x)  # per sample: v^T ds/dx
    jacobian_term = tf.reduce_sum(vjp * projections, axis=axes)
    if variance_reduced:
        return jacobian_term + 0.5 * tf.reduce_sum(tf.square(score), axis=axes)
    return jacobian_term + 0.5 * tf.square(tf.reduce_sum(score * projections, axis=axes))


def annealed_ssm_per_sample(score_fn: ScoreFn, x: tf.Tensor, sigmas: tf.Tensor,
                            level: tf.Tensor, noise: tf.Tensor, projections: tf.Tensor,
                            variance_reduced: bool = False) -> tf.Tensor:
    """Sliced score matching of the noise-perturbed data, weighted like DSM (Eq. 6).

    Each sample gets x~ = x + sigma z at its level and the loss sigma^2 * SSM(s(., level); x~),
    as in the authors' `anneal_sliced_score_estimation_vr`. Both SSM and DSM estimate the
    score of q_sigma; by Stein's lemma the expectation of this loss is the expectation of
    `dsm_per_sample` minus D/2 (D = values per sample) for any score function, so the
    two losses differ by a known constant (this one can be negative).
    """
    used = tf.reshape(tf.gather(sigmas, level), [-1] + [1] * (len(x.shape) - 1))
    used = tf.cast(used, x.dtype)
    per_sample = ssm_per_sample(lambda xt: score_fn(xt, level), x + used * noise,
                                projections, variance_reduced)
    return tf.square(tf.reshape(used, [-1])) * per_sample
