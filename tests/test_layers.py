"""Layer tests in the shape of Keras' own: build, call, shapes, serialisation round trip,
plus each layer's arithmetic against a NumPy transcription of the reference formulas."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_ncsn.layers import (ChainedResidualPooling, ConditionalInstanceNormPlus,
                               ConditionalResidualBlock, MultiResolutionFusion, RefineBlock,
                               ResidualConvUnit, box_filter_5x5, resize_bilinear_align_corners)

LEVELS = 5
RNG = np.random.default_rng(0)


def batch(shape, levels=(0, 3)):
    x = RNG.normal(size=(len(levels), *shape)).astype(np.float32) * 2 + 0.5
    return tf.constant(x), tf.constant(levels, tf.int32)


def cin_plus_numpy(x, y, gamma, alpha, beta, eps=1e-5):
    """CIN++ as written in the paper's appendix, NHWC, unbiased variance over channels."""
    mu = x.mean(axis=(1, 2))                               # [B, C]
    m, v = mu.mean(-1, keepdims=True), mu.var(-1, ddof=1, keepdims=True)
    mu_tilde = (mu - m) / np.sqrt(v + eps)
    h = (x - mu[:, None, None]) / np.sqrt(x.var(axis=(1, 2))[:, None, None] + eps)
    h = h + alpha[y][:, None, None] * mu_tilde[:, None, None]
    return gamma[y][:, None, None] * h + beta[y][:, None, None]


def randomise(layer):
    for w in layer.weights:
        w.assign(RNG.normal(1.0, 0.3, size=w.shape).astype(np.float32))


def round_trip(layer, *inputs):
    """Rebuilds `layer` from its serialised config, copies the weights, and returns both outputs."""
    out = layer(*inputs)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(clone) is type(layer) and clone.get_config() == layer.get_config()
    clone(*inputs)
    clone.set_weights(layer.get_weights())
    return out.numpy(), clone(*inputs).numpy()


def test_cin_plus_matches_numpy_formula():
    x, y = batch((6, 5, 8))
    layer = ConditionalInstanceNormPlus(LEVELS)
    layer(x, y)
    randomise(layer)
    gamma, alpha, beta = (w.numpy() for w in (layer.gamma, layer.alpha, layer.beta))
    expected = cin_plus_numpy(x.numpy(), y.numpy(), gamma, alpha, beta)
    np.testing.assert_allclose(layer(x, y).numpy(), expected, rtol=1e-4, atol=1e-4)


def test_cin_plus_initialisation_and_level_conditioning():
    layer = ConditionalInstanceNormPlus(LEVELS)
    x, _ = batch((4, 4, 16), levels=(0, 0))
    layer(x, tf.constant([0, 0]))
    assert [tuple(w.shape) for w in layer.weights] == [(LEVELS, 16)] * 3  # L x 3C in all
    assert abs(layer.gamma.numpy().mean() - 1) < 0.02 and 0.005 < layer.gamma.numpy().std() < 0.04
    assert np.all(layer.beta.numpy() == 0)
    randomise(layer)
    same = tf.concat([x[:1], x[:1]], 0)
    out = layer(same, tf.constant([1, 2])).numpy()
    assert not np.allclose(out[0], out[1])  # different levels, different outputs


def test_cin_plus_keeps_float32_statistics_under_float16():
    layer = ConditionalInstanceNormPlus(LEVELS, dtype="mixed_float16")
    x, y = batch((4, 4, 8))
    out = layer(tf.cast(x * 100, tf.float16), y)
    assert out.dtype == tf.float16 and np.all(np.isfinite(out.numpy()))
    assert layer.gamma.dtype == "float32"


def test_box_filter_counts_padding_in_divisor():
    x = RNG.normal(size=(2, 7, 6, 3)).astype(np.float32)
    padded = np.pad(x, [(0, 0), (2, 2), (2, 2), (0, 0)])
    expected = np.zeros_like(x)
    for i in range(7):
        for j in range(6):
            expected[:, i, j] = padded[:, i:i + 5, j:j + 5].sum(axis=(1, 2)) / 25
    np.testing.assert_allclose(box_filter_5x5(tf.constant(x)).numpy(), expected, atol=1e-5)


def test_bilinear_align_corners_keeps_corners_and_interpolates_linearly():
    grid = np.add.outer(np.arange(4.0), 10 * np.arange(3.0)).astype(np.float32)  # linear in i, j
    out = resize_bilinear_align_corners(tf.constant(grid[None, :, :, None]), (7, 5)).numpy()[0, ..., 0]
    expected = np.add.outer(np.linspace(0, 3, 7), 10 * np.linspace(0, 2, 5))
    np.testing.assert_allclose(out, expected, atol=1e-5)  # exact for a linear function
    same = tf.constant(grid[None, :, :, None])
    assert resize_bilinear_align_corners(same, (4, 3)) is same


