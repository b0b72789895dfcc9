"""Noise levels: the sigma table sigma_1 > ... > sigma_L shared by training and sampling."""

from __future__ import annotations

import numpy as np

from keras_ncsn.config import NoiseConfig


def get_sigmas(config: NoiseConfig) -> np.ndarray:
    """Geometric sequence from sigma_begin down to sigma_end (float32, length num_levels)."""
    return np.exp(np.linspace(np.log(config.sigma_begin), np.log(config.sigma_end),
                              config.num_levels)).astype(np.float32)
