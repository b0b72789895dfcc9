"""Building blocks of CondRefineNetDilated (Song & Ermon 2019), as serialisable Keras layers.

Every block is conditioned on the noise-level index `level` (int32, shape [B]) through
conditional instance normalisation "plus" (CIN++). Layouts are channels-last (NHWC).
Weights start as in the reference implementation (PyTorch's default init for
convolutions: uniform with bound 1/sqrt(fan_in) for kernel and bias), so that a
freshly built model behaves like the authors' one.
"""

from __future__ import annotations

import math
from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

EPSILON = 1e-5  # instance norm and CIN++ epsilon, as in the reference
_PACKAGE = "keras_ncsn"


def dilated_conv2d_same(x: tf.Tensor, kernel: tf.Tensor, rate: int) -> tf.Tensor:
    """Stride-1 'same' convolution with dilation `rate` as one Conv2D op and a written-out
    gradient.

    TensorFlow's CPU kernels have no dilated Conv2DBackpropFilter, so `tf.nn.convolution`
    wraps dilated convolutions in SpaceToBatchND/BatchToSpaceND, which ran forward +
    backward 1.6x slower at 14x14x128 (batch 64, 2 cores). Here the input gradient is
    the same dilated convolution with the flipped, transposed kernel, and the kernel
    gradient one matmul per tap of the shifted input.
    """
    taps_h, taps_w, in_channels, out_channels = kernel.shape

    @tf.custom_gradient
    def conv(x, kernel):
        def grad(dy):
            flipped = tf.transpose(tf.reverse(kernel, [0, 1]), [0, 1, 3, 2])
            # Through this function again, so that second derivatives (the Jacobian
            # term of sliced score matching) avoid the missing kernel as well.
            dx = dilated_conv2d_same(dy, flipped, rate)
            pad_h, pad_w = rate * (taps_h // 2), rate * (taps_w // 2)
            padded = tf.pad(x, [[0, 0], [pad_h, pad_h], [pad_w, pad_w], [0, 0]])
            height, width = tf.shape(x)[1], tf.shape(x)[2]
            dy_flat = tf.reshape(dy, [-1, out_channels])
            taps = [tf.matmul(tf.reshape(padded[:, i * rate:i * rate + height,
                                                j * rate:j * rate + width, :],
                                         [-1, in_channels]), dy_flat, transpose_a=True)
                    for i in range(taps_h) for j in range(taps_w)]
            return dx, tf.reshape(tf.stack(taps), kernel.shape)

        return tf.nn.conv2d(x, kernel, 1, "SAME", dilations=rate), grad

    return conv(x, kernel)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class DilatedConv2D(keras.layers.Conv2D):
    """`keras.layers.Conv2D` (same weights and config) computed by `dilated_conv2d_same`."""

    def convolution_op(self, inputs, kernel):
        # A tensor, not the variable: tf.custom_gradient would want variable gradients.
        return dilated_conv2d_same(inputs, tf.convert_to_tensor(kernel), self.dilation_rate[0])


def _no_accelerator() -> bool:
    """True on CPU-only hosts: GPUs (cuDNN) and TPUs (XLA) have native dilated-conv
    gradients, where `dilated_conv2d_same`'s per-tap matmuls would only add work."""
    return not (tf.config.list_physical_devices("GPU") or tf.config.list_physical_devices("TPU"))


def conv2d(filters: int, kernel_size: int, fan_in_channels: int, *, use_bias: bool = True,
           dilation: int = 1, name: str | None = None) -> keras.layers.Conv2D:
    """A 'same'-padded convolution initialised like PyTorch's `nn.Conv2d`."""
    bound = 1.0 / math.sqrt(fan_in_channels * kernel_size * kernel_size)
    layer = (DilatedConv2D if dilation > 1 and kernel_size > 1 and _no_accelerator()
             else keras.layers.Conv2D)
    return layer(
        filters, kernel_size, padding="same", dilation_rate=dilation, use_bias=use_bias,
        kernel_initializer=keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform"),
        bias_initializer=keras.initializers.RandomUniform(-bound, bound), name=name)


def box_filter_5x5(x: tf.Tensor) -> tf.Tensor:
    """5x5 mean, stride 1, zero padding 2 counted in the divisor (PyTorch count_include_pad)."""
    padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]])
    return tf.nn.avg_pool2d(padded, ksize=5, strides=1, padding="VALID")