@pytest.mark.parametrize("kwargs, in_shape, out_shape, shortcut_kernel", [
    (dict(input_dim=8, output_dim=8), (8, 8, 8), (8, 8, 8), None),
    (dict(input_dim=8, output_dim=16, resample="down"), (8, 8, 8), (4, 4, 16), (1, 1, 8, 16)),
    (dict(input_dim=8, output_dim=8, resample="down", dilation=2), (8, 8, 8), (8, 8, 8), (3, 3, 8, 8)),
    (dict(input_dim=8, output_dim=8, dilation=4), (8, 8, 8), (8, 8, 8), None),
])
def test_residual_block_variants(kwargs, in_shape, out_shape, shortcut_kernel):
    layer = ConditionalResidualBlock(num_levels=LEVELS, **kwargs)
    x, y = batch(in_shape)
    out, clone_out = round_trip(layer, x, y)
    assert out.shape[1:] == out_shape
    np.testing.assert_allclose(out, clone_out, atol=1e-6)
    if shortcut_kernel is None:
        assert layer.shortcut is None
    else:
        assert tuple(layer.shortcut.kernel.shape) == shortcut_kernel
        assert layer.shortcut.dilation_rate == (kwargs.get("dilation") or 1,) * 2
    mid = kwargs["input_dim"] if kwargs.get("resample") else kwargs["output_dim"]
    assert tuple(layer.conv1.kernel.shape) == (3, 3, kwargs["input_dim"], mid)
    assert all(conv.use_bias for conv in (layer.conv1, layer.conv2))


def test_residual_block_identity_shortcut_adds_input():
    layer = ConditionalResidualBlock(4, 4, LEVELS)
    x, y = batch((6, 6, 4))
    layer(x, y)
    for conv in (layer.conv2,):
        conv.kernel.assign(tf.zeros_like(conv.kernel))
        conv.bias.assign(tf.zeros_like(conv.bias))
    np.testing.assert_allclose(layer(x, y).numpy(), x.numpy(), atol=1e-6)


def test_rcu_chains_blocks_without_bias():
    layer = ResidualConvUnit(8, num_blocks=3, num_levels=LEVELS)
    x, y = batch((5, 5, 8))
    out, clone_out = round_trip(layer, x, y)
    assert out.shape == x.shape
    np.testing.assert_allclose(out, clone_out, atol=1e-6)
    assert len(layer.convs) == 6 and not any(c.use_bias for c in layer.convs)


def test_msf_resizes_to_first_input_and_sums():
    layer = MultiResolutionFusion([8, 4], features=6, num_levels=LEVELS)
    (a, y), (b, _) = batch((8, 8, 8)), batch((4, 4, 4))
    out, clone_out = round_trip(layer, [a, b], y)
    assert out.shape == (2, 8, 8, 6)
    np.testing.assert_allclose(out, clone_out, atol=1e-6)
    parts = [resize_bilinear_align_corners(conv(norm(x, y)), (8, 8))
             for x, norm, conv in zip([a, b], layer.norms, layer.convs)]
    np.testing.assert_allclose(out, (parts[0] + parts[1]).numpy(), atol=1e-5)


def test_crp_stages_accumulate_pooled_paths():
    layer = ChainedResidualPooling(6, LEVELS)
    x, y = batch((6, 6, 6))
    out, clone_out = round_trip(layer, x, y)
    np.testing.assert_allclose(out, clone_out, atol=1e-6)
    for conv in layer.convs:  # with zero convs CRP reduces to its leading ELU
        conv.kernel.assign(tf.zeros_like(conv.kernel))
    np.testing.assert_allclose(layer(x, y).numpy(), tf.nn.elu(x).numpy(), atol=1e-6)


def test_refine_block_shapes_and_round_trip():
    start = RefineBlock([8], 8, LEVELS)
    (h, y) = batch((4, 4, 8))
    out, clone_out = round_trip(start, [h], y)
    assert start.fusion is None and out.shape == (2, 4, 4, 8)
    np.testing.assert_allclose(out, clone_out, atol=1e-6)
    end = RefineBlock([4, 8], 4, LEVELS, end=True)
    (fine, _) = batch((8, 8, 4))
    out, clone_out = round_trip(end, [fine, h], y)
    assert out.shape == (2, 8, 8, 4) and end.output_unit.num_blocks == 3
    np.testing.assert_allclose(out, clone_out, atol=1e-6)
    with pytest.raises(ValueError, match="in_planes"):
        RefineBlock([4], 8, LEVELS)


@pytest.mark.parametrize("rate", [2, 4])
def test_dilated_conv_matches_tensorflow_convolution_and_its_gradients(rate):
    from keras_ncsn.layers import dilated_conv2d_same

    x, kernel = tf.random.normal([2, 9, 9, 3], seed=1), tf.random.normal([3, 3, 3, 5], seed=2)

    def value_and_grads(conv):
        # Second order too: sliced score matching differentiates an input gradient.
        with tf.GradientTape() as outer:
            outer.watch([x, kernel])
            with tf.GradientTape() as tape:
                tape.watch([x, kernel])
                y = conv(x, kernel)
                loss = tf.reduce_sum(y * tf.sin(y))
            grads = tape.gradient(loss, [x, kernel])
            projected = tf.reduce_sum(grads[0] * tf.cos(x))
        return [y, *grads, *outer.gradient(projected, [x, kernel])]

    ours = value_and_grads(lambda a, k: dilated_conv2d_same(a, k, rate))
    expected = value_and_grads(lambda a, k: tf.nn.convolution(a, k, padding="SAME",
                                                              dilations=rate))
    for a, b in zip(ours, expected):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-4)


