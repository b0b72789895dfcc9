"""Training images: find the source, read and validate it, build the tf.data pipelines.

Every source (see `resolve_source`) becomes uint8 images [N, H, W, C]: the MNIST subset
shipped in the package, an .npz/.npy array file, a folder of MNIST IDX files, a folder of
image files, or a tensorflow-datasets (tfds) dataset. `make_datasets` turns them into
float32 batches in [0, 1] with the NCSN paper's uniform dequantisation. All randomness is
stateless, keyed by (seed, element index), so a run's inputs repeat exactly for its seed.
Bad input raises `DataError` with a one-line message naming the file and what was expected.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import math
import os
import struct
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from keras_ncsn.config import DataConfig
from keras_ncsn.errors import DataError, ImageShapeError
from keras_ncsn.images import read_image

SPLITS = ("train", "eval")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
EMBEDDED_PATH = Path(__file__).resolve().parent / "assets" / "mnist_subset.npz"
# Keys tried in order for the images of an .npz file; an .npz with a single array needs none.
TRAIN_KEYS = ("x", "images", "x_train")
EVAL_KEYS = ("x_test",)
# Eval inputs depend on the data only, not on the run's seed, so eval losses compare across runs.
EVAL_SEED = 0
# Seeds the held-out eval subset of sources without a test split.
HOLD_OUT_SEED = 0
_AUTOTUNE = tf.data.AUTOTUNE
Log = Callable[[str], None]


@contextlib.contextmanager
def _reading(path: str, what: str) -> Iterator[None]:
    """Turns I/O and format errors raised while reading `path` into one-line DataErrors."""
    try:
        yield
    except DataError:
        raise
    except (OSError, EOFError, ValueError, SyntaxError, zipfile.BadZipFile, zlib.error) as e:
        raise DataError(f"cannot read {what} {path}: {' '.join(str(e).split())}") from None


def read_idx(path: str) -> np.ndarray:
    """Reads an MNIST-format IDX file (raw or .gz) of unsigned bytes, checking its header.

    The magic number is 0x0000 08 NN: 0x08 is the uint8 type, NN the number of dimensions
    (0x00000803 for image files, 0x00000801 for label files); then NN big-endian sizes.
    """
    with _reading(path, "IDX file"):
        with (gzip.open if path.endswith(".gz") else open)(path, "rb") as f:
            data = f.read()
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or data[3] == 0:
        magic = int.from_bytes(data[:4].ljust(4, b"\x00"), "big")
        raise DataError(f"{path} is not an unsigned-byte IDX file: magic number 0x{magic:08x}, "
                        "expected 0x00000803 (images) or 0x00000801 (labels)")
    header = 4 + 4 * data[3]
    if len(data) < header:
        raise DataError(f"IDX file {path} is truncated inside its header")
    shape = struct.unpack(f">{data[3]}I", data[4:header])
    if len(data) - header != math.prod(shape):
        raise DataError(f"IDX file {path} holds {len(data) - header} bytes of data but its header "
                        f"({'x'.join(map(str, shape))}) needs {math.prod(shape)}: "
                        "the file is truncated or corrupt")
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _idx_file(folder: str, prefix: str) -> str | None:
    """The `prefix` ("train" or "t10k") IDX image file in `folder`, under any usual name."""
    for name in (f"{prefix}-images-idx3-ubyte", f"{prefix}-images.idx3-ubyte"):
        for path in (os.path.join(folder, name), os.path.join(folder, name + ".gz")):
            if os.path.isfile(path):
                return path
    return None


def _image_files(folder: str) -> list[str]:
    """Image files under `folder`, recursively, in a stable order; hidden entries skipped."""
    found = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [os.path.join(root, n) for n in sorted(names)
                  if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
    return found


def _holds_tfds_data(folder: str, name: str) -> bool:
    """Whether `folder` is a tfds data_dir with `name` prepared (data_dir/name/.../info json).

    Checked before looking for image files because a tfds data_dir may also hold the
    extracted downloads (CelebA's JPEGs), which must not be read as a folder of images.
    """
    base = Path(folder) / name.split(":")[0].split("/")[0]
    return base.is_dir() and any(base.rglob("dataset_info.json"))


def resolve_source(config: DataConfig) -> str:
    """Which source the config reads: "embedded", "array", "idx", "folder" or "tfds".

    Also checks that `data_dir` exists and, for data.dataset=files, holds usable data, and
    that data.download is asked for tensorflow-datasets data only (nothing else downloads).
    """
    source = _find_source(config)
    if config.download and source != "tfds":
        raise DataError(f"data.download=true fetches tensorflow-datasets data, but "
                        f"{describe_source(config, source)} is read as it is: drop "
                        "data.download")
    return source


def _find_source(config: DataConfig) -> str:
    if config.dataset == "embedded":
        return "embedded"
    path = config.data_dir
    if path and not os.path.exists(path):
        raise DataError(f"data directory {path} does not exist")
    if path and os.path.isfile(path):
        if path.lower().endswith((".npz", ".npy")):
            return "array"
        raise DataError(f"data file {path} is not an .npz or .npy array: data_dir must be one, "
                        "or a folder of IDX files, images or tensorflow-datasets data")
    if path and _idx_file(path, "train"):
        return "idx"
    if path and config.dataset != "files" and _holds_tfds_data(path, config.dataset):
        return "tfds"
    if path and _image_files(path):
        return "folder"
    if config.dataset == "files":
        if not path:
            raise DataError("data.dataset=files needs --data-dir: a folder of MNIST IDX files or "
                            "images, or an .npz/.npy file")
        raise DataError(f"data directory {path} holds no usable data: expected MNIST IDX files "
                        f"(train-images-idx3-ubyte[.gz]) or images ({', '.join(IMAGE_EXTENSIONS)})")
    return "tfds"


def describe_source(config: DataConfig, source: str) -> str:
    """The source in words, e.g. "IDX files in ../shared/data/mnist"."""
    if source == "embedded":
        return f"the MNIST subset shipped in keras_ncsn/assets/{EMBEDDED_PATH.name}"
    if source == "tfds":
        return f"tensorflow-datasets {config.dataset}" + (
            f" in {config.data_dir}" if config.data_dir else "")
    kind = {"array": "array file", "idx": "IDX files in", "folder": "image files in"}[source]
    return f"{kind} {config.data_dir}"


def _check_shape(height: int | None, width: int | None, channels: int | None,
                 config: DataConfig, where: str) -> None:
    """Images of `where` must have the config's channels and, unless data.center_crop
    resizes them, its size: one error names every --set that makes the config fit."""
    if channels is not None and channels not in (1, 3):
        raise DataError(f"images in {where} have {channels} channels (last axis): images "
                        "must be channels-last [N, H, W, C] with C = 1 or 3")
    if height is None or width is None:
        return
    if config.center_crop:
        if config.center_crop > min(height, width):
            raise DataError(f"data.center_crop={config.center_crop} is larger than the "
                            f"{height}x{width} images in {where}")
    elif height != width:
        raise DataError(f"images in {where} are {height}x{width} but data.image_size is "
                        f"{config.image_size}: crop them square with --set "
                        f"data.center_crop={min(height, width)}")
    resized = not config.center_crop and height != config.image_size
    fixes = [f"--set data.image_size={height}"] if resized else []
    if channels is not None and channels != config.channels:
        fixes.append(f"--set data.channels={channels}")
    if fixes:
        resize = (f" (or --set data.center_crop={height} to resize them to "
                  f"{config.image_size}x{config.image_size})" if resized else "")
        raise ImageShapeError(f"images in {where} are {height}x{width}x{channels} but "
                              f"data.image_size={config.image_size}, data.channels="
                              f"{config.channels}: add {' '.join(fixes)}{resize}",
                              where, (height, width, channels))


def _as_images(array: np.ndarray, config: DataConfig, where: str) -> np.ndarray:
    """Validates an in-memory array and returns it as uint8 [N, H, W, C] of the right size.

    Floats must lie in [0, 1] (scaled by 255 and rounded), integers in 0..255. A grayscale
    [N, H, W] array gets a channel axis; any other shape mismatch is an error (`_check_shape`),
    because a wrong last axis usually means a channels-first array, not another colour mode.
    """
    if array.ndim == 3:
        array = array[..., None]
    if array.ndim != 4:
        raise DataError(f"{where} holds an array of shape {array.shape}; expected images "
                        "[N, H, W] or [N, H, W, C]")
    if array.shape[0] == 0:
        raise DataError(f"{where} holds no images (shape {array.shape})")
    _check_shape(*array.shape[1:], config, where)
    if array.dtype.kind == "f":
        if not np.isfinite(array).all():
            raise DataError(f"{where} contains NaN or infinite values")
        if array.min() < 0 or array.max() > 1:
            raise DataError(f"{where} holds floats in [{array.min():g}, {array.max():g}]; "
                            "float images must be in [0, 1] (or uint8 in 0..255)")
        array = np.round(array * 255)
    elif array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise DataError(f"{where} holds integers in [{array.min()}, {array.max()}]; "
                            "expected pixel values 0..255")
    else:
        raise DataError(f"{where} holds {array.dtype} values; expected uint8 images "
                        "(or floats in [0, 1])")
    return array.astype(np.uint8)


def _read_arrays(path: str, config: DataConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Train images and, if the file has them (key x_test), eval images of an .npz/.npy."""
    with _reading(path, "array file"):
        loaded = np.load(path, allow_pickle=False)
        if isinstance(loaded, np.ndarray):
            return _as_images(loaded, config, path), None
        with loaded:
            keys = loaded.files
            single = keys[0] if len(keys) == 1 else None
            train_key = next((k for k in TRAIN_KEYS if k in keys), single)
            if train_key is None:
                raise DataError(f"{path} has no image array: expected a key named "
                                f"{', '.join(TRAIN_KEYS)} or a single array, found "
                                f"{', '.join(keys) or 'no arrays'}")
            eval_key = next((k for k in EVAL_KEYS if k in keys), None)
            test = loaded[eval_key] if eval_key else None
            return (_as_images(loaded[train_key], config, f"{path} [{train_key}]"),
                    None if test is None else _as_images(test, config, f"{path} [{eval_key}]"))


def _read_idx_folder(folder: str, config: DataConfig) -> tuple[np.ndarray, np.ndarray | None]:
    """Train images (train-images-*) and, when present, eval images (t10k-images-*)."""
    train_path, test_path = _idx_file(folder, "train"), _idx_file(folder, "t10k")
    return (_as_images(read_idx(train_path), config, train_path),
            _as_images(read_idx(test_path), config, test_path) if test_path else None)


def _read_image_folder(folder: str, config: DataConfig, log: Log | None = None) -> np.ndarray:
    """All images under `folder`, converted by PIL to grayscale or RGB; all the same size.

    Converting colour images to grayscale (or back) is logged, so that it is never silent.
    """
    files, images, converted = _image_files(folder), [], 0
    for path in files:
        image, changed = read_image(path, config.channels)
        images.append(image)
        converted += changed
        if images[-1].shape != images[0].shape:
            (h0, w0), (h, w) = images[0].shape[:2], images[-1].shape[:2]
            raise DataError(f"images in {folder} differ in size: {files[0]} is {h0}x{w0} but "
                            f"{path} is {h}x{w} (height x width); all must be the same size")
    if converted and log:
        log(f"data: converted {converted:,} of the {len(files):,} images in {folder} from "
            f"{'colour to grayscale' if config.channels == 1 else 'grayscale to RGB'} "
            f"(data.channels={config.channels})")
    return _as_images(np.stack(images), config, folder)


def _held_out_count(n: int, config: DataConfig, where: str) -> int:
    count = max(1, round(n * config.eval_fraction))
    if count >= n:
        raise DataError(f"{where} has only {n} images: too few to hold out "
                        f"data.eval_fraction={config.eval_fraction} of them for evaluation")
    return count


def _cap(config: DataConfig, split: str) -> int | None:
    """How many images of `split` to use (None: all)."""
    return config.eval_images if split == "eval" else (config.max_train_images or None)


def _crop_and_resize(images: tf.Tensor, config: DataConfig) -> tf.Tensor:
    """Center-crops (if data.center_crop) and resizes uint8 images [..., H, W, C] (score_sde)."""
    crop, size = config.center_crop, config.image_size
    if crop:
        height, width = tf.shape(images)[-3], tf.shape(images)[-2]
        images = tf.image.crop_to_bounding_box(images, (height - crop) // 2,
                                               (width - crop) // 2, crop, crop)
    if images.shape[-3:-1] == (size, size):
        return images
    resized = tf.image.resize(images, [size, size], antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)


def _memory_splits(config: DataConfig, source: str,
                   log: Log | None = None) -> dict[str, np.ndarray]:
    """Train and eval images of an in-memory source: split, capped, cropped and resized.

    Without a test split, eval is a seeded random subset of eval_fraction of the images
    (not the tail: folders are often sorted by class); both splits keep the file order.
    With `log`, says what was read (one line).
    """
    if source == "folder":
        train, test = _read_image_folder(config.data_dir, config, log), None
    elif source == "idx":
        train, test = _read_idx_folder(config.data_dir, config)
    else:
        train, test = _read_arrays(str(EMBEDDED_PATH) if source == "embedded" else config.data_dir,
                                   config)
    held_out = "its test split"
    if test is None:
        count = _held_out_count(len(train), config, config.data_dir)
        chosen = np.zeros(len(train), bool)
        rng = np.random.default_rng(HOLD_OUT_SEED)
        chosen[rng.choice(len(train), count, replace=False)] = True
        train, test = train[~chosen], train[chosen]
        held_out = f"a seeded data.eval_fraction={config.eval_fraction:g} of the images"
    splits = {"train": train[:_cap(config, "train")], "eval": test[:_cap(config, "eval")]}
    if config.center_crop:
        splits = {split: np.concatenate(list(
            tf.data.Dataset.from_tensor_slices(images).batch(1024)
            .map(lambda x: _crop_and_resize(x, config)).as_numpy_iterator()))
            for split, images in splits.items()}
    if log:
        height, width, channels = splits["train"].shape[1:]
        resized = (f", center-cropped to {config.center_crop}x{config.center_crop} and resized"
                   if config.center_crop else "")
        log(f"data: {len(splits['train']):,} training and {len(splits['eval']):,} held-out "
            f"images ({height}x{width}x{channels}{resized}) from "
            f"{describe_source(config, source)}; held out: {held_out}")
    return splits


def _tfds_images(config: DataConfig, split: str,
                 shuffle_seed: int | None = None) -> tf.data.Dataset:
    """Streams uint8 images of a tfds dataset, center-cropped and resized as data.center_crop says.

    Eval is the "test" split where the dataset has one, else the tail of "train" (tfds
    shuffles examples when it prepares a dataset, so the tail is a random subset).
    """
    import tensorflow_datasets as tfds  # slow to import, and only this source needs it

    name, data_dir = config.dataset, config.data_dir or None
    try:
        builder = tfds.builder(name, data_dir=data_dir)
        if config.download:
            builder.download_and_prepare()
        splits = builder.info.splits  # empty until prepared; as_dataset then says so
        if "test" in splits or not splits:
            tfds_split = "test" if split == "eval" else "train"
        else:
            n = splits["train"].num_examples
            n_train = n - _held_out_count(n, config, f"tensorflow-datasets {name}")
            tfds_split = f"train[:{n_train}]" if split == "train" else f"train[{n_train}:]"
        examples = builder.as_dataset(split=tfds_split, shuffle_files=shuffle_seed is not None,
                                      read_config=tfds.ReadConfig(shuffle_seed=shuffle_seed))
    except tfds.core.DatasetNotFoundError:
        raise DataError(f"unknown dataset {name!r}: use embedded, files (with --data-dir) or a "
                        "tensorflow-datasets name such as mnist, fashion_mnist, cifar10, celeb_a"
                        ) from None
    except AssertionError:  # what tfds raises for data that is not prepared
        raise DataError(f"dataset {name!r} is not available offline in "
                        f"{data_dir or 'the default tensorflow-datasets folder'}: set --set "
                        "data.download=true, or point --data-dir at prepared tensorflow-datasets "
                        "data or at image, IDX or .npz files") from None
    images = examples.map(lambda example: example["image"], num_parallel_calls=_AUTOTUNE)
    _check_shape(*images.element_spec.shape, config, f"tensorflow-datasets {name}")
    images = images.map(lambda x: _crop_and_resize(x, config), num_parallel_calls=_AUTOTUNE)
    cap = _cap(config, split)
    return images if cap is None else images.take(cap)


def load_images(config: DataConfig, split: str = "train", limit: int | None = None) -> np.ndarray:
    """The uint8 images [N, H, W, C] of `split` ("train" or "eval"), sized but not dequantised."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    source = resolve_source(config)
    if source != "tfds":
        return _memory_splits(config, source)[split][:limit]
    images = _tfds_images(config, split)
    images = images if limit is None else images.take(limit)
    shape = (-1, config.image_size, config.image_size, config.channels)
    return np.array(list(images.as_numpy_iterator()), np.uint8).reshape(shape)


def _preprocess(index: tf.Tensor, image: tf.Tensor, seed: int, dequantize: bool,
                flip: bool) -> tf.Tensor:
    """uint8 image -> float32 in [0, 1], with randomness keyed by (seed, element index).

    Dequantisation maps pixel k to k/256 + U(0, 1)/256, i.e. x*255/256 + u/256, so the
    model sees a continuous density on [0, 1) as in the NCSN paper.
    """
    x = tf.cast(image, tf.float32) / 255.0
    key = tf.stack([tf.constant(seed, tf.int64), index])
    flip_key, noise_key = tf.unstack(tf.random.experimental.stateless_split(key, 2))
    if flip:
        x = tf.image.stateless_random_flip_left_right(x, flip_key)
    if dequantize:
        x = x * (255.0 / 256.0) + tf.random.stateless_uniform(tf.shape(x), noise_key) / 256.0
    return x


def _batches(images: tf.data.Dataset, batch_size: int, seed: int, dequantize: bool,
             flip: bool, drop_remainder: bool) -> tf.data.Dataset:
    options = tf.data.Options()
    options.deterministic = True
    preprocess = functools.partial(_preprocess, seed=seed, dequantize=dequantize, flip=flip)
    return (images.enumerate().map(preprocess, num_parallel_calls=_AUTOTUNE)
            .batch(batch_size, drop_remainder=drop_remainder).prefetch(_AUTOTUNE)
            .with_options(options))


def make_datasets(config: DataConfig, batch_size: int, seed: int = 0,
                  log: Log | None = None) -> tuple[tf.data.Dataset, tf.data.Dataset]:
    """(train, eval) datasets of float32 image batches [B, H, W, C] in [0, 1].

    Train repeats forever, shuffled by `seed`, flipped if data.random_flip, full batches
    only. Eval is one pass in order, no flips, with dequantisation keyed by `EVAL_SEED`, so
    every pass sees identical inputs. In-memory sources already hold their decoded images
    as a tensor (caching would copy them); tfds caches small datasets itself. With `log`,
    says which source was read ("data: ..."), and any conversion of the images.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    source = resolve_source(config)
    if source == "tfds":
        train, test = _tfds_images(config, "train", shuffle_seed=seed), _tfds_images(config, "eval")
        if log:
            log(f"data: {describe_source(config, source)}, images {config.image_size}x"
                f"{config.image_size}x{config.channels}; held out: its test split, or the "
                "tail of train")
    else:
        splits = _memory_splits(config, source, log)
        train, test = (tf.data.Dataset.from_tensor_slices(splits[s]) for s in SPLITS)
    train = train.shuffle(config.shuffle_buffer, seed=seed, reshuffle_each_iteration=True).repeat()
    return (_batches(train, batch_size, seed, config.dequantize, config.random_flip, True),
            _batches(test, batch_size, EVAL_SEED, config.dequantize, False, False))
