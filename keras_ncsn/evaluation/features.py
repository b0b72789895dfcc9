"""Feature extractors for FID/KID/Inception score: InceptionV3, or a small 28x28 classifier.

An extractor maps images [N, H, W, C] in [0, 1] to (features [N, D], class probabilities
[N, K]); it resizes and converts channels to what its network takes, so any model's samples
fit. InceptionV3 (keras.applications, ImageNet weights, 299x299 RGB, 2048-d pool features)
is the standard for natural images; for MNIST-like data the literature uses a classifier
trained on the dataset itself, which `build_classifier` / `train_classifier` provide
(`scripts/train_classifier.py`): FID on its penultimate layer, Inception score on its softmax.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from keras_ncsn.data import EMBEDDED_PATH, read_idx
from keras_ncsn.errors import CheckpointError, DataError
from keras_ncsn.io import atomic_path, atomic_write_text

FEATURE_LAYER = "features"
CLASSIFIER_SHAPE = (28, 28, 1)
INCEPTION_SIZE = 299
# keras.applications' InceptionV3 weights (with the top, for the class probabilities).
INCEPTION_WEIGHTS = "inception_v3_weights_tf_dim_ordering_tf_kernels.h5"
INCEPTION_URL = ("https://storage.googleapis.com/tensorflow/keras-applications/inception_v3/"
                 + INCEPTION_WEIGHTS)
INCEPTION_MD5 = "9a0d58056eeedaa3f26cb7ebd46da564"


@dataclass
class FeatureExtractor:
    """A Keras model images -> (features, probabilities) with its input size and a name.

    `scale` maps [0, 1] pixels to the network's input range (InceptionV3: [-1, 1]).
    """

    network: keras.Model
    name: str
    scale: tuple[float, float] = (1.0, 0.0)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.network.inputs[0].shape[1:])

    def prepare(self, images: np.ndarray) -> tf.Tensor:
        """Images in [0, 1] resized (bilinear) and converted to the network's channels."""
        x = tf.convert_to_tensor(np.asarray(images, np.float32))
        height, width, channels = self.input_shape
        if tuple(x.shape[1:3]) != (height, width):
            x = tf.image.resize(x, (height, width), method="bilinear")
        if x.shape[-1] != channels:
            x = (tf.image.grayscale_to_rgb(x) if channels == 3 else
                 tf.reduce_mean(x, axis=-1, keepdims=True))
        return x * self.scale[0] + self.scale[1]

    def __call__(self, images: np.ndarray, batch_size: int = 100) -> tuple[np.ndarray, np.ndarray]:
        """(features [N, D], probabilities [N, K]) as float64 NumPy arrays."""
        features, probabilities = [], []
        for start in range(0, len(images), batch_size):
            f, p = self.network(self.prepare(images[start:start + batch_size]), training=False)
            features.append(np.asarray(f, np.float64))
            probabilities.append(np.asarray(p, np.float64))
        return np.concatenate(features), np.concatenate(probabilities)


def _two_outputs(model: keras.Model, feature_layer: str) -> keras.Model:
    return keras.Model(model.inputs, [model.get_layer(feature_layer).output, model.outputs[0]])


def inception_extractor() -> FeatureExtractor:
    """InceptionV3 with ImageNet weights: 2048-d pool features and the 1000-class softmax.

    The weights come from the Keras cache (~/.keras/models) or are downloaded once; when
    neither works, a one-line CheckpointError says so.
    """
    try:
        path = keras.utils.get_file(INCEPTION_WEIGHTS, INCEPTION_URL, cache_subdir="models",
                                    file_hash=INCEPTION_MD5)
    except Exception as e:  # get_file raises bare Exception for network failures
        cache = os.path.join(os.path.expanduser(os.environ.get("KERAS_HOME", "~/.keras")),
                             "models")
        raise CheckpointError(
            f"InceptionV3 ImageNet weights are not in {cache} and cannot be downloaded "
            f"({' '.join(str(e).split())[:200]}): put {INCEPTION_WEIGHTS} there, or use "
            "--features classifier") from None
    network = keras.applications.InceptionV3(weights=path)
    return FeatureExtractor(_two_outputs(network, "avg_pool"),
                            "InceptionV3 (ImageNet, 2048-d pool features, images resized to "
                            f"{INCEPTION_SIZE}x{INCEPTION_SIZE})", scale=(2.0, -1.0))


