"""Score-matching objectives as pure functions of a score function and a batch."""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

ScoreFn = Callable[[tf.Tensor, tf.Tensor], tf.Tensor]


def dsm_per_sample(score_fn: ScoreFn, x: tf.Tensor, sigmas: tf.Tensor, levels: tf.Tensor,
                   noise: tf.Tensor) -> tf.Tensor:
    """Annealed denoising score matching (Eq. 5-6), one loss per sample.

    With x~ = x + sigma z and target -(x~ - x)/sigma^2, the paper's weighted loss
    lambda(sigma) * 1/2 ||s(x~) - target||^2 with lambda = sigma^2 equals
    1/2 ||sigma s(x~) + z||^2, which is what is computed (same value, better conditioned
    for small sigma). `levels` picks each sample's sigma; `noise` is z ~ N(0, I).
    """
    used = tf.reshape(tf.gather(sigmas, levels), [-1] + [1] * (len(x.shape) - 1))
    used = tf.cast(used, x.dtype)
    score = tf.cast(score_fn(x + used * noise, levels), x.dtype)
    residual = used * score + noise
    return 0.5 * tf.reduce_sum(tf.square(residual), axis=list(range(1, len(x.shape))))