def _interpolation_matrix(size_out: int, size_in: int) -> np.ndarray:
    """[size_out, size_in] weights of 1-D linear interpolation with align_corners=True."""
    matrix = np.zeros((size_out, size_in), np.float32)
    if size_in == 1 or size_out == 1:
        matrix[:, 0] = 1.0
        return matrix
    positions = np.arange(size_out) * (size_in - 1) / (size_out - 1)
    low = np.minimum(np.floor(positions).astype(int), size_in - 2)
    frac = positions - low
    matrix[np.arange(size_out), low] = 1.0 - frac
    matrix[np.arange(size_out), low + 1] += frac
    return matrix


def resize_bilinear_align_corners(x: tf.Tensor, size: Sequence[int]) -> tf.Tensor:
    """Bilinear resize with align_corners=True as two small matmuls (XLA/ONNX friendly).

    Two einsums with lower-case indices: tf2onnx 1.17 lower-cases einsum equations, which
    turned the one-call form "Hh,bhwc,Ww->bHWc" into a wrong diagonal.
    """
    height, width = int(x.shape[1]), int(x.shape[2])
    if (height, width) == tuple(size):
        return x
    rows = tf.constant(_interpolation_matrix(size[0], height), dtype=x.dtype)
    cols = tf.constant(_interpolation_matrix(size[1], width), dtype=x.dtype)
    return tf.einsum("jw,biwc->bijc", cols, tf.einsum("ih,bhwc->biwc", rows, x))