def classifier_extractor(path: str) -> FeatureExtractor:
    """The classifier saved by `scripts/train_classifier.py`: penultimate features, softmax."""
    if not os.path.isfile(path):
        raise CheckpointError(f"classifier {path} does not exist: train one with "
                              "scripts/train_classifier.py or pass --classifier PATH")
    try:
        model = keras.saving.load_model(path, compile=False)
        network = _two_outputs(model, FEATURE_LAYER)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"cannot load classifier {path}: "
                              f"{' '.join(str(e).split())[:200]}") from None
    dim = network.outputs[0].shape[-1]
    return FeatureExtractor(network, f"classifier {os.path.basename(path)} ({dim}-d "
                                     f"penultimate features)")


def build_classifier(num_classes: int = 10, seed: int = 0) -> keras.Model:
    """A small CNN for 28x28x1 images in [0, 1]; its penultimate layer is `FEATURE_LAYER`."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input(CLASSIFIER_SHAPE)
    x = inputs
    for filters in (16, 32):
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, activation="relu")(x)  # 7x7 -> 5x5
    x = keras.layers.MaxPooling2D()(x)                    # -> 2x2
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(128, activation="relu", name=FEATURE_LAYER)(x)
    x = keras.layers.Dropout(0.3)(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="classifier")


def load_labelled(source: str) -> dict[str, np.ndarray]:
    """x_train, y_train, x_test, y_test (uint8) of "embedded" or an MNIST-format IDX folder."""
    if source == "embedded":
        with np.load(EMBEDDED_PATH) as data:
            return {key: data[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    if not os.path.isdir(source):
        raise DataError(f"{source} is not a folder of MNIST-format IDX files, nor \"embedded\"")
    names = {"x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
             "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte"}
    arrays = {}
    for key, name in names.items():
        path = next((p for p in (os.path.join(source, name), os.path.join(source, name + ".gz"))
                     if os.path.isfile(p)), None)
        if path is None:
            raise DataError(f"{source} has no {name}[.gz]: a classifier needs MNIST-format "
                            "IDX images and labels for train and test (t10k)")
        arrays[key] = read_idx(path)
        images = arrays[key.replace("y_", "x_")]
        if key.startswith("x_") and images.shape[1:] != CLASSIFIER_SHAPE[:2]:
            raise DataError(f"{path} holds images of shape {images.shape[1:]}; the classifier "
                            f"takes {CLASSIFIER_SHAPE[0]}x{CLASSIFIER_SHAPE[1]} grayscale images")
        if key.startswith("y_") and arrays[key].shape != images.shape[:1]:
            raise DataError(f"{path} holds labels of shape {arrays[key].shape} for "
                            f"{len(images):,} images")
    return arrays


def train_classifier(data: dict[str, np.ndarray], *, epochs: int, batch_size: int = 128,
                     learning_rate: float = 1e-3, seed: int = 0,
                     verbose: int = 0) -> tuple[keras.Model, float]:
    """Trains `build_classifier` with Adam on `load_labelled` data; returns it and test accuracy."""
    def scaled(key: str) -> np.ndarray:
        return data[key].reshape(-1, *CLASSIFIER_SHAPE).astype(np.float32) / 255.0

    num_classes = int(max(data["y_train"].max(), data["y_test"].max())) + 1
    model = build_classifier(num_classes, seed)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(scaled("x_train"), data["y_train"], batch_size=batch_size, epochs=epochs,
              shuffle=True, verbose=verbose)
    accuracy = model.evaluate(scaled("x_test"), data["y_test"], verbose=0,
                              return_dict=True)["accuracy"]
    return model, float(accuracy)


def info_path(path: str) -> str:
    """The JSON file written beside a classifier file (`save_classifier`)."""
    return os.path.splitext(path)[0] + ".json"


def save_classifier(model: keras.Model, path: str, info: dict[str, Any]) -> None:
    """Writes the classifier without optimizer state (small) and `info` as `info_path`."""
    with atomic_path(path) as tmp:
        keras.Model(model.inputs, model.outputs, name=model.name).save(tmp)
    atomic_write_text(info_path(path), json.dumps(info, indent=2) + "\n")
