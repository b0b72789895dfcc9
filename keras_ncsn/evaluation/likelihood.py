"""Held-out bits/dim of a run or export folder: what `scripts/evaluate.py --likelihood` runs.

The bound and its conventions are `keras_ncsn.likelihood`'s. This module loads the score
function (a run's `NCSN.score`, EMA weights when kept, or an export's SavedModel `score`
endpoint), the test split of the model's data, optionally fits the decoder's scale on
training images, and writes likelihood.json and likelihood.png (the per-level terms) into
the output folder, with the bits per pixel of PNG and gzip on the same images beside it.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable

import numpy as np

from keras_ncsn.data import load_images
from keras_ncsn.errors import ConfigError, DataError
from keras_ncsn.evaluation.report import (check_source, describe_data, is_export,
                                          real_data_config)
from keras_ncsn.io import atomic_path, atomic_write_text, check_output_folder
from keras_ncsn.likelihood import (DECODERS, codec_bits_per_dim, fit_decoder_scale,
                                   format_bits, heldout_bits_per_dim, plot_bits)

SCALES = ("sigma_L", "fit")  # the decoder's scale: sigma_L, or fitted on training images
FIT_IMAGES = 1000  # training images the decoder's scale is fitted on
OUTPUT_MARKERS = ("likelihood.json",)


def open_score(path: str, ema: bool = True) -> tuple[Callable, np.ndarray, int | None]:
    """(score_fn, sigmas, step) of a run folder (EMA weights when kept and `ema`) or of an
    export folder (its SavedModel's `score` endpoint, called positionally; step None)."""
    if is_export(path):
        if not ema:
            raise ConfigError(f"--no-ema needs a run folder; the export {path} holds only the "
                              "weights it was exported with")
        from keras_ncsn.export import load_export

        loaded = load_export(path)
        # The closure keeps `loaded` alive: its endpoints hold only weak references.
        return (lambda x, level: loaded.score(x, level)), loaded.sigmas().numpy(), None
    import keras

    from keras_ncsn.training import load_run

    _, model, step = load_run(path, ema=ema)
    return model.score, keras.ops.convert_to_numpy(model.sigmas), step


def _subset(images: np.ndarray, count: int, seed: int) -> np.ndarray:
    """`count` of `images` drawn by `seed` (all of them for 0), in their order."""
    if not count or count >= len(images):
        return images
    return images[np.sort(np.random.default_rng(seed).choice(len(images), count,
                                                             replace=False))]


def evaluate_likelihood(source_path: str, out: str, *, images: int = 0, draws: int = 1,
                        one_level: bool = False, decoder: str = "discretized",
                        decoder_scale: str = "sigma_L", seed: int = 0, batch: int = 100,
                        real_data: str | None = None, ema: bool = True, command: str = "",
                        overwrite: bool = False, progress: bool = True,
                        log=print) -> dict[str, Any]:
    """Held-out bits/dim of a run or export folder on `images` test images (0 = all) into
    `out` (new or empty, or an earlier likelihood evaluation with `overwrite`).

    `decoder_scale` "sigma_L" uses sigma_L; "fit" the maximum-likelihood scalar on
    `FIT_IMAGES` training images (`fit_decoder_scale`). Other options as in
    `keras_ncsn.likelihood.bound`.
    Returns the result, also written as likelihood.json beside likelihood.png.
    """
    if images < 0:
        raise ConfigError(f"--images must be >= 0 (0 = the whole test split), got {images}")
    if draws < 1 or batch < 1:
        raise ConfigError(f"--draws and --batch must be >= 1, got {draws} and {batch}")
    if decoder not in DECODERS:
        raise ConfigError(f"--decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    if decoder_scale not in SCALES:
        raise ConfigError(f"--decoder-scale must be one of {', '.join(SCALES)}, "
                          f"got {decoder_scale!r}")
    config = check_source(source_path)
    check_output_folder(out, OUTPUT_MARKERS, "likelihood evaluation", replace=overwrite)
    data = real_data_config(config.data, real_data)
    test = _subset(load_images(data, "eval"), images, seed)
    if test.shape[1:] != config.image_shape:
        raise DataError(f"test images are {test.shape[1:]} but the model takes "
                        f"{config.image_shape}: pick --real-data of the model's size")
    score_fn, sigmas, step = open_score(source_path, ema)
    scale = None
    if decoder_scale == "fit":
        train = _subset(load_images(data, "train"), FIT_IMAGES, seed)
        scale = fit_decoder_scale(score_fn, sigmas, train, decoder=decoder, seed=seed,
                                  batch=batch)
        log(f"decoder scale fitted on {len(train):,} training images: {scale:.4g} "
            f"(sigma_L {sigmas[-1]:.4g})")
    log(f"bound on {len(test):,} test images of {describe_data(data)}, {draws} draw(s) each")
    result = heldout_bits_per_dim(score_fn, sigmas, test, seed=seed, draws=draws,
                                  one_level=one_level, decoder=decoder, decoder_scale=scale,
                                  batch=batch, progress=progress)
    codes = codec_bits_per_dim(test)
    result.update(source=source_path, kind="export" if is_export(source_path) else "run",
                  step=step, command=command, seed=seed, decoder_scale_origin=(
                      f"fitted on {FIT_IMAGES:,} training images" if scale is not None
                      else "sigma_L"),
                  data=describe_data(data), lossless_codes=codes)
    log(format_bits(result))
    log(f"lossless codes of the same images: PNG {codes['png']:.3f}, gzip {codes['gzip']:.3f} "
        "bits/dim")
    with atomic_path(out, is_dir=True) as tmp:
        plot_bits(result, os.path.join(tmp, "likelihood.png"))
        atomic_write_text(os.path.join(tmp, "likelihood.json"),
                          json.dumps(result, indent=2) + "\n")
    log(f"wrote {out}/likelihood.json and {out}/likelihood.png")
    return result
