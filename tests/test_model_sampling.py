"""NCSN.sample / NCSN.inpaint on a tiny untrained model, its sampler cache, and ema_weights."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from keras_ncsn.config import TrainConfig
from keras_ncsn.errors import ConfigError
from keras_ncsn.model import NCSN, compile_model, ema_weights
from keras_ncsn.masks import half_mask

FAST = {"steps_per_level": 2, "jit_compile": False}


@pytest.fixture(scope="module")
def model() -> NCSN:
    return NCSN((8, 8, 1), [1.0, 0.3, 0.1], ngf=4).build_for_images()


def test_sample_shape_range_and_determinism(model):
    first = model.sample(3, seed=1, **FAST).numpy()
    assert first.shape == (3, 8, 8, 1) and first.dtype == np.float32
    assert first.min() >= 0 and first.max() <= 1
    np.testing.assert_array_equal(first, model.sample(3, seed=1, **FAST).numpy())
    assert not np.array_equal(first, model.sample(3, seed=2, **FAST).numpy())


def test_one_cached_sampler_and_trace_per_option_set(model):
    sampler = model.sampler(**FAST)
    assert model.sampler(jit_compile=False, steps_per_level=2) is sampler
    model.sample(2, seed=0, **FAST)
    model.sample(5, seed=3, **FAST)
    assert sampler.compiled_loop().experimental_get_tracing_count() == 1
    assert model.sampler(**FAST, denoise=True) is not sampler
    assert model.sampler().steps_per_level == 100  # SampleConfig's defaults
    with pytest.raises(ConfigError, match="unknown sampler option"):
        model.sampler(steps=3)


def test_snapshots(model):
    images, snapshots = model.sample(2, seed=0, snapshot_every=1, **FAST)
    assert snapshots.shape == (6, 2, 8, 8, 1)
    np.testing.assert_array_equal(np.clip(snapshots[-1], 0, 1), images)


def test_inpaint_keeps_observed_pixels(model):
    images = np.random.default_rng(0).uniform(size=(2, 8, 8, 1)).astype(np.float32)
    mask = half_mask(8, "bottom")
    filled = model.inpaint(images, mask, seed=0, **FAST).numpy()
    observed = np.broadcast_to(mask, images.shape) == 1
    np.testing.assert_array_equal(filled[observed], images[observed])
    assert not np.allclose(filled[~observed], images[~observed])
    with pytest.raises(ConfigError, match="do not fit the model"):
        model.inpaint(np.zeros((1, 6, 6, 1)), np.ones((6, 6)), **FAST)


def _values(variables) -> list[np.ndarray]:
    return [keras.ops.convert_to_numpy(v) for v in variables]


def test_ema_weights_swaps_in_averages_and_restores_raw_weights():
    model = compile_model(NCSN((8, 8, 1), [1.0, 0.1], ngf=4).build_for_images(),
                          TrainConfig(ema_momentum=0.5))
    untrained = _values(model.trainable_variables)
    with ema_weights(model):  # no step yet: the averages are zeros and must not be used
        assert all(np.array_equal(a, b) for a, b in zip(_values(model.trainable_variables),
                                                          untrained))
    # In the middle of training the optimizer has stepped and its averages differ.
    model.optimizer.iterations.assign(3)
    for average, variable in zip(model.optimizer._model_variables_moving_average,
                                 model.trainable_variables):
        average.assign(0.5 * variable + 0.01)
    raw = _values(model.trainable_variables)
    averages = _values(model.optimizer._model_variables_moving_average)
    assert not all(np.array_equal(a, b) for a, b in zip(raw, averages))
    with ema_weights(model):
        for inside, average in zip(_values(model.trainable_variables), averages):
            np.testing.assert_array_equal(inside, average)
    for after, before in zip(_values(model.trainable_variables), raw):
        np.testing.assert_array_equal(after, before)
    ema_sample = model.sample(2, seed=0, **FAST).numpy()
    raw_sample = model.sample(2, seed=0, ema=False, **FAST).numpy()
    assert not np.array_equal(ema_sample, raw_sample)
    # After fit's finalize (or load_run) the weights are the averages: nothing changes.
    model.optimizer.finalize_variable_values(model.trainable_variables)
    with ema_weights(model):
        pass
    for after, average in zip(_values(model.trainable_variables), averages):
        np.testing.assert_array_equal(after, average)
    np.testing.assert_array_equal(model.sample(2, seed=0, ema=False, **FAST).numpy(),
                                  ema_sample)
