"""Export folders without TensorFlow: their layout and checks, and sampling with ONNX Runtime.

This module and everything it imports use NumPy, PIL and onnxruntime only, so serving from
`score.onnx` / `sampler.onnx` needs no TensorFlow (scripts/onnx_sample.py); `keras_ncsn.export`
writes the folders it reads.

Seeds: `OnnxExport.sample(num_images, seed)` seeds NumPy's `default_rng(seed)`, which draws
the starting batch and then, level by level, the [T, N, H, W, C] Langevin noise. Both
samplers, "numpy" (the loop below around score.onnx) and "onnx" (sampler.onnx, the loop as
one ONNX graph), use these same draws and so give the same images up to float rounding.
TensorFlow's samplers (the SavedModel, `NCSN.sample`) draw from their own philox streams, so
one seed gives different images there; `OnnxExport.langevin` with TensorFlow's noise
(`LangevinSampler.step_noise`) reproduces a TensorFlow run.
"""

from __future__ import annotations

import functools
import glob
import os
from typing import Union

import numpy as np

from keras_ncsn.config import Config, load_config
from keras_ncsn.errors import ConfigError, ExportError
from keras_ncsn.noise import denoise_update, get_sigmas, langevin_update, step_sizes

CONFIG_FILE = "config.json"
SAVED_MODEL_DIR = "saved_model"
SCORE_FILE = "score.onnx"
SAMPLER_FILE = "sampler.onnx"
CARD_FILE = "MODEL_CARD.md"
SAMPLES_FILE = "samples.png"
# What loading needs; a folder without one of these was copied or written only in part.
REQUIRED_FILES = (CONFIG_FILE, f"{SAVED_MODEL_DIR}/saved_model.pb",
                  f"{SAVED_MODEL_DIR}/variables/variables.index", SCORE_FILE, SAMPLER_FILE)
# What marks a folder as an export, even an incomplete one: export.py --overwrite replaces
# such a folder and refuses any other.
EXPORT_MARKERS = (CONFIG_FILE, SAVED_MODEL_DIR)
SAMPLERS = ("numpy", "onnx")


def check_export(folder: str) -> Config:
    """The config of a complete export folder; ExportError if it is missing or incomplete."""
    if os.path.isfile(folder):
        raise ExportError(f"export folder {folder} is a file, not a folder written by "
                          "scripts/export.py")
    if not os.path.isdir(folder):
        base = os.path.basename(os.path.normpath(folder))
        parent = os.path.dirname(os.path.abspath(folder))
        if glob.glob(os.path.join(parent, f".tmp-{base}-*")):
            raise ExportError(f"export folder {folder} does not exist: an export to it is "
                              f"still running or was interrupted (found {parent}/.tmp-{base}-*)")
        raise ExportError(f"export folder {folder} does not exist "
                          f"(write one with scripts/export.py RUN_DIR --out {folder})")
    missing = [name for name in REQUIRED_FILES if not os.path.isfile(os.path.join(folder, name))]
    if missing:
        raise ExportError(f"export folder {folder} is incomplete (missing {', '.join(missing)}); "
                          f"export the run again with scripts/export.py")
    return load_config(folder)


def _session(path: str):
    """An ONNX Runtime session on the CPU; ExportError if the file is not a loadable model."""
    import onnxruntime as ort
    from onnxruntime.capi.onnxruntime_pybind11_state import (Fail, InvalidGraph,
                                                             InvalidProtobuf, NoSuchFile)

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    try:
        return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    except (Fail, InvalidGraph, InvalidProtobuf, NoSuchFile) as e:
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"cannot load {path}: {message}") from None


def _is_integer(value: object) -> bool:
    """A Python or NumPy integer (not a bool, not a float that happens to be whole)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_sample_args(num_images: int, seed: int) -> None:
    """`OnnxExport.sample`'s arguments: at least one image, and a seed NumPy takes (>= 0)."""
    for name, value in (("the number of images", num_images), ("the seed", seed)):
        if not _is_integer(value):
            raise ConfigError(f"{name} must be an integer, got {value!r}")
    if num_images < 1:
        raise ConfigError(f"the number of images must be >= 1, got {num_images}")
    if seed < 0:
        raise ConfigError(f"the seed must be >= 0 (NumPy's default_rng), got {seed}")


