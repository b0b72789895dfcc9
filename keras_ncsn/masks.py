"""Inpainting masks (1 = observed pixel, 0 = pixel to fill) and the checks of the images and
masks that inpainting takes. NumPy only, so the samplers of every runtime share them; reading a
mask from an image file is `keras_ncsn.images.load_mask_png`."""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np

from keras_ncsn.errors import ConfigError

Size = Union[int, Sequence[int]]
HALF_SIDES = ("top", "bottom", "left", "right")


def check_images(images) -> np.ndarray:
    """Images to inpaint as float32 [B, H, W, C], or ConfigError unless finite and in [0, 1]."""
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4:
        raise ConfigError(f"images must be [batch, height, width, channels], "
                          f"got shape {array.shape}")
    if not np.all(np.isfinite(array)) or array.min() < 0 or array.max() > 1:
        raise ConfigError("images must be finite and in [0, 1]")
    return array


def broadcast_mask(mask, image_shape: Sequence[int]) -> np.ndarray:
    """A binary mask (1 = observed) broadcast to `image_shape` [B, H, W, C] as float32.

    Accepts [B,H,W,C], [B,H,W,1], [H,W,C], [H,W,1] or [H,W]; anything else, or values
    other than 0 and 1, is a ConfigError.
    """
    array = np.asarray(mask)
    image_shape = tuple(int(d) for d in image_shape)
    if array.ndim == 2:
        array = array[..., None]
    if array.ndim == 3:
        array = array[None]
    try:
        if array.ndim != 4 or np.broadcast_shapes(array.shape, image_shape) != image_shape:
            raise ValueError
    except ValueError:
        raise ConfigError(f"mask of shape {np.shape(mask)} does not fit images of shape "
                          f"{image_shape}; use [B,H,W,C], [B,H,W,1], [H,W,C], [H,W,1] or "
                          f"[H,W]") from None
    if not np.all((array == 0) | (array == 1)):
        raise ConfigError("mask must be binary: 1 = observed pixel, 0 = pixel to inpaint")
    return np.broadcast_to(array.astype(np.float32), image_shape).copy()


def mask_size(size: Size) -> tuple[int, int]:
    height, width = (size, size) if np.isscalar(size) else size
    if int(height) < 1 or int(width) < 1:
        raise ConfigError(f"mask size must be positive, got {size}")
    return int(height), int(width)


def half_mask(size: Size, side: str) -> np.ndarray:
    """[H, W, 1] mask whose `side` half ("top", "bottom", "left", "right") is MISSING (0).

    E.g. half_mask(28, "bottom") keeps the top half observed and inpaints the bottom.
    For odd sizes the missing half is the smaller one (size // 2 rows or columns).
    """
    if side not in HALF_SIDES:
        raise ConfigError(f"side must be one of {', '.join(HALF_SIDES)}, got {side!r}")
    height, width = mask_size(size)
    mask = np.ones((height, width, 1), np.float32)
    rows, cols = height // 2, width // 2
    region = {"top": np.s_[:rows], "bottom": np.s_[height - rows:],
              "left": np.s_[:, :cols], "right": np.s_[:, width - cols:]}[side]
    mask[region] = 0
    return mask


def center_square_mask(size: Size, square: int) -> np.ndarray:
    """[H, W, 1] mask with a centred `square` x `square` block MISSING (0)."""
    height, width = mask_size(size)
    if not 1 <= square <= min(height, width):
        raise ConfigError(f"square must be in [1, {min(height, width)}], got {square}")
    top, left = (height - square) // 2, (width - square) // 2
    mask = np.ones((height, width, 1), np.float32)
    mask[top:top + square, left:left + square] = 0
    return mask


def random_pixel_mask(size: Size, fraction_observed: float, seed: int = 0) -> np.ndarray:
    """[H, W, 1] mask observing exactly round(fraction * H * W) pixels chosen by `seed`."""
    if not 0 <= fraction_observed <= 1:
        raise ConfigError(f"fraction_observed must be in [0, 1], got {fraction_observed}")
    height, width = mask_size(size)
    count = int(round(fraction_observed * height * width))
    flat = np.zeros(height * width, np.float32)
    flat[np.random.default_rng(seed).permutation(height * width)[:count]] = 1
    return flat.reshape(height, width, 1)