def instance_moments(x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Spatial mean and (biased) variance [B, C] of x [B, H, W, C], exact to any order.

    `tf.nn.moments` centres the variance on stop_gradient(mean): its first derivatives are
    exact but its second derivatives lose the mean's term, and sliced score matching
    trains through second derivatives. The [B, 1, 1, C] mean is used only as tf.nn.moments
    uses it, inside the reduction (the layout tf2onnx converts correctly).
    """
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    var = tf.reduce_mean(tf.square(x - mean), axis=[1, 2])
    return tf.squeeze(mean, [1, 2]), var


def _build_all(layers: Sequence[keras.layers.Layer], shape) -> None:
    """Builds sub-layers that all take inputs of one shape."""
    for layer in layers:
        layer.build(shape)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConditionalInstanceNormPlus(keras.layers.Layer):
    """CIN++: instance norm plus a learned, level-conditioned correction of channel means.

    mu_c are spatial means; m, v the mean and unbiased variance of mu over channels;
    out = gamma[level] * (InstanceNorm(x) + alpha[level] * (mu - m) / sqrt(v + eps)) + beta[level].
    Statistics are computed in float32 (also under mixed precision), and the whole
    normalisation is folded into one multiply-add over the activation tensor.
    """

    def __init__(self, num_levels: int, **kwargs):
        super().__init__(**kwargs)
        self.num_levels = num_levels

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels < 2:
            raise ValueError("CIN++ needs at least 2 channels (variance over channels)")
        scale_init = keras.initializers.RandomNormal(mean=1.0, stddev=0.02)
        shape = (self.num_levels, channels)
        self.gamma = self.add_weight(name="gamma", shape=shape, initializer=scale_init,
                                     autocast=False)
        self.alpha = self.add_weight(name="alpha", shape=shape, initializer=scale_init,
                                     autocast=False)
        self.beta = self.add_weight(name="beta", shape=shape, initializer="zeros",
                                    autocast=False)

    def call(self, x, level):
        # Statistics stay [B, C] until the final multiply-add: with [B, 1, 1, C] tensors,
        # tf2onnx 1.17's transpose optimizer reduced over the wrong axis.
        x32 = tf.cast(x, tf.float32)
        channels = x32.shape[-1]
        mean, var = instance_moments(x32)  # [B, C]
        m = tf.reduce_mean(mean, axis=-1, keepdims=True)
        v = tf.reduce_sum(tf.square(mean - m), axis=-1, keepdims=True) / (channels - 1)
        mean_tilde = (mean - m) * tf.math.rsqrt(v + EPSILON)
        gamma, alpha, beta = (tf.gather(w, level) for w in (self.gamma, self.alpha, self.beta))
        inv_std = tf.math.rsqrt(var + EPSILON)
        scale = gamma * inv_std
        shift = gamma * (alpha * mean_tilde - mean * inv_std) + beta
        return tf.cast(x32 * scale[:, None, None, :] + shift[:, None, None, :],
                       self.compute_dtype)

    def compute_output_shape(self, input_shape, level_shape=None):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_levels": self.num_levels}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ConditionalResidualBlock(keras.layers.Layer):
    """Pre-activation residual block: CIN++ -> ELU -> conv -> CIN++ -> ELU -> conv, + shortcut.

    resample "down" without dilation halves the resolution (conv then 2x2 mean pool,
    on both paths). With dilation, a "down" block keeps the resolution but, as in the
    reference, gets a dilated 3x3 shortcut conv instead of the identity.
    """

    def __init__(self, input_dim: int, output_dim: int, num_levels: int,
                 resample: str | None = None, dilation: int | None = None, **kwargs):
        super().__init__(**kwargs)
        if resample not in (None, "down"):
            raise ValueError(f"resample must be None or 'down', got {resample!r}")
        self.input_dim, self.output_dim = input_dim, output_dim
        self.num_levels, self.resample, self.dilation = num_levels, resample, dilation
        rate = dilation or 1
        mid = input_dim if resample == "down" else output_dim
        self.pool = resample == "down" and dilation is None
        self.norm1 = ConditionalInstanceNormPlus(num_levels, name="norm1")
        self.conv1 = conv2d(mid, 3, input_dim, dilation=rate, name="conv1")
        self.norm2 = ConditionalInstanceNormPlus(num_levels, name="norm2")
        self.conv2 = conv2d(output_dim, 3, mid, dilation=rate, name="conv2")
        self.shortcut = None
        if resample == "down" or input_dim != output_dim:
            kernel = 1 if self.pool or dilation is None else 3
            self.shortcut = conv2d(output_dim, kernel, input_dim, dilation=rate, name="shortcut")

    def _maybe_pool(self, h):
        return tf.nn.avg_pool2d(h, 2, 2, "VALID") if self.pool else h

    def build(self, x_shape, level_shape=None):
        mid_shape = (*x_shape[:-1], self.conv1.filters)
        for layer, shape in ((self.norm1, x_shape), (self.conv1, x_shape),
                             (self.norm2, mid_shape), (self.conv2, mid_shape),
                             (self.shortcut, x_shape)):
            if layer is not None:
                layer.build(shape)

    def call(self, x, level):
        h = self.conv1(tf.nn.elu(self.norm1(x, level)))
        h = self._maybe_pool(self.conv2(tf.nn.elu(self.norm2(h, level))))
        skip = x if self.shortcut is None else self._maybe_pool(self.shortcut(x))
        return skip + h

    def get_config(self):
        return {**super().get_config(), "input_dim": self.input_dim,
                "output_dim": self.output_dim, "num_levels": self.num_levels,
                "resample": self.resample, "dilation": self.dilation}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ResidualConvUnit(keras.layers.Layer):
    """RCU: `num_blocks` x (`num_stages` x [CIN++ -> ELU -> 3x3 conv, no bias] + skip)."""

    def __init__(self, features: int, num_blocks: int, num_levels: int, num_stages: int = 2,
                 **kwargs):
        super().__init__(**kwargs)
        self.features, self.num_blocks = features, num_blocks
        self.num_levels, self.num_stages = num_levels, num_stages
        self.norms = [ConditionalInstanceNormPlus(num_levels, name=f"norm_{i}")
                      for i in range(num_blocks * num_stages)]
        self.convs = [conv2d(features, 3, features, use_bias=False, name=f"conv_{i}")
                      for i in range(num_blocks * num_stages)]

    def build(self, x_shape, level_shape=None):
        _build_all([*self.norms, *self.convs], x_shape)

    def call(self, x, level):
        for block in range(self.num_blocks):
            residual = x
            for stage in range(self.num_stages):
                i = block * self.num_stages + stage
                x = self.convs[i](tf.nn.elu(self.norms[i](x, level)))
            x = x + residual
        return x

    def get_config(self):
        return {**super().get_config(), "features": self.features, "num_blocks": self.num_blocks,
                "num_levels": self.num_levels, "num_stages": self.num_stages}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class MultiResolutionFusion(keras.layers.Layer):
    """MSF: each input CIN++ -> 3x3 conv (bias) -> bilinear resize to the first input -> sum."""

    def __init__(self, in_planes: Sequence[int], features: int, num_levels: int, **kwargs):
        super().__init__(**kwargs)
        self.in_planes, self.features, self.num_levels = list(in_planes), features, num_levels
        self.norms = [ConditionalInstanceNormPlus(num_levels, name=f"norm_{i}")
                      for i in range(len(in_planes))]
        self.convs = [conv2d(features, 3, planes, name=f"conv_{i}")
                      for i, planes in enumerate(in_planes)]

    def build(self, xs_shape, level_shape=None):
        for norm, conv, shape in zip(self.norms, self.convs, xs_shape):
            _build_all([norm, conv], shape)

    def call(self, xs, level):
        size = (int(xs[0].shape[1]), int(xs[0].shape[2]))
        return tf.add_n([resize_bilinear_align_corners(conv(norm(x, level)), size)
                         for x, norm, conv in zip(xs, self.norms, self.convs)])

    def get_config(self):
        return {**super().get_config(), "in_planes": self.in_planes, "features": self.features,
                "num_levels": self.num_levels}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ChainedResidualPooling(keras.layers.Layer):
    """CRP: ELU, then stages of CIN++ -> 5x5 mean pool -> 3x3 conv (no bias), summed in."""

    def __init__(self, features: int, num_levels: int, num_stages: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.features, self.num_levels, self.num_stages = features, num_levels, num_stages
        self.norms = [ConditionalInstanceNormPlus(num_levels, name=f"norm_{i}")
                      for i in range(num_stages)]
        self.convs = [conv2d(features, 3, features, use_bias=False, name=f"conv_{i}")
                      for i in range(num_stages)]

    def build(self, x_shape, level_shape=None):
        _build_all([*self.norms, *self.convs], x_shape)

    def call(self, x, level):
        x = tf.nn.elu(x)
        path = x
        for norm, conv in zip(self.norms, self.convs):
            path = conv(box_filter_5x5(norm(path, level)))
            x = x + path
        return x

    def get_config(self):
        return {**super().get_config(), "features": self.features,
                "num_levels": self.num_levels, "num_stages": self.num_stages}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class RefineBlock(keras.layers.Layer):
    """RefineNet block: 2 RCUs per input -> MSF (several inputs) -> CRP -> output RCU(s).

    The output has the resolution of the first input; `end` gives 3 output RCUs.
    """

    def __init__(self, in_planes: Sequence[int], features: int, num_levels: int,
                 end: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.in_planes, self.features = list(in_planes), features
        self.num_levels, self.end = num_levels, end
        if len(self.in_planes) == 1 and self.in_planes[0] != features:
            raise ValueError("a single-input RefineBlock needs in_planes[0] == features")
        self.adapters = [ResidualConvUnit(planes, 2, num_levels, name=f"adapt_{i}")
                         for i, planes in enumerate(self.in_planes)]
        self.fusion = (MultiResolutionFusion(self.in_planes, features, num_levels, name="msf")
                       if len(self.in_planes) > 1 else None)
        self.pooling = ChainedResidualPooling(features, num_levels, name="crp")
        self.output_unit = ResidualConvUnit(features, 3 if end else 1, num_levels,
                                            name="output_rcu")

    def build(self, xs_shape, level_shape=None):
        for adapter, shape in zip(self.adapters, xs_shape):
            adapter.build(shape)
        if self.fusion is not None:
            self.fusion.build(xs_shape)
        fused_shape = (*xs_shape[0][:-1], self.features)
        _build_all([self.pooling, self.output_unit], fused_shape)

    def call(self, xs, level):
        hs = [adapter(x, level) for adapter, x in zip(self.adapters, xs)]
        h = hs[0] if self.fusion is None else self.fusion(hs, level)
        return self.output_unit(self.pooling(h, level), level)

    def get_config(self):
        return {**super().get_config(), "in_planes": self.in_planes, "features": self.features,
                "num_levels": self.num_levels, "end": self.end}
