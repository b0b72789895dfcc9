"""scripts/sample.py and scripts/inpaint.py on a tiny run trained once, and fit.py's grid."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from conftest import TINY, load_script, train_run
from keras_ncsn.cli import run_main
from keras_ncsn.data import load_images
from keras_ncsn.config import load_config
from keras_ncsn.masks import random_pixel_mask

sample, inpaint = load_script("sample"), load_script("inpaint")
GRID_PIXELS = 2 + 2 * (28 + 2)  # 4 images of 28x28 in 2 columns, 2-pixel padding


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> str:
    return train_run(tmp_path_factory, TINY)


@pytest.fixture(scope="module")
def first_samples(run, tmp_path_factory) -> str:
    out = str(tmp_path_factory.mktemp("samples"))
    assert sample.main([run, "--out", out, "--no-progress"]) == 0
    return out


def _images(folder: str) -> np.ndarray:
    with np.load(os.path.join(folder, "samples.npz")) as saved:
        return saved["images"]


def test_fit_ends_with_a_sample_grid(run):
    assert os.listdir(os.path.join(run, "samples")) == ["grid-00000002.png"]
    with Image.open(os.path.join(run, "samples", "grid-00000002.png")) as image:
        assert image.size == (GRID_PIXELS, GRID_PIXELS)


def test_sample_writes_grid_and_npz(first_samples):
    with Image.open(os.path.join(first_samples, "grid.png")) as image:
        assert (image.format, image.mode, image.size) == ("PNG", "L", (GRID_PIXELS, GRID_PIXELS))
    with np.load(os.path.join(first_samples, "samples.npz")) as saved:
        images = saved["images"]
        assert int(saved["seed"]) == 0 and int(saved["step"]) == 2
        assert json.loads(str(saved["sample_config"]))["steps_per_level"] == 2
    assert images.shape == (4, 28, 28, 1) and images.dtype == np.float32
    assert images.min() >= 0 and images.max() <= 1


def test_same_seed_same_samples(run, first_samples, tmp_path, capsys):
    assert sample.main([run, "--out", str(tmp_path), "--seed", "0"]) == 0
    assert "3/3" in capsys.readouterr().err  # the progress bar over noise levels
    np.testing.assert_array_equal(_images(str(tmp_path)), _images(first_samples))


def test_other_seed_other_samples_and_evolution_strip(run, first_samples, tmp_path):
    code = sample.main([run, "--out", str(tmp_path), "--seed", "1", "--num-images", "3",
                        "--strip", "2", "--gif", "--no-progress"])
    assert code == 0
    images = _images(str(tmp_path))
    assert images.shape == (3, 28, 28, 1)
    assert not np.array_equal(images, _images(first_samples)[:3])
    # 6 Langevin steps every 2 -> 3 snapshots, plus the initial noise and the denoised result
    with Image.open(tmp_path / "strip.png") as image:
        assert image.size == (2 + 5 * 30, 2 + 3 * 30)
    with Image.open(tmp_path / "evolution.gif") as image:
        assert image.n_frames == 5


def _observed_pixels_kept(folder: str, mask: np.ndarray) -> np.ndarray:
    with np.load(os.path.join(folder, "inpainting.npz")) as saved:
        originals, inpainted = saved["originals"], saved["inpainted"]
        np.testing.assert_array_equal(saved["mask"], mask)
    observed = np.broadcast_to(mask == 1, inpainted.shape)
    expected = np.broadcast_to(originals[:, None], inpainted.shape)
    np.testing.assert_array_equal(inpainted[observed], expected[observed])
    assert not np.array_equal(inpainted[~observed], expected[~observed])
    return originals


def test_inpaint_half_mask_keeps_observed_pixels(run, tmp_path):
    code = inpaint.main([run, "--mask", "bottom", "--num-images", "2", "--draws", "3",
                         "--out", str(tmp_path), "--no-progress"])
    assert code == 0
    mask = np.ones((28, 28, 1), np.float32)
    mask[14:] = 0
    originals = _observed_pixels_kept(str(tmp_path), mask)
    expected = load_images(load_config(run).data, "eval", 2).astype(np.float32) / 255
    np.testing.assert_array_equal(originals, expected)
    with Image.open(tmp_path / "inpainting.png") as image:  # occluded, 3 draws, original
        assert image.size == (2 + 5 * 30, 2 + 2 * 30)


def test_inpaint_png_mask_and_image_files(run, tmp_path):
    mask = random_pixel_mask(28, 0.3, seed=4)
    mask_path = tmp_path / "mask.png"
    Image.fromarray((mask[..., 0] * 255).astype(np.uint8)).save(mask_path)
    digits = load_images(load_config(run).data, "train", 2)
    files = []
    for i, digit in enumerate(digits):
        files.append(str(tmp_path / f"digit{i}.png"))
        Image.fromarray(digit[..., 0]).convert("RGB").save(files[-1])  # converted back to grey
    code = inpaint.main([run, "--mask", str(mask_path), "--images", *files, "--draws", "1",
                         "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 0
    originals = _observed_pixels_kept(str(tmp_path / "out"), mask)
    np.testing.assert_array_equal(originals, digits.astype(np.float32) / 255)


@pytest.fixture(scope="module")
def run_without_checkpoint(run, tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("empty") / "run"
    folder.mkdir()
    shutil.copy(os.path.join(run, "config.json"), folder)
    return str(folder)


@pytest.mark.parametrize("script, args, words", [
    ("sample", ["{missing}"], "does not exist"),
    ("sample", ["{empty}"], "no checkpoint"),
    ("sample", ["{run}", "--set", "model.ngf=3"], "only sample settings"),
    ("sample", ["{run}", "--strip", "0"], "--strip K needs K >= 1"),
    ("inpaint", ["{missing}", "--mask", "bottom"], "does not exist"),
    ("inpaint", ["{empty}", "--mask", "bottom"], "no checkpoint"),
    ("inpaint", ["{run}", "--mask", "botom"], "unknown mask 'botom'"),
    ("inpaint", ["{run}", "--mask", "{run}/no_such_mask.png"], "no mask file"),
    ("inpaint", ["{run}", "--mask", "top", "--images", "{small}"], "takes 28x28 images"),
])
def test_bad_input_gives_one_line_error(run, run_without_checkpoint, tmp_path, capsys,
                                        script, args, words):
    small = tmp_path / "small.png"
    Image.new("L", (20, 20)).save(small)
    paths = {"run": run, "empty": run_without_checkpoint, "small": str(small),
             "missing": str(tmp_path / "no_such_run")}
    module = {"sample": sample, "inpaint": inpaint}[script]
    code = run_main(module.main, [a.format(**paths) for a in args] + ["--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("error: ") and words in err and err.count("\n") == 1