# CIN++ derivatives: sliced score matching trains through second derivatives -------------

def _ssm_network(moments=None):
    """conv -> CIN++ -> ELU -> conv on 5x5x1 images, randomised, with a float64 twin that
    writes CIN++ out (`cin_plus_numpy`'s formula in TensorFlow) with exact statistics."""
    conv_in = keras.layers.Conv2D(4, 3, padding="same")
    norm = ConditionalInstanceNormPlus(LEVELS)
    conv_out = keras.layers.Conv2D(1, 3, padding="same")
    y = tf.constant([1, 4], tf.int32)
    rng = np.random.default_rng(7)
    conv_out(tf.nn.elu(norm(conv_in(tf.zeros((2, 5, 5, 1))), y)))
    layers = [conv_in, norm, conv_out]
    variables = [w for layer in layers for w in layer.weights]
    for w in variables:
        w.assign(rng.normal(0.5, 0.5, size=w.shape).astype(np.float32))

    def net32(x):
        return conv_out(tf.nn.elu(norm(conv_in(x), y)))

    twins = [tf.Variable(tf.cast(w, tf.float64)) for w in variables]

    def net64(x):
        k1, b1, gamma, alpha, beta, k2, b2 = twins
        h = tf.nn.conv2d(x, k1, 1, "SAME") + b1
        mu = tf.reduce_mean(h, [1, 2])
        var = tf.reduce_mean(tf.square(h - mu[:, None, None]), [1, 2])
        m = tf.reduce_mean(mu, -1, keepdims=True)
        v = tf.reduce_sum(tf.square(mu - m), -1, keepdims=True) / (mu.shape[-1] - 1)
        g, a, b = (tf.gather(w, y)[:, None, None] for w in (gamma, alpha, beta))
        normed = (h - mu[:, None, None]) / tf.sqrt(var[:, None, None] + 1e-5)
        h = g * (normed + a * ((mu - m) / tf.sqrt(v + 1e-5))[:, None, None]) + b
        return tf.nn.conv2d(tf.nn.elu(h), k2, 1, "SAME") + b2

    return (net32, variables), (net64, twins)


def _ssm_weight_gradients(net, variables, dtype):
    from keras_ncsn.losses import ssm_per_sample

    rng = np.random.default_rng(3)
    x = tf.constant(rng.uniform(size=(2, 5, 5, 1)), dtype)
    v = tf.constant(rng.normal(size=(2, 5, 5, 1)), dtype)
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(ssm_per_sample(net, x, v))
    return [tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, variables)]


def _relative_errors(got, expected):
    return [np.linalg.norm(a - b) / np.linalg.norm(b) for a, b in zip(got, expected)]


def test_cin_plus_ssm_weight_gradients_are_exact(monkeypatch):
    """The SSM loss's weight gradients through CIN++ equal a float64 twin's (measured 7e-7
    apart); with tf.nn.moments' stop_gradient(mean), the old statistics, the first conv's
    are 2.3e-2 and 2.6e-2 off."""
    import keras_ncsn.layers as layers

    (net32, variables), (net64, twins) = _ssm_network()
    expected = _ssm_weight_gradients(net64, twins, tf.float64)
    assert max(_relative_errors(_ssm_weight_gradients(net32, variables, tf.float32),
                                expected)) < 1e-5
    monkeypatch.setattr(layers, "instance_moments",
                        lambda x: tf.nn.moments(x, axes=[1, 2]))
    assert max(_relative_errors(_ssm_weight_gradients(net32, variables, tf.float32),
                                expected)) > 5e-3


def test_cin_plus_outputs_and_first_derivatives_equal_tf_nn_moments(monkeypatch):
    import keras_ncsn.layers as layers

    x, y = batch((6, 5, 8))
    layer = ConditionalInstanceNormPlus(LEVELS)
    layer(x, y)
    randomise(layer)

    def value_and_first_derivatives():
        with tf.GradientTape() as tape:
            tape.watch(x)
            out = layer(x, y)
            loss = tf.reduce_sum(tf.sin(out))
        return [out, *tape.gradient(loss, [x, *layer.weights])]

    exact = value_and_first_derivatives()
    monkeypatch.setattr(layers, "instance_moments",
                        lambda x: tf.nn.moments(x, axes=[1, 2]))
    for a, b in zip(exact, value_and_first_derivatives()):
        np.testing.assert_allclose(tf.convert_to_tensor(a).numpy(),
                                   tf.convert_to_tensor(b).numpy(), rtol=1e-5, atol=1e-5)
