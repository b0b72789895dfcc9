"""CondRefineNetDilated (Song & Ermon 2019, Section 3 of docs' reference): the network that
maps a batch and its noise levels to scores, as a Keras backbone serialisable on its own.

Layers (`keras_ncsn.layers`) -> this backbone -> the `NCSN` task (`keras_ncsn.model`), which
adds training, sampling and inpainting around it.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np
import tensorflow as tf

from keras_ncsn.layers import (ConditionalInstanceNormPlus, ConditionalResidualBlock,
                               RefineBlock, conv2d)

# Attributes holding the network's layers: their names are the weight paths of checkpoints.
LAYER_ATTRIBUTES = ("begin_conv", "encoder", "decoder", "end_norm", "end_conv")


@keras.saving.register_keras_serializable(package="keras_ncsn")
class CondRefineNetDilated(keras.Model):
    """s_theta(x, sigma_level): `backbone((x, level))` with x [B, H, W, C] in [0, 1] (mapped
    to [-1, 1] inside) and level an int noise-level index per image [B] (or [B, 1]).

    Holds the sigma table as a non-trainable weight; with `scale_by_sigma` the output is
    net(x) / sigma_level (NCSNv2's parameterisation). Images are square with an even size.
    """

    def __init__(self, image_shape: Sequence[int], sigmas: Sequence[float], ngf: int = 64,
                 scale_by_sigma: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.image_shape = tuple(int(d) for d in image_shape)
        height, width, channels = self.image_shape
        if height != width or height % 2 or height < 4:
            raise ValueError(f"images must be square with an even size >= 4, got {image_shape}")
        sigma_values = np.asarray(sigmas, np.float32)
        if sigma_values.ndim != 1 or not len(sigma_values) or np.any(sigma_values <= 0):
            raise ValueError("sigmas must be a non-empty 1-D list of positive numbers")
        self.ngf, self.scale_by_sigma = int(ngf), bool(scale_by_sigma)
        self.num_levels = levels = len(sigma_values)
        self.sigmas = self.add_weight(
            name="sigmas", shape=(levels,), trainable=False, autocast=False,
            initializer=keras.initializers.Constant(sigma_values))
        block = ConditionalResidualBlock
        self.begin_conv = conv2d(ngf, 3, channels, name="begin_conv")
        self.encoder = [
            block(ngf, ngf, levels, name="res1_0"),
            block(ngf, ngf, levels, name="res1_1"),
            block(ngf, 2 * ngf, levels, resample="down", name="res2_0"),
            block(2 * ngf, 2 * ngf, levels, name="res2_1"),
            block(2 * ngf, 2 * ngf, levels, resample="down", dilation=2, name="res3_0"),
            block(2 * ngf, 2 * ngf, levels, dilation=2, name="res3_1"),
            block(2 * ngf, 2 * ngf, levels, resample="down", dilation=4, name="res4_0"),
            block(2 * ngf, 2 * ngf, levels, dilation=4, name="res4_1"),
        ]
        self.decoder = [
            RefineBlock([2 * ngf], 2 * ngf, levels, name="refine1"),
            RefineBlock([2 * ngf, 2 * ngf], 2 * ngf, levels, name="refine2"),
            RefineBlock([2 * ngf, 2 * ngf], ngf, levels, name="refine3"),
            RefineBlock([ngf, ngf], ngf, levels, end=True, name="refine4"),
        ]
        self.end_norm = ConditionalInstanceNormPlus(levels, name="end_norm")
        self.end_conv = conv2d(channels, 3, ngf, name="end_conv")

    def call(self, inputs, training=None):
        x, level = inputs
        level = tf.cast(tf.reshape(level, [-1]), tf.int32)
        h = self.begin_conv(2.0 * x - 1.0)
        stage_outputs = []
        for i, block in enumerate(self.encoder):
            h = block(h, level)
            if i % 2:
                stage_outputs.append(h)
        layer1, layer2, layer3, layer4 = stage_outputs
        h = self.decoder[0]([layer4], level)
        h = self.decoder[1]([layer3, h], level)
        h = self.decoder[2]([layer2, h], level)
        h = self.decoder[3]([layer1, h], level)
        out = self.end_conv(tf.nn.elu(self.end_norm(h, level)))
        if self.scale_by_sigma:
            sigma = tf.cast(tf.gather(self.sigmas, level), out.dtype)
            out = out / tf.reshape(sigma, [-1, 1, 1, 1])
        return out

    def build_for_images(self) -> "CondRefineNetDilated":
        """Creates all weights by calling the network once on a dummy batch."""
        self((tf.zeros((1, *self.image_shape)), tf.zeros((1,), tf.int32)))
        return self

    def get_config(self):
        return {**super().get_config(), "image_shape": list(self.image_shape),
                "sigmas": [float(s) for s in keras.ops.convert_to_numpy(self.sigmas)],
                "ngf": self.ngf, "scale_by_sigma": self.scale_by_sigma}
