"""Sample pictures (grids, grayscale/RGB, evolution strips, GIFs) and reading image files."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from keras_ncsn.errors import ConfigError, DataError
from keras_ncsn.images import grid_array, read_image, save_gif, save_grid, save_strip

RNG = np.random.default_rng(0)


def test_grid_places_images_between_white_padding():
    images = np.zeros((5, 4, 3, 1), np.float32)
    images[4] = 1.0
    grid = grid_array(images, ncol=2, padding=1)
    assert grid.shape == (1 + 3 * 5, 1 + 2 * 4, 1) and grid.dtype == np.uint8
    assert grid[1:5, 1:4].max() == 0  # first image, top left
    assert grid[0].min() == 255 and grid[:, 0].min() == 255  # the frame
    assert grid[11:15, 5:8].min() == 255  # the unused last cell stays white
    assert grid_array(images).shape == (2 + 2 * 6, 2 + 3 * 5, 1)  # default: 3 columns


def test_values_are_clipped_and_rounded():
    grid = grid_array(np.array([[[[-0.5], [0.5], [2.0]]]], np.float32), padding=0)
    np.testing.assert_array_equal(grid[0, :, 0], [0, 128, 255])


@pytest.mark.parametrize("channels, mode", [(1, "L"), (3, "RGB")])
def test_save_grid_writes_png(tmp_path, channels, mode):
    path = save_grid(RNG.uniform(size=(6, 8, 8, channels)), str(tmp_path / "grid.png"), ncol=3)
    with Image.open(path) as image:
        assert (image.format, image.mode, image.size) == ("PNG", mode, (2 + 3 * 10, 2 + 2 * 10))
    assert [p.name for p in tmp_path.iterdir()] == ["grid.png"]


def test_strip_has_one_row_per_image_and_one_column_per_snapshot(tmp_path):
    snapshots = np.zeros((5, 3, 8, 8, 1), np.float32)
    snapshots[:, 1] = 1.0  # the second image is white at every time
    path = save_strip(snapshots, str(tmp_path / "strip.png"))
    picture = np.asarray(Image.open(path))
    assert picture.shape == (2 + 3 * 10, 2 + 5 * 10)
    assert picture[12:20, 2:50].min() == 255 and picture[2:10, 2:10].max() == 0


def test_gif_has_one_frame_per_snapshot(tmp_path):
    path = save_gif(RNG.uniform(size=(4, 2, 8, 8, 3)), str(tmp_path / "evolution.gif"))
    with Image.open(path) as image:
        assert image.format == "GIF" and image.n_frames == 4
        assert image.size == (2 + 2 * 10, 2 + 10)


def test_bad_shapes_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="C = 1 or 3"):
        save_grid(np.zeros((2, 8, 8, 2)), str(tmp_path / "x.png"))
    with pytest.raises(ValueError, match=r"\[S, N, H, W, C\]"):
        save_strip(np.zeros((2, 8, 8, 1)), str(tmp_path / "x.png"))


@pytest.mark.parametrize("mode, channels, converted", [
    ("L", 1, False), ("RGB", 3, False), ("RGBA", 1, True), ("LA", 3, True)])
def test_read_image_converts_to_the_channels_asked_for(tmp_path, mode, channels, converted):
    path = str(tmp_path / "picture.png")
    Image.new(mode, (5, 3)).save(path)
    array, changed = read_image(path, channels)
    assert array.shape == (3, 5, channels) and array.dtype == np.uint8
    assert changed is converted


def test_read_image_errors_are_one_line_and_name_the_file(tmp_path):
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png\n\nat all")
    with pytest.raises(DataError, match="no image file at .*missing.png"):
        read_image(str(tmp_path / "missing.png"), 1)
    with pytest.raises(DataError, match="cannot read image .*junk.png") as info:
        read_image(str(junk), 1)
    assert "\n" not in str(info.value)
    with pytest.raises(ConfigError, match="cannot read mask image .*junk.png"):
        read_image(str(junk), 1, "mask", ConfigError)
    with pytest.raises(ConfigError, match="no mask file at"):
        read_image(str(tmp_path / "missing.png"), 1, "mask", ConfigError)