class OnnxExport:
    """An export folder's ONNX models with the sampler settings of its config.json.

    The sigmas and per-level step sizes are computed as in training and the TensorFlow
    sampler (`noise.get_sigmas`, `noise.step_sizes`), so all runtimes use one convention.
    Exports whose sample.method is not annealed Langevin are refused (ExportError).
    """

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.config = check_export(folder)
        sample = self.config.sample
        if sample.method != "annealed_langevin":
            raise ExportError(f"export folder {folder} samples with sample.method="
                              f"{sample.method}; the ONNX Runtime samplers run annealed "
                              "Langevin dynamics only: use its SavedModel")
        # float32 like the model's sigma table, which the TensorFlow sampler reads
        self.sigmas = get_sigmas(self.config.noise).astype(np.float64)
        drift, noise_std = step_sizes(self.sigmas, sample.step_size, sample.convention)
        self.drift, self.noise_std = drift.astype(np.float32), noise_std.astype(np.float32)
        self.steps_per_level = sample.steps_per_level
        self.image_shape = self.config.image_shape

    @functools.cached_property
    def score_session(self):
        return _session(os.path.join(self.folder, SCORE_FILE))

    @functools.cached_property
    def sampler_session(self):
        return _session(os.path.join(self.folder, SAMPLER_FILE))

    @property
    def num_levels(self) -> int:
        return len(self.sigmas)

    def check_images(self, x: np.ndarray, name: str = "x") -> np.ndarray:
        """x as float32 [N, H, W, C] with N >= 1 and this export's H, W, C; ConfigError if
        it is not (ONNX Runtime would fail with its node names)."""
        x = np.asarray(x, np.float32)
        if x.ndim != 4 or not len(x) or x.shape[1:] != tuple(self.image_shape):
            raise ConfigError(f"{name} must be [N, {', '.join(map(str, self.image_shape))}] "
                              f"with N >= 1 (this export's images), got shape {x.shape}")
        return x

    def check_level(self, level: Union[int, np.ndarray], count: int) -> np.ndarray:
        """level (an int, or one per image) as int32 [count]; ConfigError unless every
        index is in [0, L): an out-of-range gather is an error on a CPU, zeros on a GPU."""
        array = np.asarray(level)
        if array.dtype.kind not in "iu" or array.shape not in ((), (count,)):
            raise ConfigError(f"level must be an integer or {count} integers (one per "
                              f"image), got {array.dtype} of shape {array.shape}")
        outside = array[(array < 0) | (array >= self.num_levels)]
        if outside.size:
            raise ConfigError(f"level must be in [0, {self.num_levels}), "
                              f"got {int(outside.flat[0])}")
        return np.broadcast_to(array.astype(np.int32), (count,)).copy()

    def score(self, x: np.ndarray, level: Union[int, np.ndarray]) -> np.ndarray:
        """s(x, sigma_level) from score.onnx; x float32 [N, H, W, C], level an int or [N]."""
        x = self.check_images(x)
        level = self.check_level(level, len(x))
        # "level_index" is the input's name in exported score.onnx files.
        return self.score_session.run(["score"], {"x": x, "level_index": level})[0]

    def initial(self, num_images: int, rng: np.random.Generator) -> np.ndarray:
        """Starting batch: Uniform[0, 1) or N(0, sigma_1^2), as the config's sample.init says."""
        shape = (int(num_images), *self.image_shape)
        if self.config.sample.init == "uniform":
            return rng.random(shape, dtype=np.float32)
        return np.float32(self.sigmas[0]) * rng.standard_normal(shape, dtype=np.float32)

    def langevin(self, x: np.ndarray, noise: np.ndarray, first_level: int = 0,
                 sampler: str = "numpy") -> np.ndarray:
        """Levels first_level .. first_level + len(noise) // T - 1 from x, step j taking the
        standard normal noise[j] ([steps, N, H, W, C]); denoises and clips (as configured)
        when the last level is reached. The same contract as TensorFlow's
        `LangevinSampler.given_noise_loop`, which sampler.onnx is."""
        if sampler not in SAMPLERS:
            raise ConfigError(f"sampler must be one of {', '.join(SAMPLERS)}, got {sampler!r}")
        x, noise = self.check_images(x), np.asarray(noise, np.float32)
        T = self.steps_per_level
        levels = len(noise) // T
        if (noise.ndim != 5 or noise.shape[1:] != x.shape or len(noise) % T or not levels
                or not _is_integer(first_level)
                or not 0 <= first_level <= self.num_levels - levels):
            raise ConfigError(f"noise must be [k*{T}, *x.shape] for k levels starting at "
                              f"first_level within the {self.num_levels} levels; got noise "
                              f"{noise.shape}, x {x.shape}, first_level {first_level}")
        if sampler == "onnx":
            return self.sampler_session.run(["images"], {
                "x": x, "noise": noise, "first_level": np.array(first_level, np.int32)})[0]
        for j, z in enumerate(noise):
            level = first_level + j // T
            x = langevin_update(x, self.score(x, level), self.drift[level],
                                self.noise_std[level], z)
        if first_level + levels == self.num_levels:
            if self.config.sample.denoise:  # one noiseless step at sigma_L
                x = denoise_update(x, self.score(x, self.num_levels - 1), float(self.sigmas[-1]))
            if self.config.sample.clip:
                x = np.clip(x, 0.0, 1.0)
        return x

    def sample(self, num_images: int, seed: int = 0, sampler: str = "numpy") -> np.ndarray:
        """`num_images` samples [N, H, W, C] by annealed Langevin dynamics, drawn from `seed`
        (see the module docstring), one level at a time to bound the noise held in memory."""
        check_sample_args(num_images, seed)
        rng = np.random.default_rng(seed)
        x = self.initial(num_images, rng)
        for level in range(self.num_levels):
            noise = rng.standard_normal((self.steps_per_level, *x.shape), dtype=np.float32)
            x = self.langevin(x, noise, level, sampler)
        return x
