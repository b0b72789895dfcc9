"""The shipped models draw images a classifier recognises, and an untrained network does not.

Each shipped export samples 100 images from a fixed seed through its SavedModel `sample`
endpoint (what a serving user calls); the dataset's classifier must be confident of most of
them (max class probability > 0.9) and must spread them over the classes (entropy of the
predicted-class histogram). The same network with untrained weights, sampled with the same
sampler, fails both checks: the thresholds measure the training, not the sampler or the
classifier. The numbers at 500 samples are in each MODEL_CARD.md and in docs/results.md.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO
from keras_ncsn.config import load_config
from keras_ncsn.evaluation import metrics
from keras_ncsn.evaluation.features import classifier_extractor
from keras_ncsn.export import load_export
from keras_ncsn.model import build_model
from keras_ncsn.sampling import sample_options

NUM_SAMPLES, SEED = 100, 0
# (export folder, classifier, min confident fraction, min class entropy). Measured on these
# 100 samples with the models shipped since 2026-12-06: mnist (ngf 24) 0.84 / 2.261,
# fashion_mnist 0.63 / 2.209. The thresholds sit about one binomial standard deviation
# (0.04-0.05) below, so that float round-off on another CPU cannot flip them, and far above
# what the untrained network draws (mnist 0.03 / 1.12, fashion_mnist 0.01 / 1.28).
SHIPPED = {
    "mnist": ("saved_models/mnist", "keras_ncsn/assets/mnist_classifier.keras", 0.78, 2.15),
    "fashion_mnist": ("saved_models/fashion_mnist",
                      "saved_models/fashion_mnist_classifier.keras", 0.57, 2.1),
}


def _quality(images: np.ndarray, classifier: str) -> tuple[float, float]:
    _, probabilities = classifier_extractor(os.path.join(REPO, classifier))(images)
    return metrics.confident_fraction(probabilities), metrics.class_entropy(probabilities)


def _passes(quality: tuple[float, float], min_confident: float, min_entropy: float) -> bool:
    return quality[0] >= min_confident and quality[1] >= min_entropy


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_samples_are_recognised_by_the_classifier(name):
    folder, classifier, min_confident, min_entropy = SHIPPED[name]
    loaded = load_export(os.path.join(REPO, folder))
    images = loaded.sample(num_images=tf.constant(NUM_SAMPLES),
                           seed=tf.constant(SEED, tf.int64)).numpy()
    quality = _quality(images, classifier)
    assert _passes(quality, min_confident, min_entropy), (
        f"{name}: confident fraction {quality[0]:.3f} (min {min_confident}), "
        f"class entropy {quality[1]:.3f} (min {min_entropy})")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_the_same_network_untrained_fails_the_quality_check(name):
    folder, classifier, min_confident, min_entropy = SHIPPED[name]
    config = load_config(os.path.join(REPO, folder))
    model = build_model(config)  # the shipped architecture, sigmas and sampler; fresh weights
    images = model.sample(NUM_SAMPLES, seed=SEED, ema=False,
                          **sample_options(config.sample)).numpy()
    assert not _passes(_quality(images, classifier), min_confident, min_entropy)
