"""Sliced score matching against hand-computed cases: for a linear score s(x) = A x the
Jacobian is A everywhere, so v^T (ds/dx) v = v^T A v and the expectations are closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from keras_ncsn.errors import ConfigError
from keras_ncsn.losses import (annealed_ssm_per_sample, dsm_per_sample, random_projections,
                               ssm_per_sample)

RNG = np.random.default_rng(0)
A = np.array([[-1.0, 0.5, 0.0], [0.2, -2.0, 0.3], [0.0, -0.4, -0.5]], np.float32)


def linear_score(x: tf.Tensor) -> tf.Tensor:
    """s(x) = A x per sample, for x of shape [B, 3]."""
    return tf.linalg.matvec(tf.constant(A), x)


@pytest.mark.parametrize("variance_reduced", [False, True])
def test_ssm_of_a_linear_score_matches_the_formula(variance_reduced):
    x = RNG.normal(size=(5, 3)).astype(np.float32)
    v = RNG.normal(size=(5, 3)).astype(np.float32)
    got = ssm_per_sample(linear_score, tf.constant(x), tf.constant(v), variance_reduced).numpy()
    ax = x @ A.T
    second = 0.5 * (ax ** 2).sum(1) if variance_reduced else 0.5 * ((v * ax).sum(1)) ** 2
    expected = np.einsum("bi,ij,bj->b", v, A, v) + second
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
@pytest.mark.parametrize("variance_reduced", [False, True])
def test_ssm_expectation_is_trace_plus_half_squared_norm(kind, variance_reduced):
    """E_v[v^T A v] = tr(A) and E_v[(v^T A x)^2] = ||A x||^2 when E[v v^T] = I."""
    n = 200_000
    x = np.tile(np.array([[1.0, -2.0, 0.5]], np.float32), (n, 1))
    v = random_projections((n, 3), kind, seed=1)
    got = ssm_per_sample(linear_score, tf.constant(x), v, variance_reduced).numpy().mean()
    expected = np.trace(A) + 0.5 * np.sum((A @ x[0]) ** 2)
    assert got == pytest.approx(expected, abs=0.05)


def test_rademacher_projections_give_the_exact_trace_of_a_diagonal_jacobian():
    v = random_projections((64, 3), "rademacher", seed=2).numpy()
    assert set(np.unique(v)) == {-1.0, 1.0}
    diagonal = tf.constant(np.diag(A))
    got = ssm_per_sample(lambda x: x * diagonal, tf.zeros((64, 3)), tf.constant(v)).numpy()
    np.testing.assert_allclose(got, np.trace(A), rtol=1e-6)


def test_ssm_works_on_image_batches_and_is_differentiable_in_weights():
    """Any [B, ...] shape sums over all but the batch axis; gradients reach the weights."""
    weight = tf.Variable(2.0)
    x = tf.constant(RNG.normal(size=(4, 2, 2, 1)), tf.float32)
    v = tf.constant(RNG.normal(size=(4, 2, 2, 1)), tf.float32)
    with tf.GradientTape() as tape:
        loss = ssm_per_sample(lambda x: -weight * x, x, v, variance_reduced=True)
    # s = -w x: v^T J v = -w ||v||^2, 1/2 ||s||^2 = w^2/2 ||x||^2; d/dw = -||v||^2 + w ||x||^2
    sq = lambda t: tf.reduce_sum(t ** 2, [1, 2, 3]).numpy()  # noqa: E731
    np.testing.assert_allclose(loss.numpy(), -2 * sq(v) + 2 * sq(x), rtol=1e-5)
    np.testing.assert_allclose(tape.gradient(loss, weight).numpy(),
                               np.sum(-sq(v) + 2 * sq(x)), rtol=1e-5)


def test_weighted_ssm_equals_dsm_minus_half_the_dimension_in_expectation():
    """Stein's lemma: E[sigma^2 SSM(x~)] = E[DSM] - D/2 for any score; here a nonlinear one."""
    n, sigmas = 100_000, tf.constant([1.0, 0.3])
    x = tf.constant(0.5 + 0.2 * RNG.normal(size=(n, 2, 1, 1)), tf.float32)
    noise = tf.constant(RNG.normal(size=x.shape), tf.float32)
    v = tf.constant(RNG.normal(size=x.shape), tf.float32)

    def score(xt, level):
        return tf.tanh(1.0 - 2.0 * xt) * (1.0 + tf.cast(level, tf.float32)[:, None, None, None])

    for level in (0, 1):
        levels = tf.fill([n], level)
        dsm = dsm_per_sample(score, x, sigmas, levels, noise).numpy().mean()
        ssm = annealed_ssm_per_sample(score, x, sigmas, levels, noise, v, True).numpy().mean()
        assert ssm == pytest.approx(dsm - 1.0, abs=0.02)


def test_unknown_projection_kind():
    with pytest.raises(ConfigError, match="projection"):
        random_projections((2, 2), "sphere")
