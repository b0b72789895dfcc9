"""Tests of keras_ncsn.data: sources, validation errors and the tf.data pipelines."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from keras_ncsn.config import DataConfig
from keras_ncsn.data import EMBEDDED_PATH, load_images, make_datasets, read_idx, resolve_source
from keras_ncsn.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
MNIST = SHARED / "mnist"


def files(path: Path | str, **kwargs) -> DataConfig:
    return DataConfig(dataset="files", data_dir=str(path), **kwargs)


def write_idx(path: Path, array: np.ndarray) -> None:
    header = bytes([0, 0, 8, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def pattern(i: int, size: int = 8) -> np.ndarray:
    """A distinct, left-right asymmetric uint8 image per i."""
    return ((np.arange(size * size).reshape(size, size) * 3 + 17 * i) % 256).astype(np.uint8)


def save_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    (image.convert(mode) if mode else image).save(path)


@pytest.fixture(scope="module")
def embedded() -> dict[str, np.ndarray]:
    with np.load(EMBEDDED_PATH) as data:
        return {k: data[k] for k in ("x_train", "x_test")}


# --- sources ---------------------------------------------------------------------------------

def test_resolve_source(tmp_path):
    assert resolve_source(DataConfig()) == "embedded"
    assert resolve_source(DataConfig(dataset="mnist")) == "tfds"
    np.save(tmp_path / "a.npy", np.zeros((2, 28, 28), np.uint8))
    assert resolve_source(files(tmp_path / "a.npy")) == "array"
    idx = tmp_path / "idx"
    idx.mkdir()
    write_idx(idx / "train-images.idx3-ubyte", np.zeros((2, 28, 28)))
    assert resolve_source(files(idx)) == "idx"
    save_png(tmp_path / "png" / "a" / "b" / "x.png", pattern(0))
    assert resolve_source(files(tmp_path / "png")) == "folder"
    # A tfds data_dir whose extracted downloads hold JPEGs is still tfds, not a folder.
    tfds_dir = tmp_path / "tfds"
    (tfds_dir / "celeb_a" / "2.1.0").mkdir(parents=True)
    (tfds_dir / "celeb_a" / "2.1.0" / "dataset_info.json").write_text("{}")
    save_png(tfds_dir / "downloads" / "extracted" / "img.png", pattern(0))
    assert resolve_source(DataConfig(dataset="celeb_a", data_dir=str(tfds_dir))) == "tfds"
    assert resolve_source(files(tfds_dir)) == "folder"


@pytest.mark.parametrize("data_dir, words", [
    ("{p}/missing", ["{p}/missing", "does not exist"]),
    ("{p}", ["{p}", "holds no usable data", "train-images-idx3-ubyte"]),
    ("", ["data.dataset=files", "--data-dir"]),
    ("{p}/notes.txt", ["{p}/notes.txt", ".npz or .npy"]),
])
def test_resolve_source_errors(tmp_path, data_dir, words):
    (tmp_path / "notes.txt").write_text("not data")
    with pytest.raises(DataError) as info:
        resolve_source(files(data_dir.format(p=tmp_path)))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word.format(p=tmp_path) in message


def test_embedded_splits_are_the_asset_arrays(embedded):
    train, test = load_images(DataConfig()), load_images(DataConfig(), "eval")
    assert train.dtype == np.uint8 and train.shape == (10000, 28, 28, 1)
    assert test.shape == (1000, 28, 28, 1)
    np.testing.assert_array_equal(train[..., 0], embedded["x_train"])
    np.testing.assert_array_equal(test[..., 0], embedded["x_test"])
    assert train.max() == 255 and train.min() == 0
    caps = DataConfig(max_train_images=100, eval_images=10)
    assert load_images(caps).shape[0] == 100 and load_images(caps, "eval").shape[0] == 10
    np.testing.assert_array_equal(load_images(DataConfig(), limit=5)[..., 0],
                                  embedded["x_train"][:5])


def test_embedded_wrong_size_or_channels():
    with pytest.raises(DataError, match="data.image_size=28"):
        load_images(DataConfig(image_size=32))
    with pytest.raises(DataError, match="data.channels=1"):
        load_images(DataConfig(channels=3, image_size=28))


@pytest.fixture(scope="module")
def mnist_gz() -> Path:
    if not (MNIST / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"shared MNIST data not found at {MNIST}")
    return MNIST


def test_idx_gz_matches_known_mnist_facts(mnist_gz):
    config = files(mnist_gz, eval_images=10000)
    train, test = load_images(config), load_images(config, "eval")
    assert train.shape == (60000, 28, 28, 1) and test.shape == (10000, 28, 28, 1)
    assert train.mean() == pytest.approx(33.318, abs=0.01)
    assert read_idx(str(mnist_gz / "train-labels-idx1-ubyte.gz"))[:3].tolist() == [5, 0, 4]
    assert read_idx(str(mnist_gz / "t10k-labels-idx1-ubyte.gz"))[0] == 7


def test_idx_raw_copy_equals_gz(mnist_gz, tmp_path):
    for gz, raw in [("train-images-idx3-ubyte.gz", "train-images.idx3-ubyte"),
                    ("t10k-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte")]:
        with gzip.open(mnist_gz / gz) as src, open(tmp_path / raw, "wb") as dst:
            shutil.copyfileobj(src, dst)
    assert resolve_source(files(tmp_path)) == "idx"
    raw = load_images(files(tmp_path), "eval")
    np.testing.assert_array_equal(raw, load_images(files(mnist_gz), "eval"))
    np.testing.assert_array_equal(read_idx(str(tmp_path / "train-images.idx3-ubyte"))[:50],
                                  load_images(files(mnist_gz), limit=50)[..., 0])


def test_idx_without_test_file_holds_out_train(tmp_path):
    images = np.stack([pattern(i, 28) for i in range(20)])
    write_idx(tmp_path / "train-images-idx3-ubyte", images)
    config = files(tmp_path, eval_fraction=0.25)
    train, test = load_images(config)[..., 0], load_images(config, "eval")[..., 0]
    assert len(train) == 15 and len(test) == 5
    rows = {a.tobytes() for a in images}
    assert {a.tobytes() for a in train} | {a.tobytes() for a in test} == rows
    assert not {a.tobytes() for a in train} & {a.tobytes() for a in test}
    np.testing.assert_array_equal(load_images(config, "eval"), load_images(config, "eval"))


@pytest.mark.parametrize("content, word", [
    (bytes([0, 0, 9, 3]) + struct.pack(">3I", 1, 2, 2) + bytes(4), "magic number 0x00000903"),
    (bytes([0, 0, 8, 3]) + struct.pack(">3I", 2, 28, 28) + bytes(100), "truncated"),
    (bytes([0, 0, 8, 3, 0, 0]), "truncated"),
    (b"", "magic"),
])
def test_read_idx_errors(tmp_path, content, word):
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=word) as info:
        read_idx(str(path))
    assert str(path) in str(info.value)
    gz = tmp_path / "x.gz"
    gz.write_bytes(gzip.compress(content)[:-6])  # a cut-off gzip stream
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(str(gz))


def test_idx_labels_file_is_wrong_rank(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte", np.arange(10))
    with pytest.raises(DataError, match=r"shape \(10,\)"):
        load_images(files(tmp_path))


# --- image folders ---------------------------------------------------------------------------

def test_png_folder_round_trip(tmp_path):
    images = [pattern(i) for i in range(6)]
    for i, image in enumerate(images):
        save_png(tmp_path / f"class{i % 2}" / f"{i}.png", image)
    config = files(tmp_path, image_size=8, eval_fraction=0.34)
    train, test = load_images(config), load_images(config, "eval")
    assert train.shape == (4, 8, 8, 1) and test.shape == (2, 8, 8, 1)
    order = [0, 2, 4, 1, 3, 5]  # sorted walk: class0/{0,2,4}, class1/{1,3,5}
    expected = [images[i].tobytes() for i in order]
    got_train = [a[..., 0].tobytes() for a in train]
    assert sorted(got_train + [a[..., 0].tobytes() for a in test]) == sorted(expected)
    assert got_train == [e for e in expected if e in got_train]  # file order kept


def test_png_modes_are_converted(tmp_path):
    save_png(tmp_path / "rgb.png", np.stack([pattern(1)] * 3, -1))
    save_png(tmp_path / "rgba.png", np.stack([pattern(2)] * 4, -1))
    save_png(tmp_path / "gray.png", pattern(3))
    gray = load_images(files(tmp_path, image_size=8, eval_fraction=0.3))
    rgb = load_images(files(tmp_path, image_size=8, channels=3, eval_fraction=0.3))
    assert gray.shape == (2, 8, 8, 1) and rgb.shape == (2, 8, 8, 3)
    np.testing.assert_array_equal(rgb[..., 0], gray[..., 0])


def test_folder_errors(tmp_path):
    save_png(tmp_path / "a.png", pattern(0))
    save_png(tmp_path / "b.png", pattern(1, size=10))
    with pytest.raises(DataError, match="differ in size") as info:
        load_images(files(tmp_path, image_size=8))
    assert "a.png is 8x8" in str(info.value) and "b.png is 10x10" in str(info.value)
    (tmp_path / "b.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image .*b.png"):
        load_images(files(tmp_path, image_size=8))
    (tmp_path / "b.png").unlink()
    with pytest.raises(DataError, match="too few"):
        load_images(files(tmp_path, image_size=8))


def test_folder_center_crop_and_resize(tmp_path):
    for i in range(4):
        save_png(tmp_path / f"{i}.png", np.full((12, 10), 40 * i, np.uint8))
    with pytest.raises(DataError, match="12x10 .*center_crop=10"):
        load_images(files(tmp_path, image_size=8))
    images = load_images(files(tmp_path, image_size=4, center_crop=8, eval_fraction=0.25))
    assert images.shape == (3, 4, 4, 1)
    assert set(np.unique(images)) <= {0, 40, 80, 120}
    with pytest.raises(DataError, match="center_crop=12 is larger"):
        load_images(files(tmp_path, image_size=4, center_crop=12))


# --- arrays ----------------------------------------------------------------------------------

def test_npz_keys_and_test_split(tmp_path):
    x, x_test = np.stack([pattern(i) for i in range(10)]), np.stack([pattern(50), pattern(51)])
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(10), x_test=x_test)
    config = files(tmp_path / "a.npz", image_size=8)
    np.testing.assert_array_equal(load_images(config)[..., 0], x)
    np.testing.assert_array_equal(load_images(config, "eval")[..., 0], x_test)
    np.savez(tmp_path / "b.npz", images=x[..., None], labels=np.arange(10))
    assert load_images(files(tmp_path / "b.npz", image_size=8)).shape == (9, 8, 8, 1)
    np.savez(tmp_path / "c.npz", whatever=x)
    assert load_images(files(tmp_path / "c.npz", image_size=8), limit=3).shape == (3, 8, 8, 1)


def test_npy_float_and_int_arrays(tmp_path):
    x = np.stack([pattern(i) for i in range(10)])
    np.save(tmp_path / "f.npy", np.clip(x - 0.3, 0, None) / 255)  # rounds back to x
    np.save(tmp_path / "i.npy", x.astype(np.int16))
    loaded = [load_images(files(tmp_path / name, image_size=8, eval_fraction=0.1))
              for name in ("f.npy", "i.npy")]
    for images in loaded:
        assert images.dtype == np.uint8 and len(images) == 9
        rows = {a.tobytes() for a in x}
        assert all(a[..., 0].tobytes() in rows for a in images)
    np.testing.assert_array_equal(*loaded)


@pytest.mark.parametrize("array, config, words", [
    (np.zeros((4, 8, 8, 3), np.uint8), {}, ["are 8x8x3", "add --set data.channels=3"]),
    (np.zeros((4, 8, 8), np.uint8), {"channels": 3}, ["are 8x8x1", "add --set data.channels=1"]),
    (np.zeros((4, 3, 8, 8), np.uint8), {"channels": 3}, ["8 channels", "channels-last"]),
    (np.zeros((8, 8), np.uint8), {}, ["shape (8, 8)"]),
    (np.zeros((0, 8, 8), np.uint8), {}, ["no images"]),
    (np.full((4, 8, 8), np.nan, np.float32), {}, ["NaN"]),
    (np.full((4, 8, 8), np.inf), {}, ["NaN or infinite"]),
    (np.full((4, 8, 8), 2.0), {}, ["floats in [2, 2]"]),
    (np.full((4, 8, 8), 300, np.int32), {}, ["integers in [300, 300]"]),
    (np.full((4, 8, 8), -1, np.int8), {}, ["0..255"]),
    (np.full((4, 8, 8), "a"), {}, ["<U1"]),
    (np.zeros((4, 6, 6), np.uint8), {}, ["6x6", "data.image_size=6", "data.center_crop=6"]),
    (np.zeros((4, 6, 6, 3), np.uint8), {},
     ["are 6x6x3 but data.image_size=8, data.channels=1: add --set data.image_size=6 "
      "--set data.channels=3"]),
])
def test_array_errors(tmp_path, array, config, words):
    np.save(tmp_path / "x.npy", array)
    with pytest.raises(DataError) as info:
        load_images(files(tmp_path / "x.npy", image_size=8, **config))
    for word in [str(tmp_path / "x.npy"), *words]:
        assert word in str(info.value)


def test_npz_errors(tmp_path):
    np.savez(tmp_path / "two.npz", a=np.zeros((2, 8, 8)), b=np.zeros(2))
    with pytest.raises(DataError, match="two.npz has no image array.*found a, b"):
        load_images(files(tmp_path / "two.npz", image_size=8))
    np.savez(tmp_path / "bad_test.npz", x=np.zeros((2, 8, 8), np.uint8), x_test=np.zeros((2, 9, 9)))
    with pytest.raises(DataError, match=r"bad_test.npz \[x_test\] are 9x9"):
        load_images(files(tmp_path / "bad_test.npz", image_size=8))
    (tmp_path / "corrupt.npz").write_bytes(b"PK\x03\x04 definitely not a zip")
    with pytest.raises(DataError, match="cannot read array file .*corrupt.npz"):
        load_images(files(tmp_path / "corrupt.npz", image_size=8))


# --- tensorflow-datasets (mocked, no network) ------------------------------------------------

def test_tfds_mock_mnist(tmp_path):
    tfds = pytest.importorskip("tensorflow_datasets")
    with tfds.testing.mock_data(num_examples=12):
        config = DataConfig(dataset="mnist", data_dir=str(tmp_path))
        assert resolve_source(config) == "tfds"
        train, test = load_images(config), load_images(config, "eval")
        assert train.shape == (12, 28, 28, 1) and train.dtype == np.uint8 and test.shape[0] == 12
        assert load_images(DataConfig(dataset="mnist", data_dir=str(tmp_path), image_size=16,
                                      center_crop=28), limit=3).shape == (3, 16, 16, 1)
        with pytest.raises(DataError, match="data.image_size=28 .*center_crop=28"):
            load_images(DataConfig(dataset="mnist", data_dir=str(tmp_path), image_size=16))
        with pytest.raises(DataError, match="data.channels=1"):
            load_images(DataConfig(dataset="mnist", data_dir=str(tmp_path), channels=3))
        train_ds, eval_ds = make_datasets(config, batch_size=5, seed=0)
        assert next(iter(train_ds)).shape == (5, 28, 28, 1)
        assert [b.shape[0] for b in eval_ds] == [5, 5, 2]


def test_tfds_errors(tmp_path):
    pytest.importorskip("tensorflow_datasets")
    with pytest.raises(DataError, match="not available offline.*data.download=true") as info:
        load_images(DataConfig(dataset="mnist", data_dir=str(tmp_path)))
    assert str(tmp_path) in str(info.value)
    with pytest.raises(DataError, match="unknown dataset 'no_such_dataset'"):
        load_images(DataConfig(dataset="no_such_dataset", data_dir=str(tmp_path)))


# --- pipelines -------------------------------------------------------------------------------

SMALL = dict(max_train_images=64, eval_images=50)


def first(dataset: tf.data.Dataset, n: int = 2) -> np.ndarray:
    return np.concatenate([b.numpy() for b in dataset.take(n)])


def test_train_batches_shape_range_and_dequantisation():
    plain_config = DataConfig(dequantize=False, **SMALL)
    batch = first(make_datasets(DataConfig(**SMALL), 32, seed=3)[0], 4)  # 2 epochs
    plain = first(make_datasets(plain_config, 32, seed=3)[0], 4)
    assert batch.shape == (128, 28, 28, 1) and batch.dtype == np.float32
    assert batch.min() >= 0 and batch.max() < 1
    np.testing.assert_array_equal(plain * 255, np.round(plain * 255))  # multiples of 1/255
    assert not np.allclose(batch * 255, np.round(batch * 255), atol=1e-3)
    noise = batch - plain * 255 / 256  # the same images (same shuffle), plus U(0, 1)/256
    assert noise.min() >= 0 and noise.max() < 1 / 256 + 1e-7 and noise.std() > 1e-3
    known = {a.tobytes() for a in load_images(plain_config)}
    assert all(np.round(a * 255).astype(np.uint8).tobytes() in known for a in plain)


def test_train_determinism_by_seed():
    config = DataConfig(random_flip=True, **SMALL)
    a = first(make_datasets(config, 16, seed=7)[0])
    np.testing.assert_array_equal(a, first(make_datasets(config, 16, seed=7)[0]))
    assert not np.array_equal(a, first(make_datasets(config, 16, seed=8)[0]))
    plain = DataConfig(dequantize=False, **SMALL)  # only the shuffle order depends on the seed
    b = first(make_datasets(plain, 16, seed=7)[0])
    np.testing.assert_array_equal(b, first(make_datasets(plain, 16, seed=7)[0]))
    assert not np.array_equal(b, first(make_datasets(plain, 16, seed=8)[0]))


def test_random_flip_mirrors_some_images():
    config = DataConfig(random_flip=True, dequantize=False, **SMALL)
    images = load_images(config)
    originals = {a.tobytes() for a in images}
    mirrored = {a[:, ::-1].tobytes() for a in images}
    batch = np.round(first(make_datasets(config, 32, seed=0)[0]) * 255).astype(np.uint8)
    kinds = [(a.tobytes() in originals, a.tobytes() in mirrored) for a in batch]
    assert all(o or m for o, m in kinds)
    assert any(m and not o for o, m in kinds) and any(o and not m for o, m in kinds)


def test_eval_is_ordered_unflipped_finite_and_repeatable():
    config = DataConfig(random_flip=True, **SMALL)
    eval_ds = make_datasets(config, 32, seed=1)[1]
    passes = [[b.numpy() for b in eval_ds] for _ in range(2)]
    assert [len(b) for b in passes[0]] == [32, 18]
    for x, y in zip(*passes):
        np.testing.assert_array_equal(x, y)
    other_seed = np.concatenate([b.numpy() for b in make_datasets(config, 32, seed=2)[1]])
    batch = np.concatenate(passes[0])
    np.testing.assert_array_equal(batch, other_seed)
    pixels = load_images(config, "eval").astype(np.float32)
    noise = batch - pixels / 256
    assert noise.min() >= 0 and noise.max() < 1 / 256 + 1e-7
