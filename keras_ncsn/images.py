"""Image files of samples: grids, noise-to-image strips and animated GIFs (PNG/GIF via PIL).

Images are float batches [N, H, W, C] in [0, 1] with C = 1 (written as grayscale) or 3
(RGB); values outside [0, 1], as in unclipped Langevin snapshots, are clipped for display.
Every file is written atomically. NumPy and PIL only (no TensorFlow), so that the ONNX Runtime
sampler can write grids; tensors work wherever arrays do.
"""

from __future__ import annotations

import math
import os
import zlib
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image

from keras_ncsn.errors import ConfigError, DataError
from keras_ncsn.io import atomic_path

if TYPE_CHECKING:
    import tensorflow as tf

Array = Union[np.ndarray, "tf.Tensor"]
PAD_VALUE = 1.0  # white lines between images: visible around MNIST's black background
# PIL modes of one-channel images (with or without alpha); any other mode counts as colour.
GRAY_MODES = ("1", "L", "LA", "La", "I", "I;16", "F")


def _batch(images: Array, rank: int) -> np.ndarray:
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != rank or array.shape[-1] not in (1, 3):
        layout = "[N, H, W, C]" if rank == 4 else "[S, N, H, W, C]"
        raise ValueError(f"expected images {layout} with C = 1 or 3, got shape {array.shape}")
    return array


def grid_array(images: Array, ncol: int | None = None, padding: int = 2) -> np.ndarray:
    """uint8 [H', W', C] image of `images` [N, H, W, C] in rows of `ncol` (default: a square).

    `padding` pixels of white separate the images and frame the grid; unused cells of the
    last row stay white.
    """
    array = _batch(images, 4)
    count, height, width, channels = array.shape
    ncol = min(ncol or math.ceil(math.sqrt(count)), count)
    nrow = math.ceil(count / ncol)
    grid = np.full((padding + nrow * (height + padding), padding + ncol * (width + padding),
                    channels), PAD_VALUE, np.float32)
    for index, image in enumerate(array):
        top = padding + (index // ncol) * (height + padding)
        left = padding + (index % ncol) * (width + padding)
        grid[top:top + height, left:left + width] = image
    return np.round(np.clip(grid, 0.0, 1.0) * 255).astype(np.uint8)


def _pil(grid: np.ndarray) -> Image.Image:
    """A grayscale ("L") image for one channel, RGB for three."""
    return Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid)


def save_grid(images: Array, path: str, ncol: int | None = None, padding: int = 2) -> str:
    """Writes `images` [N, H, W, C] as one PNG grid (see `grid_array`); returns `path`."""
    picture = _pil(grid_array(images, ncol, padding))
    with atomic_path(path) as tmp:
        picture.save(tmp, format="PNG")
    return path


def save_strip(snapshots: Array, path: str, padding: int = 2) -> str:
    """Writes the evolution [S, N, H, W, C] as a PNG: one row per image, time left to right."""
    array = _batch(snapshots, 5)
    steps, count = array.shape[:2]
    rows = np.swapaxes(array, 0, 1).reshape(steps * count, *array.shape[2:])
    return save_grid(rows, path, ncol=steps, padding=padding)


def save_gif(snapshots: Array, path: str, ncol: int | None = None, padding: int = 2,
             frame_ms: int = 100, final_ms: int = 1500) -> str:
    """Writes the evolution [S, N, H, W, C] as an animated GIF of grids, looping forever.

    Each frame shows `frame_ms`, the last one `final_ms` so the result can be seen.
    """
    array = _batch(snapshots, 5)
    frames = [_pil(grid_array(frame, ncol, padding)) for frame in array]
    durations = [frame_ms] * (len(frames) - 1) + [final_ms]
    with atomic_path(path) as tmp:
        frames[0].save(tmp, format="GIF", save_all=True, append_images=frames[1:],
                       duration=durations, loop=0)
    return path


def read_image(path: str, channels: int, what: str = "",
               error: type[Exception] = DataError) -> tuple[np.ndarray, bool]:
    """uint8 [H, W, channels] of the image file at `path`, converted by PIL to grayscale
    (1 channel) or RGB (3), and whether that converted colour to grayscale or back.

    The one image reader of the package (training folders, inpainting inputs and masks).
    A missing file or one PIL cannot decode raises `error` in one line: "no image file at
    PATH", "cannot read image PATH: why", or with `what` "mask": "no mask file at PATH",
    "cannot read mask image PATH: why".
    """
    if not os.path.isfile(path):
        raise error(f"no {what or 'image'} file at {path}")
    try:
        with Image.open(path) as image:
            converted = (image.mode in GRAY_MODES) != (channels == 1)
            array = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    except (OSError, EOFError, ValueError, SyntaxError, zlib.error,
            Image.DecompressionBombError) as e:
        raise error(f"cannot read {what + ' ' if what else ''}image {path}: "
                    f"{' '.join(str(e).split())}") from None
    return array.reshape(*array.shape[:2], channels), converted


def load_mask_png(path: str, size) -> np.ndarray:
    """[H, W, 1] inpainting mask from an image file: white (grey >= 0.5) = observed, black =
    missing (`keras_ncsn.masks`). The file must already be `size` (an int or (H, W)); it is
    not resized, since that would move the edges. ConfigError otherwise."""
    from keras_ncsn.masks import mask_size

    grey = read_image(path, 1, "mask", ConfigError)[0][..., 0].astype(np.float32) / 255.0
    height, width = mask_size(size)
    if grey.shape != (height, width):
        raise ConfigError(f"mask image {path} is {grey.shape[1]}x{grey.shape[0]} (WxH), "
                          f"expected {width}x{height}")
    return (grey >= 0.5).astype(np.float32)[..., None]
