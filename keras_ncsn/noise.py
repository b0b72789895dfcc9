"""Noise levels: the sigma table sigma_1 > ... > sigma_L shared by training and sampling, the
Langevin step sizes per level and the Langevin update itself. NumPy only (no TensorFlow), so
that the ONNX Runtime sampler (`keras_ncsn.onnx_runtime`) uses the same conventions and the
same update as the TensorFlow loop (`keras_ncsn.sampling`) and the benchmark."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from keras_ncsn.config import CONVENTIONS, NoiseConfig, consistent_step_limit
from keras_ncsn.errors import ConfigError


def get_sigmas(config: NoiseConfig) -> np.ndarray:
    """Geometric sequence from sigma_begin down to sigma_end (float32, length num_levels)."""
    return np.geomspace(config.sigma_begin, config.sigma_end,
                        config.num_levels).astype(np.float32)


def level_probabilities(sigmas: Sequence[float], focus: float = 0.0,
                        width: float = 1.0) -> np.ndarray:
    """How often training draws each level: uniform (the paper's) when `focus` is 0, else
    proportional to a normal density of log sigma around log `focus` with std `width`,
    the discrete form of EDM's log-normal training noise (Karras et al. 2022): more of the
    steps go where the loss is most reducible, fewer to the levels already fitted."""
    table = check_sigmas(sigmas)
    if focus < 0 or not width > 0:
        raise ConfigError(f"level focus must be >= 0 and its width > 0, got {focus}, {width}")
    if focus == 0:
        return np.full(table.size, 1.0 / table.size)
    density = np.exp(-0.5 * ((np.log(table) - np.log(focus)) / width) ** 2)
    return density / density.sum()


def check_sigmas(sigmas: Sequence[float]) -> np.ndarray:
    """The sigma table as float64; ConfigError unless 1-D, positive and strictly descending."""
    table = np.asarray(sigmas, dtype=np.float64)
    if table.ndim != 1 or table.size == 0:
        raise ConfigError(f"sigmas must be a non-empty 1-D sequence, got shape {table.shape}")
    if not np.all(np.isfinite(table)) or np.any(table <= 0):
        raise ConfigError(f"sigmas must be finite and > 0, got {table.tolist()}")
    if np.any(np.diff(table) >= 0):
        raise ConfigError(f"sigmas must be strictly descending (sigma_1 > ... > sigma_L), "
                          f"got {table.tolist()}")
    return table


def step_sizes(sigmas: Sequence[float], step_size: float,
               convention: str = "reference_code") -> tuple[np.ndarray, np.ndarray]:
    """Per-level (drift coefficient, noise std) of x <- x + drift * s + noise_std * z.

    The one place the conventions are written down: with alpha_i = step_size *
    (sigma_i / sigma_L)^2, "paper" is (alpha_i / 2, sqrt(alpha_i)) and "reference_code" is
    (alpha_i, sqrt(2 alpha_i)). A single level gives plain Langevin with alpha = step_size.

    "consistent" keeps the drift alpha_i and adds the noise sigma_i * sqrt(1 - (1 - eta)^2),
    eta = alpha_i / sigma_i^2 = step_size / sigma_L^2: the consistency condition of
    Jolicoeur-Martineau et al. 2020 (consistent annealed sampling) within a level. A point
    perturbed by N(0, sigma_i^2) stays at exactly that noise after every step, where
    "reference_code" drifts to sqrt(2 / (2 - eta)) sigma_i, so eta up to 2 stays usable.
    """
    table = check_sigmas(sigmas)
    if not step_size > 0:
        raise ConfigError(f"step_size must be > 0, got {step_size}")
    if convention not in CONVENTIONS:
        raise ConfigError(f"convention must be one of {', '.join(CONVENTIONS)}, "
                          f"got {convention!r}")
    alpha = step_size * (table / table[-1]) ** 2
    if convention == "paper":
        return alpha / 2, np.sqrt(alpha)
    if convention == "consistent":
        limit = consistent_step_limit(table[-1])
        if step_size > limit:
            raise ConfigError(f"convention consistent needs step_size <= 2 sigma_L^2 = "
                              f"{limit:g} (the noise it removes per step), got {step_size:g}")
        eta = step_size / table[-1] ** 2
        return alpha, table * np.sqrt(1 - (1 - eta) ** 2)
    return alpha, np.sqrt(2 * alpha)


def langevin_update(x, score, drift, noise_std=0.0, z=0.0):
    """One step x + drift * score + noise_std * z: the only place the update is written.

    `drift` and `noise_std` are a level's entries of `step_sizes` (annealed and plain
    Langevin) or `ancestral_steps`; `z` is standard normal. Without noise it is the
    denoising step x + sigma_L^2 s(x, sigma_L) (`denoise_update`). Plain arithmetic, so
    the same function runs on TensorFlow tensors inside the compiled loop and on NumPy
    arrays in the ONNX Runtime sampler; every runtime follows it on the same noise.
    """
    return x + drift * score + noise_std * z


def denoise_update(x, score, sigma_last):
    """NCSNv2's final noiseless step x + sigma_L^2 s(x, sigma_L) (Tweedie's denoiser)."""
    return langevin_update(x, score, sigma_last ** 2)


def ancestral_steps(sigmas: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per-level (drift coefficient, noise std) of the VE ancestral sampler, one step a level.

    Step i moves x_i (noise sigma_i) to x_{i+1}: x + (sigma_i^2 - sigma_{i+1}^2) s(x, i) +
    sigma_{i+1} / sigma_i * sqrt(sigma_i^2 - sigma_{i+1}^2) z, the Gaussian of the
    inference chain's posterior q(x_{i+1} | x_i, x) with the score in place of the DSM
    target (see `keras_ncsn.likelihood`). With sigma_{L+1} = 0 the last step is
    x + sigma_L^2 s(x, L) without noise: the denoising step, i.e. the decoder's mean.
    """
    table = check_sigmas(sigmas)
    following = np.append(table[1:], 0.0)
    drift = table ** 2 - following ** 2
    return drift, following / table * np.sqrt(drift)
