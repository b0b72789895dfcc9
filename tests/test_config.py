"""Config presets, `--set` overrides, validation and the JSON round trip."""

from __future__ import annotations

import json

import numpy as np
import pytest

from keras_ncsn.config import (PRESETS, Config, NoiseConfig, get_config, load_config, override,
                               save_config)
from keras_ncsn.errors import ConfigError
from keras_ncsn.noise import get_sigmas, level_probabilities


@pytest.mark.parametrize("name, size, channels, ngf, flip", [
    ("mnist", 28, 1, 64, False), ("fashion_mnist", 28, 1, 64, False),
    ("cifar10", 32, 3, 128, True), ("celeba", 32, 3, 128, True)])
def test_paper_presets(name, size, channels, ngf, flip):
    config = PRESETS[name]
    assert config.image_shape == (size, size, channels)
    assert config.model.ngf == ngf and config.data.random_flip == flip
    assert (config.noise.sigma_begin, config.noise.sigma_end, config.noise.num_levels) == (1, 0.01, 10)
    assert (config.train.learning_rate, config.train.batch_size, config.train.steps) == (1e-3, 128, 200_000)
    assert config.train.ema_momentum == 0 and not config.model.scale_by_sigma
    assert config.sample.steps_per_level == 100 and config.sample.step_size == 2e-5
    assert PRESETS["celeba"].data.center_crop == 140


def test_paper_sigmas_are_geometric_1_to_001():
    sigmas = get_sigmas(PRESETS["mnist"].noise)
    assert sigmas[0] == pytest.approx(1.0) and sigmas[-1] == pytest.approx(0.01)
    ratios = sigmas[1:] / sigmas[:-1]
    assert ratios == pytest.approx([0.01 ** (1 / 9)] * 9, rel=1e-5)


@pytest.mark.parametrize("noise", [*[preset.noise for preset in PRESETS.values()],
                                   NoiseConfig(50.0, 0.01, 232), NoiseConfig(0.3, 0.3, 1)])
def test_sigmas_are_the_float32_values_of_the_log_space_formula(noise):
    """np.geomspace gives, in float32, the values of exp(linspace(log)) that earlier runs
    and exports were trained and sampled with."""
    expected = np.exp(np.linspace(np.log(noise.sigma_begin), np.log(noise.sigma_end),
                                  noise.num_levels)).astype(np.float32)
    np.testing.assert_array_equal(get_sigmas(noise), expected)


def test_level_probabilities_are_uniform_or_log_normal_around_the_focus():
    sigmas = get_sigmas(NoiseConfig(5.0, 0.02, 10))
    np.testing.assert_allclose(level_probabilities(sigmas), 0.1)
    focused = level_probabilities(sigmas, focus=0.3, width=1.0)
    assert focused.sum() == pytest.approx(1.0) and np.argmax(focused) in (4, 5)
    log_distance = np.abs(np.log(sigmas) - np.log(0.3))
    assert np.all(np.diff(focused[np.argsort(log_distance)]) <= 0)  # nearer: more often
    wider = level_probabilities(sigmas, focus=0.3, width=3.0)
    assert wider.min() > focused.min() and wider.max() < focused.max()
    with pytest.raises(ConfigError, match="width > 0"):
        level_probabilities(sigmas, focus=0.3, width=0.0)


def test_overrides_convert_types():
    config = get_config("quick", ["train.steps=12", "train.learning_rate=2e-4",
                                  "data.random_flip=true", "sample.convention=paper",
                                  "data.data_dir=/some/where"])
    assert config.train.steps == 12 and isinstance(config.train.steps, int)
    assert config.train.learning_rate == 2e-4
    assert config.data.random_flip is True
    assert config.sample.convention == "paper" and config.data.data_dir == "/some/where"
    assert PRESETS["quick"].train.objective == "dsm"
    assert get_config("quick", ["train.objective=ssm"]).train.objective == "ssm"
    assert PRESETS["quick"].train.steps != 12  # presets are not modified


@pytest.mark.parametrize("assignment, words", [
    ("train.stepz=3", "unknown config key 'train.stepz'"),
    ("trainer.steps=3", "unknown config section 'trainer'"),
    ("train.steps", "section.key=value"),
    ("steps=3", "section.key=value"),
    ("train.steps=many", "must be a number"),
    ("train.steps=2.5", "whole number"),
    ("train.steps=0", "train.steps must be > 0"),
    ("data.random_flip=maybe", "true or false"),
    ("train.precision=float8", "train.precision must be one of"),
    ("noise.sigma_begin=0.001", "sigma_begin must be >= noise.sigma_end"),
    ("data.image_size=27", "even number"),
    ("sample.convention=other", "sample.convention must be one of"),
    ("train.objective=nce", "train.objective must be one of dsm, ssm, ssm_vr"),
    ("train.lr_schedule=step", "train.lr_schedule must be one of constant, cosine, got 'step'"),
    ("sample.init=zeros", "sample.init must be one of uniform, gaussian, got 'zeros'"),
    ("sample.method=ode", "sample.method must be one of"),
    ("sample.step_size=0", "sample.step_size must be > 0"),
    ("train.eval_draws=0", "train.eval_draws must be > 0"),
    ("train.level_focus=-1", "train.level_focus must be a finite sigma >= 0"),
    ("train.level_focus=nan", "train.level_focus must be a finite sigma >= 0"),
    ("train.level_focus=0", "train.level_focus_width has no effect"),
])
def test_bad_overrides_name_the_problem(assignment, words):
    with pytest.raises(ConfigError, match=words.replace(".", r"\.").replace("(", r"\(")):
        override(PRESETS["quick"], [assignment])


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown config 'nope'"):
        get_config("nope")


def test_json_round_trip(tmp_path):
    config = get_config("cifar10", ["train.ema_momentum=0.999", "model.scale_by_sigma=yes"])
    save_config(config, str(tmp_path))
    assert load_config(str(tmp_path)) == config
    assert load_config(str(tmp_path / "config.json")) == config
    assert Config.from_dict(json.loads(config.to_json())) == config
    assert get_config(str(tmp_path), ["train.steps=5"]).train.steps == 5


@pytest.mark.parametrize("text, words", [
    ("{not json", "not valid JSON"),
    ('{"train": {"stepz": 1}}', "unknown key"),
    ('{"training": {}}', "unknown config section"),
    ('{"train": {"steps": "ten"}}', "must be a number"),
    ('{"train": {"steps": true}}', "must be of type int"),
])
def test_bad_config_files(tmp_path, text, words):
    (tmp_path / "config.json").write_text(text)
    with pytest.raises(ConfigError, match=words):
        load_config(str(tmp_path))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="no config file"):
        load_config(str(tmp_path))
